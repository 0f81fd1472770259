package analysis

import (
	"context"
	"errors"
	"fmt"
	"text/template"
	"time"
)

// Version names the Flagger release whose decisions the machine makes.
type Version string

// The Flagger versions the machine knows.
const (
	V1_44 Version = "1.44"
	V1_36 Version = "1.36"
)

// Canary is what the machine needs of a Canary object.
type Canary struct {
	Name      string
	Namespace string
	// TargetName is spec.targetRef.name (default Name); TargetKind its
	// kind (default Deployment).
	TargetName string
	TargetKind string
	// Service is spec.service.name (default TargetName).
	Service string
	// Provider is the mesh provider (default istio).
	Provider     string
	Analysis     *Spec
	SkipAnalysis bool
	Suspend      bool
}

// Config configures a Machine.
type Config struct {
	Canary Canary
	// Templates are the MetricTemplates metrics may reference.
	Templates []MetricTemplate
	// Version is the Flagger release to decide as (default V1_44).
	Version Version
	// Speed divides the {{ interval }} windows of queries, for engines
	// that run analysis intervals faster than real time (default 1).
	Speed float64
	// ObserveAllMetrics evaluates every metric of a tick for the report,
	// also after one failed (Flagger stops at the first failure; the
	// decision is the same either way, only the view differs).
	ObserveAllMetrics bool
}

// Env is the world the machine acts on; the engine implements it.
type Env interface {
	// SetRoutes and GetRoutes are the VirtualService's weights.
	SetRoutes(primary, canary int, mirrored bool) error
	GetRoutes() (primary, canary int, mirrored bool, err error)
	// PrimaryReady and CanaryReady report workload readiness; retriable
	// false means the progress deadline passed.
	PrimaryReady() (retriable bool, err error)
	CanaryReady() (retriable bool, err error)
	// Promote copies the canary's template to the primary.
	Promote() error
	// ScaleToZero and ScaleFromZero scale the canary workload.
	ScaleToZero() error
	ScaleFromZero() error
	// Query runs an instant PromQL query now, against provider (nil: the
	// builtin metrics server); errors wrap ErrNoValuesFound and
	// ErrMultipleValues as Flagger's Prometheus provider reports them.
	Query(ctx context.Context, provider *MetricProvider, query string) (float64, error)
	// ProviderOnline runs vector(1) against provider (nil: builtin).
	ProviderOnline(ctx context.Context, provider *MetricProvider) error
	// CallWebhook calls a hook; nil means it passed (status ≤ 202).
	CallWebhook(ctx context.Context, hook Webhook, p Payload) error
	// CallEventWebhook sends an event to a type: event hook.
	CallEventWebhook(ctx context.Context, hook Webhook, p Payload, e Event) error
}

// Payload is what a webhook receives (CanaryWebhookPayload).
type Payload struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Phase     Phase             `json:"phase"`
	Checksum  string            `json:"checksum"`
	Metadata  map[string]string `json:"metadata,omitempty"`
}

// Routes are the router's weights after a tick.
type Routes struct {
	Primary  int  `json:"primary"`
	Canary   int  `json:"canary"`
	Mirrored bool `json:"mirrored"`
}

// Check is one metric check of a tick.
type Check struct {
	Metric string `json:"metric"`
	// Query is the rendered query, whitespace collapsed.
	Query string   `json:"query,omitempty"`
	Value *float64 `json:"value,omitempty"`
	// Unit is "%" for request-success-rate, "ms" for request-duration.
	Unit  string   `json:"unit,omitempty"`
	Min   *float64 `json:"min,omitempty"`
	Max   *float64 `json:"max,omitempty"`
	Error string   `json:"error,omitempty"`
	// Passed is the check's verdict; Counted is false for a check the
	// real Flagger would not have run (after an earlier failure).
	Passed  bool `json:"passed"`
	Counted bool `json:"counted"`
}

// HookCall is one webhook call of a tick.
type HookCall struct {
	Hook  string   `json:"hook"`
	Type  HookType `json:"type"`
	Phase Phase    `json:"phase"`
	Error string   `json:"error,omitempty"`
}

// Tick is what one analysis tick did.
type Tick struct {
	Time   time.Time  `json:"time"`
	Status Status     `json:"status"`
	Routes Routes     `json:"routes"`
	Checks []Check    `json:"checks,omitempty"`
	Hooks  []HookCall `json:"hooks,omitempty"`
	Events []Event    `json:"events,omitempty"`
	// Fatal is set when the real controller would have crashed (Flagger
	// 1.36 on a range vector); the machine stops.
	Fatal string `json:"fatal,omitempty"`
}

// Machine is one Canary's analysis. It is not safe for concurrent use:
// one engine goroutine ticks it.
type Machine struct {
	cfg       Config
	env       Env
	an        Spec
	templates map[string]MetricTemplate
	status    Status
	target    string // the target's current revision
	fatal     string

	// per tick
	ctx        context.Context
	now        time.Time
	tick       *Tick
	eventPhase Phase
	observing  bool

	parsed map[string]*template.Template
	tvars  TemplateVars
}

// New returns a machine for a Canary that has just been created (phase
// Initializing). The target revision is "1" until SetTarget.
func New(cfg Config, env Env) (*Machine, error) {
	c := &cfg.Canary
	if c.Name == "" || c.Namespace == "" {
		return nil, errors.New("analysis: the canary needs a name and a namespace")
	}
	if c.TargetName == "" {
		c.TargetName = c.Name
	}
	if c.TargetKind == "" {
		c.TargetKind = "Deployment"
	}
	if c.Service == "" {
		c.Service = c.TargetName
	}
	if c.Provider == "" {
		c.Provider = "istio"
	}
	if cfg.Version == "" {
		cfg.Version = V1_44
	}
	if cfg.Version != V1_44 && cfg.Version != V1_36 {
		return nil, fmt.Errorf("analysis: Flagger version %q: want %s or %s", cfg.Version, V1_44, V1_36)
	}
	if cfg.Speed <= 0 {
		cfg.Speed = 1
	}
	m := &Machine{cfg: cfg, env: env, target: "1", templates: map[string]MetricTemplate{}, parsed: map[string]*template.Template{}}
	if c.Analysis != nil {
		m.an = *c.Analysis
	}
	for _, t := range cfg.Templates {
		ns := t.Metadata.Namespace
		if ns == "" {
			ns = c.Namespace
		}
		m.templates[ns+"/"+t.Metadata.Name] = t
	}
	m.status.Phase = PhaseInitializing
	m.setCondition(PhaseInitializing, time.Time{})
	return m, nil
}

// Status returns the Canary's status.
func (m *Machine) Status() Status { return m.status }

// Interval is the analysis tick period (GetAnalysisInterval): 60 s when
// unset or unparsable, at least 10 s.
func (m *Machine) Interval() time.Duration { return m.an.IntervalDuration() }

// IntervalDuration is Flagger's GetAnalysisInterval: 60 s when unset or
// unparsable, at least 10 s.
func (s Spec) IntervalDuration() time.Duration {
	d, err := time.ParseDuration(s.Interval)
	if s.Interval == "" || err != nil {
		return DefaultInterval
	}
	return max(d, MinInterval)
}

// Threshold is the failed-check count that rolls back (≥ 1).
func (m *Machine) Threshold() int { return max(1, m.an.Threshold) }

// MaxWeight is Flagger's maxWeight().
func (m *Machine) MaxWeight() int {
	if n := len(m.an.StepWeights); n > 0 {
		return min(100, m.an.StepWeights[n-1])
	}
	if m.an.MaxWeight > 0 {
		return m.an.MaxWeight
	}
	return 100
}

// Strategy is Flagger's DeploymentStrategy(): canary, blue-green or
// ab-testing.
func (m *Machine) Strategy() string {
	switch {
	case len(m.an.Match) > 0 && m.an.Iterations > 0:
		return "ab-testing"
	case m.an.Iterations > 0:
		return "blue-green"
	default:
		return "canary"
	}
}

// SetTarget records a new revision of the target workload (what editing
// the Deployment's pod template does); the next ticks detect it.
func (m *Machine) SetTarget(revision string) { m.target = revision }

// Target returns the target's current revision.
func (m *Machine) Target() string { return m.target }

// Fatal returns why the machine stopped for good ("" while it runs).
func (m *Machine) Fatal() string { return m.fatal }

func (m *Machine) skipAnalysis() bool {
	return m.cfg.Canary.SkipAnalysis || m.cfg.Canary.Analysis == nil
}

func (m *Machine) v136() bool { return m.cfg.Version == V1_36 }

func (m *Machine) cname() (string, string) { return m.cfg.Canary.Name, m.cfg.Canary.Namespace }

// Tick runs one analysis tick at now, as advanceCanary does.
func (m *Machine) Tick(ctx context.Context, now time.Time) Tick {
	m.ctx, m.now = ctx, now
	m.tick = &Tick{Time: now}
	m.eventPhase = m.status.Phase
	if m.fatal == "" {
		m.advance()
	}
	m.tick.Fatal = m.fatal
	m.tick.Status = m.status
	if p, c, mir, err := m.env.GetRoutes(); err == nil {
		m.tick.Routes = Routes{p, c, mir}
	}
	t := *m.tick
	m.tick, m.ctx = nil, nil
	return t
}

func (m *Machine) advance() {
	c := m.cfg.Canary
	if c.Suspend {
		m.info("skipping canary run as object is suspended")
		return
	}
	initializing := m.status.Phase == "" || m.status.Phase == PhaseInitializing
	if initializing && !m.skipAnalysis() {
		m.checkProviders()
	}
	if initializing {
		if !m.skipAnalysis() {
			if _, err := m.env.PrimaryReady(); err != nil {
				m.warn("%v", err)
				return
			}
		}
		// ScaleToZero of the target is only logged by Flagger.
		_ = m.env.ScaleToZero()
		m.syncStatus(PhaseInitialized, 0, 0, 0)
		m.info("Initialization done! %s.%s", c.Name, c.Namespace)
	}

	if !m.shouldAdvance() {
		return
	}
	maxWeight := m.MaxWeight()
	if !m.skipAnalysis() {
		if retriable, err := m.env.PrimaryReady(); err != nil {
			m.warn("%v", err)
			if !retriable {
				if !m.v136() && (m.status.Phase == PhasePromoting || m.status.Phase == PhaseFinalising) {
					m.failedPromotion(err)
				} else {
					m.rollback()
				}
			}
			return
		}
	}
	primaryWeight, canaryWeight, mirrored, err := m.env.GetRoutes()
	if err != nil {
		m.warn("%v", err)
		return
	}
	if !m.checkCanaryStatus() {
		return
	}
	if m.revisionChanged() {
		m.info("New revision detected! Restarting analysis for %s.%s", c.TargetName, c.Namespace)
		if err := m.env.SetRoutes(100, 0, false); err != nil {
			m.warn("%v", err)
			return
		}
		m.syncStatus(PhaseProgressing, 0, 0, 0)
		return
	}
	if retriable, err := m.env.CanaryReady(); err != nil {
		m.warn("%v", err)
		if !retriable {
			m.rollback()
		}
		return
	}
	if m.skipAnalysis() {
		m.promoteSkipped()
		return
	}
	switch m.status.Phase {
	case PhaseProgressing, PhaseWaiting, PhaseWaitingPromotion:
		if m.rollbackHooks(m.status.Phase) {
			m.warn("Rolling back %s.%s manual webhook invoked", c.Name, c.Namespace)
			m.rollback()
			return
		}
	}
	switch m.status.Phase {
	case PhasePromoting:
		m.promotionTrafficShift(primaryWeight, canaryWeight)
		return
	case PhaseFinalising:
		m.finalise()
		return
	case PhaseProgressing, PhaseWaitingPromotion:
		if m.status.FailedChecks >= m.Threshold() {
			m.rollback()
			return
		}
	}
	if canaryWeight == 0 && m.status.Iterations == 0 && !(m.an.Mirror && mirrored) {
		m.info("Starting canary analysis for %s.%s", c.TargetName, c.Namespace)
		if !m.preRolloutHooks() {
			m.setFailedChecks(m.status.FailedChecks + 1)
			return
		}
	} else if !m.runAnalysis() {
		m.setFailedChecks(m.status.FailedChecks + 1)
		return
	}
	if m.fatal != "" {
		return
	}
	if c.Provider == "kubernetes" {
		if len(m.an.Match) > 0 {
			m.warn("A/B testing is not supported when using the kubernetes provider")
			m.an.Match = nil
		}
		if m.an.Iterations < 1 {
			m.warn("Progressive traffic is not supported when using the kubernetes provider")
			m.warn("Setting canaryAnalysis.iterations: 10")
			m.an.Iterations = 10
		}
	}
	switch m.Strategy() {
	case "ab-testing":
		m.runAB()
		return
	case "blue-green":
		m.runBlueGreen(mirrored)
		return
	}
	if m.nextStepWeight(canaryWeight) > 0 {
		ph := m.status.Phase
		if !mirrored && ph != PhasePromoting && ph != PhaseWaitingPromotion && ph != PhaseFinalising {
			if !m.trafficIncreaseHooks() {
				return
			}
		}
		m.runCanary(mirrored, canaryWeight, primaryWeight, maxWeight)
	}
}

// shouldAdvance is Flagger's shouldAdvance.
func (m *Machine) shouldAdvance() bool {
	switch m.status.Phase {
	case PhaseProgressing, PhaseWaiting, PhaseWaitingPromotion, PhasePromoting, PhaseFinalising:
		return true
	}
	return m.targetChanged()
}

// targetChanged is hasSpecChanged: a revision that is neither the last
// applied nor the promoted one (reverting to the promoted spec does not
// start an analysis).
func (m *Machine) targetChanged() bool {
	if m.status.LastAppliedSpec == "" {
		return true
	}
	if m.target == m.status.LastPromotedSpec {
		return false
	}
	return m.status.LastAppliedSpec != m.target
}

func (m *Machine) revisionChanged() bool {
	if m.status.Phase != PhaseProgressing && m.status.Phase != PhaseWaitingPromotion {
		return false
	}
	return m.targetChanged()
}

// checkCanaryStatus starts the analysis of a new revision (after the
// confirm-rollout gates) and reports whether the tick goes on.
func (m *Machine) checkCanaryStatus() bool {
	switch m.status.Phase {
	case PhaseProgressing, PhaseWaitingPromotion, PhasePromoting, PhaseFinalising:
		return true
	}
	if !m.confirmRolloutHooks() {
		return false
	}
	c := m.cfg.Canary
	m.info("New revision detected! Scaling up %s.%s", c.TargetName, c.Namespace)
	if err := m.env.ScaleFromZero(); err != nil {
		m.errorf("%v", err)
		return false
	}
	m.syncStatus(PhaseProgressing, 0, 0, 0)
	return false
}

// nextStepWeight is Flagger's nextStepWeight.
func (m *Machine) nextStepWeight(canaryWeight int) int {
	if m.an.StepWeight > 0 || len(m.an.StepWeights) == 0 {
		return m.an.StepWeight
	}
	room := 100 - canaryWeight
	if room == 0 {
		return 1
	}
	if canaryWeight == 0 {
		return min(room, m.an.StepWeights[0])
	}
	for i := 0; i < len(m.an.StepWeights)-1; i++ {
		if m.an.StepWeights[i] == canaryWeight {
			return min(room, m.an.StepWeights[i+1]-canaryWeight)
		}
	}
	return room
}

// runCanary is Flagger's runCanary: the next weight, or promotion.
func (m *Machine) runCanary(mirrored bool, canaryWeight, primaryWeight, maxWeight int) {
	c := m.cfg.Canary
	if canaryWeight < maxWeight {
		step := m.nextStepWeight(canaryWeight)
		if m.an.Mirror && canaryWeight == 0 {
			if !mirrored {
				mirrored, primaryWeight, canaryWeight = true, 100, 0
			} else {
				mirrored, primaryWeight, canaryWeight = false, 100-step, step
			}
		} else {
			primaryWeight = max(0, primaryWeight-step)
			canaryWeight = min(100, canaryWeight+step)
		}
		if err := m.env.SetRoutes(primaryWeight, canaryWeight, mirrored); err != nil {
			m.warn("%v", err)
			return
		}
		m.setWeight(canaryWeight)
		m.info("Advance %s.%s canary weight %v", c.Name, c.Namespace, canaryWeight)
		return
	}
	if !m.confirmPromotionHooks() {
		return
	}
	m.promote()
}

// promote copies the canary to the primary and enters Promoting.
func (m *Machine) promote() {
	c := m.cfg.Canary
	m.info("Copying %s.%s template spec to %s-primary.%s", c.TargetName, c.Namespace, c.TargetName, c.Namespace)
	if err := m.env.Promote(); err != nil {
		m.warn("%v", err)
		return
	}
	m.setPhase(PhasePromoting)
}

func (m *Machine) runAB() {
	c := m.cfg.Canary
	if m.an.Iterations > m.status.Iterations {
		if err := m.env.SetRoutes(0, 100, false); err != nil {
			m.warn("%v", err)
			return
		}
		next := m.status.Iterations + 1
		m.setIterations(next)
		m.info("Advance %s.%s canary iteration %v/%v", c.Name, c.Namespace, next, m.an.Iterations)
		return
	}
	if !m.confirmPromotionHooks() {
		return
	}
	if m.an.Iterations == m.status.Iterations {
		m.promote()
	}
}

func (m *Machine) runBlueGreen(mirrored bool) {
	c := m.cfg.Canary
	k8s := c.Provider == "kubernetes"
	if m.an.Iterations > m.status.Iterations {
		if !k8s && m.an.Mirror && !mirrored {
			if err := m.env.SetRoutes(100, 0, true); err != nil {
				m.warn("%v", err)
				return
			}
		}
		next := m.status.Iterations + 1
		m.setIterations(next)
		m.info("Advance %s.%s canary iteration %v/%v", c.Name, c.Namespace, next, m.an.Iterations)
		return
	}
	if !m.confirmPromotionHooks() {
		return
	}
	if m.an.Iterations == m.status.Iterations {
		if !k8s {
			if m.an.Mirror {
				m.info("Stop traffic mirroring and route all traffic to canary")
			} else {
				m.info("Routing all traffic to canary")
			}
			if err := m.env.SetRoutes(0, 100, false); err != nil {
				m.warn("%v", err)
				return
			}
		}
		m.setIterations(m.status.Iterations + 1)
		return
	}
	if m.an.Iterations < m.status.Iterations {
		m.promote()
	}
}

// promotionTrafficShift is runPromotionTrafficShift.
func (m *Machine) promotionTrafficShift(primaryWeight, canaryWeight int) {
	c := m.cfg.Canary
	if c.Provider == "kubernetes" {
		m.setPhase(PhaseFinalising)
		return
	}
	if m.an.StepWeightPromotion == 0 {
		m.info("Routing all traffic to primary")
		if err := m.env.SetRoutes(100, 0, false); err != nil {
			m.warn("%v", err)
			return
		}
		m.setPhase(PhaseFinalising)
		return
	}
	if canaryWeight > 0 {
		primaryWeight = min(100, primaryWeight+m.an.StepWeightPromotion)
		canaryWeight = max(0, canaryWeight-m.an.StepWeightPromotion)
		if err := m.env.SetRoutes(primaryWeight, canaryWeight, false); err != nil {
			m.warn("%v", err)
			return
		}
		m.info("Advance %s.%s primary weight %v", c.Name, c.Namespace, primaryWeight)
		if primaryWeight == 100 {
			m.setPhase(PhaseFinalising)
		} else {
			m.setWeight(canaryWeight)
		}
	}
}

func (m *Machine) finalise() {
	c := m.cfg.Canary
	if err := m.env.ScaleToZero(); err != nil {
		m.warn("scaling down canary %s %s.%s failed: %v", c.TargetKind, c.TargetName, c.Namespace, err)
		return
	}
	m.setPhase(PhaseSucceeded)
	if !m.v136() {
		m.eventPhase = PhaseSucceeded
	}
	m.postRolloutHooks(PhaseSucceeded)
	m.info("Promotion completed! Scaling down %s.%s", c.TargetName, c.Namespace)
}

// promoteSkipped is shouldSkipAnalysis's promotion.
func (m *Machine) promoteSkipped() {
	c := m.cfg.Canary
	if err := m.env.SetRoutes(100, 0, false); err != nil {
		m.warn("%v", err)
		return
	}
	m.info("Copying %s.%s template spec to %s-primary.%s", c.TargetName, c.Namespace, c.TargetName, c.Namespace)
	if err := m.env.Promote(); err != nil {
		m.warn("%v", err)
		return
	}
	if err := m.env.ScaleToZero(); err != nil {
		m.warn("%v", err)
		return
	}
	m.setPhase(PhaseSucceeded)
	if !m.v136() {
		m.eventPhase = PhaseSucceeded
		m.postRolloutHooks(PhaseSucceeded)
	}
	m.info("Promotion completed! Canary analysis was skipped for %s.%s", c.TargetName, c.Namespace)
}

// rollback is Flagger's rollback.
func (m *Machine) rollback() {
	c := m.cfg.Canary
	if m.status.FailedChecks >= m.Threshold() {
		m.warn("Rolling back %s.%s failed checks threshold reached %v", c.Name, c.Namespace, m.status.FailedChecks)
	}
	if err := m.env.SetRoutes(100, 0, false); err != nil {
		m.warn("%v", err)
		return
	}
	saved := m.eventPhase
	m.eventPhase = PhaseFailed
	m.warn("Canary failed! Scaling down %s.%s", c.Name, c.Namespace)
	m.eventPhase = saved
	if err := m.env.ScaleToZero(); err != nil {
		m.warn("%v", err)
		return
	}
	m.syncStatus(PhaseFailed, 0, 0, 0)
	m.postRolloutHooks(PhaseFailed)
}

// failedPromotion is v1.44's handleFailedPromotion: the canary keeps
// serving.
func (m *Machine) failedPromotion(err error) {
	c := m.cfg.Canary
	m.warn("Promotion of %s.%s failed, primary not ready: %v", c.Name, c.Namespace, err)
	if err := m.env.SetRoutes(0, 100, false); err != nil {
		m.warn("%v", err)
		return
	}
	m.syncStatus(PhaseFailed, 100, 0, 0)
	m.postRolloutHooks(PhaseFailed)
}

// Status writers, as pkg/canary/status.go has them.

// syncStatus writes the four fields as given, and the revision.
func (m *Machine) syncStatus(phase Phase, weight, failedChecks, iterations int) {
	m.status.Phase = phase
	m.status.CanaryWeight = weight
	m.status.FailedChecks = failedChecks
	m.status.Iterations = iterations
	m.status.LastAppliedSpec = m.target
	if phase == PhaseInitialized {
		m.status.LastPromotedSpec = m.target
	}
	m.status.LastTransitionTime = m.now
	m.setCondition(phase, m.now)
}

// setPhase is SetStatusPhase.
func (m *Machine) setPhase(phase Phase) {
	keep := phase == PhaseProgressing || phase == PhaseWaiting
	if !m.v136() {
		keep = keep || phase == PhasePromoting
	}
	if !keep {
		m.status.CanaryWeight = 0
		m.status.Iterations = 0
		if phase == PhaseWaitingPromotion {
			m.status.Iterations = m.an.Iterations - 1
		}
	}
	m.status.Phase = phase
	if phase == PhaseInitialized || phase == PhaseSucceeded {
		m.status.LastPromotedSpec = m.status.LastAppliedSpec
	}
	m.status.LastTransitionTime = m.now
	m.setCondition(phase, m.now)
}

func (m *Machine) setWeight(w int) {
	m.status.CanaryWeight = w
	m.status.LastTransitionTime = m.now
}

func (m *Machine) setIterations(n int) {
	m.status.Iterations = n
	m.status.LastTransitionTime = m.now
}

func (m *Machine) setFailedChecks(n int) {
	m.status.FailedChecks = n
	m.status.LastTransitionTime = m.now
}

// setCondition rewrites the Promoted condition when its status or
// reason changed.
func (m *Machine) setCondition(phase Phase, now time.Time) {
	st, msg := conditionFor(phase, m.cfg.Canary.TargetKind)
	if n := len(m.status.Conditions); n > 0 {
		old := m.status.Conditions[0]
		if old.Status == st && old.Reason == string(phase) {
			return
		}
		if old.Status == st {
			now = old.LastTransitionTime
		}
	}
	m.status.Conditions = []Condition{{Type: "Promoted", Status: st, Reason: string(phase), Message: msg,
		LastUpdateTime: m.now, LastTransitionTime: now}}
}

// checksum is the payload checksum of the current revision.
func (m *Machine) checksum() string { return Checksum(nil, m.status.LastAppliedSpec) }

// Events.

func (m *Machine) info(format string, args ...any) { m.record(Normal, false, format, args...) }
func (m *Machine) warn(format string, args ...any) { m.record(Warning, false, format, args...) }
func (m *Machine) errorf(format string, args ...any) {
	m.record(Warning, true, format, args...)
}

func (m *Machine) record(t EventType, isErr bool, format string, args ...any) {
	e := Event{Time: m.now, Type: t, Message: fmt.Sprintf(format, args...), Error: isErr, Phase: m.eventPhase}
	m.tick.Events = append(m.tick.Events, e)
	for _, h := range m.an.Webhooks {
		if h.Type == HookEvent {
			// Errors of event hooks are only logged by Flagger.
			_ = m.env.CallEventWebhook(m.ctx, h, m.payload(e.Phase, h), e)
		}
	}
}
