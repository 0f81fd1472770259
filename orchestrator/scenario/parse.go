package scenario

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/prometheus/common/model"

	"github.com/canarylab/canarylab/mockserver/strictyaml"
	"github.com/canarylab/canarylab/orchestrator/analysis"
)

// FieldError is a problem with one field of a scenario.
type FieldError = strictyaml.FieldError

// FieldErrors lists every problem of a scenario.
type FieldErrors = strictyaml.FieldErrors

// Parse decodes and validates a scenario document.
func Parse(data []byte) (*Scenario, error) {
	var s Scenario
	if err := strictyaml.Decode(data, &s); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// LoadFile reads and validates a scenario file.
func LoadFile(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	s, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", path, err)
	}
	return s, nil
}

var (
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	// intervalPattern is the Canary CRD's pattern for analysis.interval.
	intervalPattern = regexp.MustCompile(`^[0-9]+(m|s)`)
)

// Validate checks the whole scenario and returns every problem at once.
func (s *Scenario) Validate() error {
	var v validator
	if s.APIVersion != APIVersion {
		v.add("apiVersion", "must be %s (got %q)", APIVersion, s.APIVersion)
	}
	if s.Kind != Kind {
		v.add("kind", "must be %s (got %q)", Kind, s.Kind)
	}
	if s.Metadata.Name == "" {
		v.add("metadata.name", "is required: name the scenario, such as failure-errors")
	} else if !dnsLabel.MatchString(s.Metadata.Name) {
		v.add("metadata.name", "%q must be lower-case letters, digits and '-', such as failure-errors", s.Metadata.Name)
	}
	for field, val := range map[string]string{"target.name": s.Target.Name, "target.namespace": s.Target.Namespace} {
		if val != "" && (!dnsLabel.MatchString(val) || len(val) > 63) {
			v.add(field, "%q is not a Kubernetes name: lower-case letters, digits and '-', at most 63", val)
		}
	}
	if ver := s.Flagger.Version; ver != "" && ver != string(analysis.V1_44) && ver != string(analysis.V1_36) {
		v.add("flagger.version", "must be %q (today's Flagger) or %q (the release the e2e runs), got %q", analysis.V1_44, analysis.V1_36, ver)
	}
	v.prefix("stable", s.Stable.Validate())
	v.prefix("canary", s.Canary.Validate())
	s.validateLoad(&v)
	s.validateAnalysis(&v)
	s.validateTemplates(&v)
	s.validateActions(&v)
	s.validateExpect(&v)
	if s.Timeout != nil && s.Timeout.D() <= 0 {
		v.add("timeout", "must be positive, such as 20m")
	}
	return v.errs.Err()
}

type validator struct{ errs FieldErrors }

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) prefix(p string, errs []FieldError) {
	v.errs = append(v.errs, strictyaml.Prefix(p, errs)...)
}

func (s *Scenario) validateLoad(v *validator) {
	l := s.Load
	if l.Rate < 0 {
		v.add("load.rate", "must not be negative (requests a second)")
	}
	if l.Users < 0 {
		v.add("load.users", "must not be negative")
	}
	if l.Rate > 0 && l.Users > 0 {
		v.add("load", "give rate (open model) or users (closed model), not both")
	}
	if l.Plan != nil {
		p := *l.Plan
		p.Host = "" // the load goes to the router
		if err := p.Validate(); err != nil {
			var fe FieldErrors
			if errors.As(err, &fe) {
				v.prefix("load.plan", fe)
			} else {
				v.add("load.plan", "%v", err)
			}
		}
	}
}

func (s *Scenario) validateAnalysis(v *validator) {
	an := s.Analysis
	if an.Interval == "" {
		v.add("analysis.interval", "is required (Flagger's CRD): the tick period, such as 1m")
	} else if !intervalPattern.MatchString(an.Interval) {
		v.add("analysis.interval", "%q must be whole seconds or minutes, such as 30s or 1m (the CRD's pattern ^[0-9]+(m|s))", an.Interval)
	} else if d, err := time.ParseDuration(an.Interval); err != nil {
		v.add("analysis.interval", "%q is not a duration: write one such as 30s or 1m", an.Interval)
	} else if d < analysis.MinInterval {
		v.add("analysis.interval", "%s is under Flagger's minimum of 10s (it would run every 10s): write 10s or more", an.Interval)
	}
	if an.Threshold < 1 {
		v.add("analysis.threshold", "must be 1 or more: how many failed checks roll the canary back (Flagger's CRD requires it)")
	}
	if an.StepWeight == 0 && len(an.StepWeights) == 0 && an.Iterations == 0 && !s.SkipAnalysis {
		v.add("analysis", "set stepWeight, stepWeights (canary) or iterations (blue/green, A/B testing): Flagger's CRD requires one")
	}
	for field, w := range map[string]int{"analysis.maxWeight": an.MaxWeight, "analysis.stepWeight": an.StepWeight,
		"analysis.stepWeightPromotion": an.StepWeightPromotion, "analysis.mirrorWeight": an.MirrorWeight} {
		if w < 0 || w > 100 {
			v.add(field, "must be a percentage from 0 to 100 (got %d)", w)
		}
	}
	for i, w := range an.StepWeights {
		if w < 1 || w > 100 {
			v.add(fmt.Sprintf("analysis.stepWeights[%d]", i), "must be from 1 to 100 (got %d)", w)
		} else if i > 0 && w <= an.StepWeights[i-1] {
			v.add(fmt.Sprintf("analysis.stepWeights[%d]", i), "must be greater than the step before (%d), a rising ladder such as [1, 5, 10, 50]", an.StepWeights[i-1])
		}
	}
	if an.Iterations < 0 {
		v.add("analysis.iterations", "must not be negative")
	}
	if len(an.Match) > 0 && an.Iterations == 0 {
		v.add("analysis.match", "takes effect with iterations (A/B testing): set analysis.iterations, such as 10")
	}
	for i, m := range an.Match {
		validateMatch(v, fmt.Sprintf("analysis.match[%d]", i), m)
	}
	seen := map[string]int{}
	for i, m := range an.Metrics {
		p := fmt.Sprintf("analysis.metrics[%d]", i)
		if m.Name == "" {
			v.add(p+".name", "is required: request-success-rate, request-duration, or your metric's name")
		} else if j, dup := seen[m.Name]; dup {
			v.add(p+".name", "%q is also analysis.metrics[%d]: names must be unique", m.Name, j)
		}
		seen[m.Name] = i
		if m.Interval != "" {
			if _, err := model.ParseDuration(m.Interval); err != nil {
				v.add(p+".interval", "%q is not a PromQL duration, such as 1m or 30s", m.Interval)
			}
		}
		if r := m.ThresholdRange; r != nil {
			if r.Min == nil && r.Max == nil {
				v.add(p+".thresholdRange", "set min, max or both")
			}
			if r.Min != nil && r.Max != nil && *r.Min > *r.Max {
				v.add(p+".thresholdRange", "min %v is above max %v", *r.Min, *r.Max)
			}
		}
		if m.Query != "" && m.TemplateRef != nil {
			v.add(p, "give query or templateRef, not both")
		}
		if m.TemplateRef != nil {
			s.validateRef(v, p, m)
		} else if !analysis.IsBuiltin(m.Name) && m.Query == "" && m.Name != "" {
			v.add(p, "%q is not a builtin metric (request-success-rate, request-duration): give templateRef (a MetricTemplate) or query", m.Name)
		}
	}
	seen = map[string]int{}
	for i, h := range an.Webhooks {
		p := fmt.Sprintf("analysis.webhooks[%d]", i)
		if h.Name == "" {
			v.add(p+".name", "is required")
		} else if j, dup := seen[h.Name]; dup {
			v.add(p+".name", "%q is also analysis.webhooks[%d]: names must be unique", h.Name, j)
		}
		seen[h.Name] = i
		if h.Type != "" && !slices.Contains(analysis.HookTypes, h.Type) {
			v.add(p+".type", "%q is not a webhook type: one of %s", h.Type, hookTypes())
		}
		if u, err := url.Parse(h.URL); h.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add(p+".url", "%q must be an http(s) URL, such as http://flagger-loadtester.test/gate/check", h.URL)
		}
		if len(h.Timeout) >= 2 {
			if _, err := time.ParseDuration(h.Timeout); err != nil {
				v.add(p+".timeout", "%q is not a duration, such as 10s", h.Timeout)
			}
		}
		if h.Retries < 0 {
			v.add(p+".retries", "must not be negative")
		}
	}
}

func hookTypes() string {
	var names []string
	for _, t := range analysis.HookTypes {
		names = append(names, string(t))
	}
	return strings.Join(names, ", ")
}

func validateMatch(v *validator, p string, m analysis.HTTPMatchRequest) {
	check := func(field string, sm *analysis.StringMatch) {
		if sm == nil {
			return
		}
		n := 0
		for _, x := range []string{sm.Exact, sm.Prefix, sm.Regex} {
			if x != "" {
				n++
			}
		}
		if n != 1 {
			v.add(p+"."+field, "set exactly one of exact, prefix, regex")
		}
		if sm.Regex != "" {
			if _, err := regexp.Compile(sm.Regex); err != nil {
				v.add(p+"."+field+".regex", "%q is not an RE2 regular expression: %v", sm.Regex, err)
			}
		}
	}
	check("uri", m.URI)
	check("scheme", m.Scheme)
	check("method", m.Method)
	check("authority", m.Authority)
	for _, group := range []struct {
		name string
		m    map[string]analysis.StringMatch
	}{{"headers", m.Headers}, {"queryParams", m.QueryParams}, {"withoutHeaders", m.WithoutHeaders}} {
		for k, sm := range group.m {
			check(group.name+"."+k, &sm)
		}
	}
}

// template finds the MetricTemplate a metric references.
func (s *Scenario) template(ref *analysis.TemplateRef) (analysis.MetricTemplate, bool) {
	ns := ref.Namespace
	if ns == "" {
		ns = s.Namespace()
	}
	for _, t := range s.MetricTemplates {
		tns := t.Metadata.Namespace
		if tns == "" {
			tns = s.Namespace()
		}
		if t.Metadata.Name == ref.Name && tns == ns {
			return t, true
		}
	}
	return analysis.MetricTemplate{}, false
}

func (s *Scenario) validateRef(v *validator, p string, m analysis.Metric) {
	if m.TemplateRef.Name == "" {
		v.add(p+".templateRef.name", "is required: the name of one of metricTemplates")
		return
	}
	t, ok := s.template(m.TemplateRef)
	if !ok {
		var names []string
		for _, t := range s.MetricTemplates {
			names = append(names, t.Metadata.Name)
		}
		v.add(p+".templateRef.name", "%q is not one of metricTemplates (%s) in namespace %s", m.TemplateRef.Name, strings.Join(names, ", "), s.Namespace())
		return
	}
	if m.Interval == "" && strings.Contains(t.Spec.Query, "interval") {
		v.add(p+".interval", "is required: template %s uses {{ interval }}, which Flagger renders empty for a template metric without one; set interval: 1m", t.Metadata.Name)
	}
}

func (s *Scenario) validateTemplates(v *validator) {
	for i, t := range s.MetricTemplates {
		p := fmt.Sprintf("metricTemplates[%d]", i)
		if t.APIVersion != "" && t.APIVersion != "flagger.app/v1beta1" {
			v.add(p+".apiVersion", "must be flagger.app/v1beta1 (got %q)", t.APIVersion)
		}
		if t.Kind != "" && t.Kind != "MetricTemplate" {
			v.add(p+".kind", "must be MetricTemplate (got %q)", t.Kind)
		}
		if t.Metadata.Name == "" {
			v.add(p+".metadata.name", "is required: metrics reference it by templateRef.name")
		}
		switch t.Spec.Provider.Type {
		case "":
			v.add(p+".spec.provider.type", "is required: prometheus")
		case "prometheus":
		default:
			v.add(p+".spec.provider.type", "%q cannot be evaluated here: canarylab's engines run PromQL on an embedded Prometheus, so templates must be prometheus", t.Spec.Provider.Type)
		}
		if t.Spec.Query == "" {
			v.add(p+".spec.query", "is required: a PromQL query (a Go template with {{ namespace }}, {{ target }}, {{ interval }}, ...)")
		} else if _, err := template.New("q").Funcs(template.FuncMap{
			"name": noop, "namespace": noop, "service": noop, "ingress": noop, "route": noop, "target": noop, "interval": noop,
			"variables": func() map[string]string { return nil },
		}).Parse(t.Spec.Query); err != nil {
			v.add(p+".spec.query", "is not a valid template: %v", err)
		}
	}
}

func noop() string { return "" }

func (s *Scenario) validateActions(v *validator) {
	for i, a := range s.Actions {
		p := fmt.Sprintf("actions[%d]", i)
		if !slices.Contains(ActionKinds, a.Do) {
			var names []string
			for _, k := range ActionKinds {
				names = append(names, string(k))
			}
			v.add(p+".do", "%q is not an action: one of %s", a.Do, strings.Join(names, ", "))
		}
		if a.Do == SetCanary {
			if a.Canary == nil {
				v.add(p+".canary", "is required by setCanary: the canary's new behaviour, such as {errors: 5%%}")
			} else {
				v.prefix(p+".canary", a.Canary.Validate())
			}
		} else if a.Canary != nil {
			v.add(p+".canary", "only setCanary takes a behaviour")
		}
		if i > 0 && a.At < s.Actions[i-1].At {
			v.add(p+".at", "%s is before actions[%d].at (%s): list actions in time order", a.At, i-1, s.Actions[i-1].At)
		}
	}
}

func (s *Scenario) validateExpect(v *validator) {
	e := s.Expect
	switch e.Outcome {
	case Succeeded, Failed:
	case "":
		v.add("expect.outcome", "is required: Succeeded (promoted) or Failed (rolled back)")
	default:
		v.add("expect.outcome", "must be Succeeded or Failed (got %q)", e.Outcome)
	}
	if e.FailedChecks != nil && *e.FailedChecks < 0 {
		v.add("expect.failedChecks", "must not be negative")
	}
	if e.MaxCanaryWeight != nil && (*e.MaxCanaryWeight < 0 || *e.MaxCanaryWeight > 100) {
		v.add("expect.maxCanaryWeight", "must be from 0 to 100")
	}
	if r := e.DecisionTime; r != nil && r.Min != nil && r.Max != nil && *r.Min > *r.Max {
		v.add("expect.decisionTime", "min %s is above max %s", r.Min, r.Max)
	}
	for i, re := range e.Events.Include {
		if _, err := regexp.Compile(re); err != nil {
			v.add(fmt.Sprintf("expect.events.include[%d]", i), "%q is not an RE2 regular expression: %v", re, err)
		}
	}
	for i, re := range e.Events.Exclude {
		if _, err := regexp.Compile(re); err != nil {
			v.add(fmt.Sprintf("expect.events.exclude[%d]", i), "%q is not an RE2 regular expression: %v", re, err)
		}
	}
	for i, re := range e.Events.Sequence {
		if _, err := regexp.Compile(re); err != nil {
			v.add(fmt.Sprintf("expect.events.sequence[%d]", i), "%q is not an RE2 regular expression: %v", re, err)
		}
	}
	for i, m := range e.Metrics {
		p := fmt.Sprintf("expect.metrics[%d]", i)
		if !slices.ContainsFunc(s.Analysis.Metrics, func(am analysis.Metric) bool { return am.Name == m.Name }) {
			v.add(p+".name", "%q is not one of analysis.metrics", m.Name)
		}
		if m.Min == nil && m.Max == nil {
			v.add(p, "set min, max or both")
		}
	}
}
