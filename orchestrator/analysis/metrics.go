package analysis

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"text/template"
	"time"

	"github.com/prometheus/common/model"
)

// The builtin metrics' names.
const (
	RequestSuccessRate = "request-success-rate"
	RequestDuration    = "request-duration"
)

// BuiltinQueries are the Istio observer's queries (pkg/metrics/observers/
// istio.go), verbatim: the analysis runs the very text Flagger sends.
var BuiltinQueries = map[string]string{
	RequestSuccessRate: `
	sum(
		rate(
			istio_requests_total{
				reporter="destination",
				destination_workload_namespace="{{ namespace }}",
				destination_workload=~"{{ target }}",
				response_code!~"5.*"
			}[{{ interval }}]
		)
	) 
	/ 
	sum(
		rate(
			istio_requests_total{
				reporter="destination",
				destination_workload_namespace="{{ namespace }}",
				destination_workload=~"{{ target }}"
			}[{{ interval }}]
		)
	) 
	* 100`,
	RequestDuration: `
	histogram_quantile(
		0.99,
		sum(
			rate(
				istio_request_duration_milliseconds_bucket{
					reporter="destination",
					destination_workload_namespace="{{ namespace }}",
					destination_workload=~"{{ target }}"
				}[{{ interval }}]
			)
		) by (le)
	)`,
}

// IsBuiltin reports whether a metric name selects a builtin check.
func IsBuiltin(name string) bool { return name == RequestSuccessRate || name == RequestDuration }

var spaces = regexp.MustCompile(`\s+`)

// Collapse collapses whitespace as Flagger's Prometheus provider does
// before sending a query.
func Collapse(q string) string { return spaces.ReplaceAllString(q, " ") }

// Render renders a query template with Flagger's variables (RenderQuery:
// text/template, functions for every variable, missing keys are errors).
func Render(query string, vars TemplateVars) (string, error) {
	t, err := parseQuery(query, &vars)
	if err != nil {
		return "", err
	}
	return execute(t)
}

// parseQuery parses a query template whose variable functions read *vars
// when it executes.
func parseQuery(query string, vars *TemplateVars) (*template.Template, error) {
	return template.New("tmpl").Funcs(template.FuncMap{
		"name":      func() string { return vars.Name },
		"namespace": func() string { return vars.Namespace },
		"service":   func() string { return vars.Service },
		"ingress":   func() string { return vars.Ingress },
		"route":     func() string { return vars.Route },
		"target":    func() string { return vars.Target },
		"interval":  func() string { return vars.Interval },
		"variables": func() map[string]string { return vars.Variables },
	}).Option("missingkey=error").Parse(query)
}

func execute(t *template.Template) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, nil); err != nil {
		return "", err
	}
	return b.String(), nil
}

// render renders a query with the machine's variables, parsing each
// query text once: a run renders the same few queries every tick.
func (m *Machine) render(query string, vars TemplateVars) (string, error) {
	t, ok := m.parsed[query]
	if !ok {
		var err error
		if t, err = parseQuery(query, &m.tvars); err != nil {
			return "", err
		}
		m.parsed[query] = t
	}
	m.tvars = vars
	return execute(t)
}

// TemplateVars are the variables a query template sees.
type TemplateVars struct {
	Name, Namespace, Target, Service, Ingress, Route, Interval string
	Variables                                                  map[string]string
}

func (m *Machine) vars(interval string, variables map[string]string) TemplateVars {
	c := m.cfg.Canary
	return TemplateVars{Name: c.Name, Namespace: c.Namespace, Target: c.TargetName, Service: c.Service,
		Ingress: c.TargetName, Route: c.TargetName, Interval: m.scaleWindow(interval), Variables: variables}
}

// scaleWindow shrinks a PromQL window by the machine's speed.
func (m *Machine) scaleWindow(w string) string {
	if m.cfg.Speed == 1 || w == "" {
		return w
	}
	d, err := model.ParseDuration(w)
	if err != nil {
		return w // Prometheus will say what is wrong with it
	}
	// Truncated, not rounded: PromQL windows are left-open, and a window
	// rounded up past a scrape that the unscaled window just excludes (10s
	// at 60× is 166.67 ms, two scrapes of 83.33 ms) would hold one sample
	// more than Flagger's does.
	scaled := time.Duration(float64(d) / m.cfg.Speed).Truncate(time.Millisecond)
	return model.Duration(max(scaled, time.Millisecond)).String()
}

// checkProviders is checkMetricProviderAvailability.
func (m *Machine) checkProviders() {
	for _, mt := range m.an.Metrics {
		if IsBuiltin(mt.Name) {
			if err := m.env.ProviderOnline(m.ctx, nil); err != nil {
				m.errorf("Error checking metric providers: %v", fmt.Errorf("prometheus not avaiable: %v", err))
				return
			}
			continue
		}
		if mt.TemplateRef != nil {
			t, ns, err := m.template(mt.TemplateRef)
			if err != nil {
				m.errorf("Error checking metric providers: %v", fmt.Errorf("metric template %s.%s error: %v", mt.TemplateRef.Name, ns, err))
				return
			}
			if err := m.env.ProviderOnline(m.ctx, &t.Spec.Provider); err != nil {
				m.errorf("Error checking metric providers: %v", fmt.Errorf("%v in metric template %s.%s not avaiable: %v", t.Spec.Provider.Type, t.Metadata.Name, ns, err))
				return
			}
		}
	}
	m.info("all the metrics providers are available!")
}

func (m *Machine) template(ref *TemplateRef) (MetricTemplate, string, error) {
	ns := ref.Namespace
	if ns == "" {
		ns = m.cfg.Canary.Namespace
	}
	t, ok := m.templates[ns+"/"+ref.Name]
	if !ok {
		return t, ns, fmt.Errorf("metrictemplates.flagger.app %q not found", ref.Name)
	}
	return t, ns, nil
}

// runAnalysis runs the rollout hooks, then the builtin and inline checks,
// then the template checks; the first failure fails the tick.
func (m *Machine) runAnalysis() bool {
	if !m.rolloutHooks() {
		return false
	}
	ok := true
	for _, mt := range m.an.Metrics {
		if !IsBuiltin(mt.Name) && mt.Query == "" {
			continue
		}
		if !m.check(mt, ok, m.builtinCheck) {
			ok = false
		}
	}
	for _, mt := range m.an.Metrics {
		if !m.check(mt, ok, m.templateCheck) {
			ok = false
		}
	}
	return ok
}

// check runs one check when it counts, or (ObserveAllMetrics) to show
// its value after an earlier failure, without events or effect.
func (m *Machine) check(mt Metric, counted bool, fn func(Metric, bool) (bool, bool)) bool {
	if !counted && !m.cfg.ObserveAllMetrics {
		return true
	}
	m.observing = !counted
	passed, ran := fn(mt, counted)
	m.observing = false
	if ran && !counted {
		m.tick.Checks[len(m.tick.Checks)-1].Counted = false
	}
	return passed || !counted
}

// query runs a rendered query and records the check.
func (m *Machine) query(mt Metric, provider *MetricProvider, q string) (*Check, float64, error) {
	ch := Check{Metric: mt.Name, Query: strings.Join(strings.Fields(q), " "), Counted: true}
	if r := mt.ThresholdRange; r != nil {
		ch.Min, ch.Max = r.Min, r.Max
	}
	v, err := m.env.Query(m.ctx, provider, q)
	if err != nil {
		ch.Error = err.Error()
		if m.v136() && !m.observing && errors.Is(err, ErrMultipleValues) {
			m.fatal = "Flagger v1.36.1 panics on a range-vector result (runtime error: index out of range [1] with length 0) and the controller restarts: metric " + mt.Name
		}
	} else {
		ch.Value = &v
	}
	m.tick.Checks = append(m.tick.Checks, ch)
	return &m.tick.Checks[len(m.tick.Checks)-1], v, err
}

// builtinCheck is runBuiltinMetricChecks for one metric: request-success-
// rate, request-duration, or an inline query. It reports whether the
// check passed and whether it ran.
func (m *Machine) builtinCheck(mt Metric, emit bool) (bool, bool) {
	name, ns := m.cname()
	c := m.cfg.Canary
	say := func(f func(string, ...any), format string, args ...any) {
		if emit {
			f(format, args...)
		}
	}
	if mt.Interval == "" {
		mt.Interval = DefaultMetricInterval
	}
	vars := m.vars(mt.Interval, mt.TemplateVariables)
	switch {
	case mt.Name == RequestSuccessRate:
		q, _ := m.render(BuiltinQueries[RequestSuccessRate], vars)
		ch, val, err := m.query(mt, nil, q)
		ch.Unit = "%"
		if err != nil {
			if errors.Is(err, ErrNoValuesFound) {
				say(m.warn, "Halt advancement no values found for %s metric %s probably %s.%s is not receiving traffic: %v",
					m.metricsProvider(), mt.Name, c.TargetName, c.Namespace, fmt.Errorf("running query failed: %w", err))
			} else {
				say(m.errorf, "Prometheus query failed: %v", fmt.Errorf("running query failed: %w", err))
			}
			return false, true
		}
		if r := mt.ThresholdRange; r != nil {
			if r.Min != nil && val < *r.Min {
				say(m.warn, "Halt %s.%s advancement success rate %.2f%% < %v%%", name, ns, val, *r.Min)
				return false, true
			}
			if r.Max != nil && val > *r.Max {
				say(m.warn, "Halt %s.%s advancement success rate %.2f%% > %v%%", name, ns, val, *r.Max)
				return false, true
			}
		} else if mt.Threshold > val {
			say(m.warn, "Halt %s.%s advancement success rate %.2f%% < %v%%", name, ns, val, mt.Threshold)
			return false, true
		}
		ch.Passed = true
		return true, true
	case mt.Name == RequestDuration:
		q, _ := m.render(BuiltinQueries[RequestDuration], vars)
		ch, v, err := m.query(mt, nil, q)
		ch.Unit = "ms"
		if err != nil {
			if errors.Is(err, ErrNoValuesFound) {
				say(m.warn, "Halt advancement no values found for %s metric %s probably %s.%s is not receiving traffic",
					m.metricsProvider(), mt.Name, c.TargetName, c.Namespace)
			} else {
				say(m.errorf, "Prometheus query failed: %v", fmt.Errorf("running query failed: %w", err))
			}
			return false, true
		}
		// GetRequestDuration truncates to whole milliseconds.
		val := time.Duration(int64(v)) * time.Millisecond
		if r := mt.ThresholdRange; r != nil {
			if r.Min != nil && val < time.Duration(*r.Min)*time.Millisecond {
				say(m.warn, "Halt %s.%s advancement request duration %v < %v", name, ns, val, time.Duration(*r.Min)*time.Millisecond)
				return false, true
			}
			if r.Max != nil && val > time.Duration(*r.Max)*time.Millisecond {
				say(m.warn, "Halt %s.%s advancement request duration %v > %v", name, ns, val, time.Duration(*r.Max)*time.Millisecond)
				return false, true
			}
		} else if mt.Threshold > 0 && val > time.Duration(mt.Threshold)*time.Millisecond {
			say(m.warn, "Halt %s.%s advancement request duration %v > %v", name, ns, val, time.Duration(mt.Threshold)*time.Millisecond)
			return false, true
		}
		ch.Passed = true
		return true, true
	case mt.Query != "":
		q, err := m.render(mt.Query, vars)
		if err != nil {
			m.tick.Checks = append(m.tick.Checks, Check{Metric: mt.Name, Error: err.Error(), Counted: true})
			say(m.errorf, "Prometheus query failed for %s: %v", mt.Name, err)
			return false, true
		}
		_, val, err := m.query(mt, nil, q)
		if err != nil {
			if errors.Is(err, ErrNoValuesFound) {
				say(m.warn, "Halt advancement no values found for metric: %s", mt.Name)
			} else {
				say(m.errorf, "Prometheus query failed for %s: %v", mt.Name, err)
			}
			return false, true
		}
		return m.compare(mt, val, emit), true
	}
	return true, false
}

// compare checks a custom metric's value against its range, with
// Flagger's texts.
func (m *Machine) compare(mt Metric, val float64, emit bool) bool {
	name, ns := m.cname()
	fail := func(format string, args ...any) bool {
		if emit {
			m.warn(format, args...)
		}
		return false
	}
	if r := mt.ThresholdRange; r != nil {
		if r.Min != nil && val < *r.Min {
			return fail("Halt %s.%s advancement %s %.2f < %v", name, ns, mt.Name, val, *r.Min)
		}
		if r.Max != nil && val > *r.Max {
			return fail("Halt %s.%s advancement %s %.2f > %v", name, ns, mt.Name, val, *r.Max)
		}
	} else if val > mt.Threshold {
		return fail("Halt %s.%s advancement %s %.2f > %v", name, ns, mt.Name, val, mt.Threshold)
	}
	m.tick.Checks[len(m.tick.Checks)-1].Passed = true
	return true
}

// templateCheck is runMetricChecks for one metric.
func (m *Machine) templateCheck(mt Metric, emit bool) (bool, bool) {
	say := func(f func(string, ...any), format string, args ...any) {
		if emit {
			f(format, args...)
		}
	}
	if mt.TemplateRef == nil {
		if IsBuiltin(mt.Name) {
			return true, false
		}
		if m.v136() {
			say(m.errorf, "Metric query failed for no usable metrics template were configured")
			m.tick.Checks = append(m.tick.Checks, Check{Metric: mt.Name, Error: "no usable metrics template were configured", Counted: true})
			return false, true
		}
		if mt.Query == "" {
			say(m.errorf, "Metric query failed for no usable metrics template and query were configured")
			m.tick.Checks = append(m.tick.Checks, Check{Metric: mt.Name, Error: "no usable metrics template and query were configured", Counted: true})
			return false, true
		}
		return true, false
	}
	t, ns, err := m.template(mt.TemplateRef)
	if err != nil {
		say(m.errorf, "Metric template %s.%s error: %v", mt.TemplateRef.Name, ns, err)
		m.tick.Checks = append(m.tick.Checks, Check{Metric: mt.Name, Error: err.Error(), Counted: true})
		return false, true
	}
	q, err := m.render(t.Spec.Query, m.vars(mt.Interval, mt.TemplateVariables))
	if err != nil {
		say(m.errorf, "Metric template %s.%s query render error: %v", t.Metadata.Name, ns, err)
		m.tick.Checks = append(m.tick.Checks, Check{Metric: mt.Name, Error: err.Error(), Counted: true})
		return false, true
	}
	_, val, err := m.query(mt, &t.Spec.Provider, q)
	if err != nil {
		if errors.Is(err, ErrNoValuesFound) {
			say(m.warn, "Halt advancement no values found for custom metric: %s: %v", mt.Name, err)
		} else {
			say(m.errorf, "Metric query failed for %s: %v", mt.Name, err)
		}
		return false, true
	}
	return m.compare(mt, val, emit), true
}

// metricsProvider is the provider named in "no values found" events.
func (m *Machine) metricsProvider() string {
	p := m.cfg.Canary.Provider
	if strings.Contains(p, "linkerd") {
		p = "linkerd"
	}
	if m.cfg.Canary.TargetKind == "Service" {
		p += ":service"
	}
	return p
}
