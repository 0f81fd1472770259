// Package scenario is canarylab's scenario format: a Kubernetes-style
// document that says what the stable and canary versions do, the load,
// the canary analysis (Flagger's spec.analysis and MetricTemplates,
// pasteable both ways), and what must happen. It parses strictly (every
// problem at once, each naming its field path and the fix) and publishes
// a JSON Schema for editors.
package scenario

import (
	"time"

	"github.com/canarylab/canarylab/loadgen/plan"
	"github.com/canarylab/canarylab/mockserver/behavior"
	"github.com/canarylab/canarylab/orchestrator/analysis"
)

// APIVersion and Kind identify a scenario document.
const (
	APIVersion = "canarylab.dev/v1alpha1"
	Kind       = "Scenario"
)

// Scenario is one canary analysis to run and its expected outcome.
type Scenario struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	// Target is the Canary's identity (default podinfo in test, as in
	// Flagger's tutorial).
	Target Target `json:"target,omitempty"`
	// Flagger selects the Flagger release the analysis decides as.
	Flagger Flagger `json:"flagger,omitempty"`
	// Stable is what the current (primary) version does; Canary what the
	// new version does.
	Stable behavior.Profile `json:"stable,omitempty"`
	Canary behavior.Profile `json:"canary,omitempty"`
	// Load is the traffic sent through the router while the analysis runs.
	Load Load `json:"load,omitempty"`
	// Analysis is Flagger's Canary spec.analysis.
	Analysis analysis.Spec `json:"analysis"`
	// SkipAnalysis is the Canary's spec.skipAnalysis.
	SkipAnalysis bool `json:"skipAnalysis,omitempty"`
	// MetricTemplates are Flagger MetricTemplate objects that metrics
	// reference.
	MetricTemplates []analysis.MetricTemplate `json:"metricTemplates,omitempty"`
	// Actions change the world during the run: open a gate, change the
	// canary's behaviour.
	Actions []Action `json:"actions,omitempty"`
	// Expect is the outcome the run must have.
	Expect Expect `json:"expect"`
	// Timeout bounds the run in scenario time (default: enough analysis
	// intervals for the analysis to finish, see DefaultTimeout).
	Timeout *Duration `json:"timeout,omitempty"`
}

// Metadata names a scenario.
type Metadata struct {
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// Target is the Canary object's identity.
type Target struct {
	// Name is the Canary's name and its target Deployment's (default
	// podinfo).
	Name string `json:"name,omitempty"`
	// Namespace (default test).
	Namespace string `json:"namespace,omitempty"`
}

// Flagger selects Flagger's behaviour.
type Flagger struct {
	// Version is "1.44" (default: today's Flagger) or "1.36" (the release
	// the end-to-end tests run, with its differences).
	Version string `json:"version,omitempty"`
}

// Load is the traffic of a scenario.
type Load struct {
	// Plan is a load plan (loadgen's format); default one task, GET /.
	// Its host is ignored: the load goes to the router.
	Plan *plan.Plan `json:"plan,omitempty"`
	// Rate is the open model's arrival rate, requests a second.
	Rate float64 `json:"rate,omitempty"`
	// Users is the closed model's number of users (with the plan's
	// waits). Give Rate or Users; none means no load.
	Users int `json:"users,omitempty"`
}

// ActionKind is what an action does.
type ActionKind string

// The actions.
const (
	// OpenGate and CloseGate switch the embedded loadtester's gate of the
	// canary (/gate/check).
	OpenGate  ActionKind = "openGate"
	CloseGate ActionKind = "closeGate"
	// OpenRollback and CloseRollback switch /rollback/check.
	OpenRollback  ActionKind = "openRollback"
	CloseRollback ActionKind = "closeRollback"
	// SetCanary changes the canary's behaviour to Action.Canary.
	SetCanary ActionKind = "setCanary"
	// StopLoad stops the traffic (what the seed's "delete Locust" does).
	StopLoad ActionKind = "stopLoad"
)

// ActionKinds lists the valid actions.
var ActionKinds = []ActionKind{OpenGate, CloseGate, OpenRollback, CloseRollback, SetCanary, StopLoad}

// Action is a change at a point of scenario time, counted from the new
// revision's deployment.
type Action struct {
	At     Duration          `json:"at"`
	Do     ActionKind        `json:"do"`
	Canary *behavior.Profile `json:"canary,omitempty"`
}

// Outcome is how an analysis ends.
type Outcome string

// The two outcomes.
const (
	Succeeded Outcome = "Succeeded"
	Failed    Outcome = "Failed"
)

// Expect is the outcome and what else must hold.
type Expect struct {
	// Outcome is Succeeded (promoted) or Failed (rolled back).
	Outcome Outcome `json:"outcome"`
	// FailedChecks is status.failedChecks when the rollback started.
	FailedChecks *int `json:"failedChecks,omitempty"`
	// MaxCanaryWeight is the highest canary weight the router had.
	MaxCanaryWeight *int `json:"maxCanaryWeight,omitempty"`
	// DecisionTime bounds the scenario time from the new revision to the
	// final phase.
	DecisionTime *DurationRange `json:"decisionTime,omitempty"`
	// Events must (include) or must not (exclude) match some event
	// message (regular expressions, RE2).
	Events EventExpect `json:"events,omitempty"`
	// Metrics bound every value a metric check observed.
	Metrics []MetricExpect `json:"metrics,omitempty"`
}

// DurationRange is an inclusive range of durations.
type DurationRange struct {
	Min *Duration `json:"min,omitempty"`
	Max *Duration `json:"max,omitempty"`
}

// EventExpect lists event patterns (regular expressions, RE2, matched
// against event messages).
type EventExpect struct {
	// Include: each must match some event.
	Include []string `json:"include,omitempty"`
	// Exclude: none may match any event.
	Exclude []string `json:"exclude,omitempty"`
	// Sequence must match events in this order (other events may come
	// between them).
	Sequence []string `json:"sequence,omitempty"`
}

// MetricExpect bounds the values a metric check observed.
type MetricExpect struct {
	Name string   `json:"name"`
	Min  *float64 `json:"min,omitempty"`
	Max  *float64 `json:"max,omitempty"`
}

// Duration is a duration written as "90s" or "1m30s".
type Duration = behavior.Duration

// Defaults for the Canary's identity.
const (
	DefaultName      = "podinfo"
	DefaultNamespace = "test"
)

// Name returns the Canary's name.
func (s *Scenario) Name() string {
	if s.Target.Name != "" {
		return s.Target.Name
	}
	return DefaultName
}

// Namespace returns the Canary's namespace.
func (s *Scenario) Namespace() string {
	if s.Target.Namespace != "" {
		return s.Target.Namespace
	}
	return DefaultNamespace
}

// Version returns the Flagger version decided as.
func (s *Scenario) Version() analysis.Version {
	if s.Flagger.Version == "" {
		return analysis.V1_44
	}
	return analysis.Version(s.Flagger.Version)
}

// DefaultTimeout is how long a run may take in scenario time when the
// scenario does not say: the analysis's longest plausible path (every
// weight step or iteration, each failing up to the threshold, plus
// promotion and a few spare ticks), twice.
func (s *Scenario) DefaultTimeout(interval time.Duration) time.Duration {
	steps := 10
	an := s.Analysis
	switch {
	case an.Iterations > 0:
		steps = an.Iterations + 2
	case an.StepWeight > 0:
		steps = 100/an.StepWeight + 1
	case len(an.StepWeights) > 0:
		steps = len(an.StepWeights) + 1
	}
	ticks := steps + max(1, an.Threshold) + 6
	for _, a := range s.Actions {
		ticks += int(a.At.D() / interval)
	}
	return 2 * time.Duration(ticks) * interval
}
