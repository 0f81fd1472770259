package analysis

import (
	"errors"
	"time"
)

// Phase is a Canary's status.phase.
type Phase string

// Flagger's phases.
const (
	PhaseInitializing     Phase = "Initializing"
	PhaseInitialized      Phase = "Initialized"
	PhaseWaiting          Phase = "Waiting"
	PhaseProgressing      Phase = "Progressing"
	PhaseWaitingPromotion Phase = "WaitingPromotion"
	PhasePromoting        Phase = "Promoting"
	PhaseFinalising       Phase = "Finalising"
	PhaseSucceeded        Phase = "Succeeded"
	PhaseFailed           Phase = "Failed"
)

// Final reports whether an analysis that reached p has ended.
func (p Phase) Final() bool { return p == PhaseSucceeded || p == PhaseFailed }

// Condition is the Canary's single "Promoted" condition.
type Condition struct {
	Type               string    `json:"type"`
	Status             string    `json:"status"`
	Reason             string    `json:"reason"`
	Message            string    `json:"message"`
	LastUpdateTime     time.Time `json:"lastUpdateTime"`
	LastTransitionTime time.Time `json:"lastTransitionTime"`
}

// Status is a Canary's status, with Flagger's fields.
type Status struct {
	Phase              Phase       `json:"phase"`
	FailedChecks       int         `json:"failedChecks"`
	CanaryWeight       int         `json:"canaryWeight"`
	Iterations         int         `json:"iterations"`
	LastAppliedSpec    string      `json:"lastAppliedSpec,omitempty"`
	LastPromotedSpec   string      `json:"lastPromotedSpec,omitempty"`
	LastTransitionTime time.Time   `json:"lastTransitionTime"`
	Conditions         []Condition `json:"conditions,omitempty"`
}

// EventType is a Kubernetes event's type.
type EventType string

// The two event types Flagger records.
const (
	Normal  EventType = "Normal"
	Warning EventType = "Warning"
)

// Event is one event Flagger records on the Canary (reason "Synced",
// source "flagger"). Error-level events are Warnings logged at error
// level.
type Event struct {
	Time    time.Time `json:"time"`
	Type    EventType `json:"type"`
	Message string    `json:"message"`
	// Error marks recordEventErrorf (logged at error level by Flagger).
	Error bool `json:"error,omitempty"`
	// Phase is the phase the event's object carried, what an event
	// webhook receives.
	Phase Phase `json:"phase"`
}

// Errors the Env's Query returns, as Flagger's Prometheus provider does.
var (
	// ErrNoValuesFound: an empty result or NaN; a failed check.
	ErrNoValuesFound = errors.New("no values found")
	// ErrMultipleValues: a range vector result (Flagger 1.38+ refuses it;
	// 1.36 panics).
	ErrMultipleValues = errors.New("query returned multiple values")
)

// conditionFor is Flagger's MakeStatusConditions.
func conditionFor(phase Phase, kind string) (status, message string) {
	switch phase {
	case PhaseInitializing:
		return "Unknown", "New " + kind + " detected, starting initialization."
	case PhaseInitialized:
		return "True", kind + " initialization completed."
	case PhaseWaiting, PhaseWaitingPromotion:
		return "Unknown", "Waiting for approval."
	case PhaseProgressing:
		return "Unknown", "New revision detected, progressing canary analysis."
	case PhasePromoting:
		return "Unknown", "Canary analysis completed, starting primary rolling update."
	case PhaseFinalising:
		return "Unknown", "Canary analysis completed, routing all traffic to primary."
	case PhaseSucceeded:
		return "True", "Canary analysis completed successfully, promotion finished."
	case PhaseFailed:
		return "False", "Canary analysis failed, " + kind + " scaled to zero."
	default:
		return "Unknown", "New " + kind + " detected, starting initialization."
	}
}
