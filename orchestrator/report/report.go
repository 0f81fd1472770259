// Package report records what a scenario run did — the analysis ticks,
// weights, metric values and events — checks it against the scenario's
// expectations, and writes it for people (a live terminal view and a
// summary) and for machines (JSON, JUnit).
package report

import (
	"fmt"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/canarylab/canarylab/orchestrator/analysis"
	"github.com/canarylab/canarylab/orchestrator/scenario"
)

// Outcomes beyond analysis' two.
const (
	OutcomeTimeout = "Timeout"
	OutcomeError   = "Error"
)

// Tick is an analysis tick with its scenario time.
type Tick struct {
	analysis.Tick
	// At is the scenario time since the new revision (negative before).
	At time.Duration `json:"at"`
}

// Expectation is one expectation of the scenario and whether it held.
type Expectation struct {
	Name   string `json:"name"`
	Want   string `json:"want"`
	Got    string `json:"got"`
	Passed bool   `json:"passed"`
}

// Run is the record of one scenario run.
type Run struct {
	Scenario    string `json:"scenario"`
	Description string `json:"description,omitempty"`
	File        string `json:"file,omitempty"`
	Engine      string `json:"engine"`
	// Speed is how much faster than real time the analysis ran.
	Speed   float64 `json:"speed"`
	Flagger string  `json:"flagger"`
	Canary  string  `json:"canary"`
	// Interval is the analysis interval (scenario time).
	Interval time.Duration `json:"interval"`
	// Threshold is the analysis' threshold: the failed checks that roll
	// the canary back.
	Threshold int `json:"threshold"`
	// Router is the URL the load goes to (the local engine's router).
	Router  string    `json:"router,omitempty"`
	Started time.Time `json:"started"`
	// Elapsed is the run's real (wall clock) time.
	Elapsed time.Duration `json:"elapsed"`
	// Outcome is Succeeded, Failed, Timeout or Error.
	Outcome string `json:"outcome"`
	// DecisionTime is the scenario time from the new revision to the
	// final phase.
	DecisionTime    time.Duration `json:"decisionTime,omitempty"`
	MaxCanaryWeight int           `json:"maxCanaryWeight"`
	// FailedChecks is status.failedChecks when the rollback started.
	FailedChecks int            `json:"failedChecks"`
	Ticks        []Tick         `json:"ticks"`
	Events       []Event        `json:"events"`
	Expectations []Expectation  `json:"expectations"`
	Passed       bool           `json:"passed"`
	Error        string         `json:"error,omitempty"`
	Notes        []string       `json:"notes,omitempty"`
	Load         map[string]any `json:"load,omitempty"`
}

// Event is an analysis event with its scenario time.
type Event struct {
	analysis.Event
	At time.Duration `json:"at"`
}

// Observer sees a run as it happens; engines call it from one goroutine.
type Observer interface {
	// Started is called once the engine is up, before the first tick.
	Started(r *Run)
	// Revision is called when the new revision is deployed: scenario
	// time zero.
	Revision(at time.Time)
	// Ticked is called after every analysis tick.
	Ticked(t Tick)
	// Note is a line about the run that is not an analysis event
	// (actions, load, engine messages).
	Note(at time.Duration, msg string)
}

// Recorder builds the Run and forwards to a further observer (the live
// view), if any.
type Recorder struct {
	mu       sync.Mutex
	run      Run
	revision time.Time
	lastFC   int
	next     Observer
}

// NewRecorder returns a recorder for a run of s; next may be nil.
func NewRecorder(s *scenario.Scenario, file, engine string, speed float64, next Observer) *Recorder {
	return &Recorder{next: next, run: Run{
		Scenario: s.Metadata.Name, Description: s.Metadata.Description, File: file, Engine: engine,
		Speed: speed, Flagger: string(s.Version()), Canary: s.Name() + "." + s.Namespace(),
		Threshold: max(1, s.Analysis.Threshold),
	}}
}

// Started records the engine's start.
func (r *Recorder) Started(run *Run) {
	r.mu.Lock()
	r.run.Started = run.Started
	r.run.Interval = run.Interval
	r.run.Router = run.Router
	merged := r.run
	r.mu.Unlock()
	if r.next != nil {
		r.next.Started(&merged)
	}
}

// Revision records scenario time zero.
func (r *Recorder) Revision(at time.Time) {
	r.mu.Lock()
	r.revision = at
	r.mu.Unlock()
	if r.next != nil {
		r.next.Revision(at)
	}
}

// Ticked records a tick.
func (r *Recorder) Ticked(t Tick) {
	r.mu.Lock()
	r.run.Ticks = append(r.run.Ticks, t)
	for _, e := range t.Events {
		r.run.Events = append(r.run.Events, Event{Event: e, At: t.At})
	}
	if !r.revision.IsZero() {
		r.run.MaxCanaryWeight = max(r.run.MaxCanaryWeight, t.Routes.Canary)
		if r.run.Outcome == "" && t.Status.Phase.Final() {
			r.run.Outcome = string(t.Status.Phase)
			r.run.DecisionTime = t.At
			if t.Status.Phase == analysis.PhaseFailed {
				r.run.FailedChecks = r.lastFC
			}
		}
		r.lastFC = t.Status.FailedChecks
	}
	r.mu.Unlock()
	if r.next != nil {
		r.next.Ticked(t)
	}
}

// Note records a note.
func (r *Recorder) Note(at time.Duration, msg string) {
	r.mu.Lock()
	r.run.Notes = append(r.run.Notes, fmt.Sprintf("%s %s", FormatAt(at), msg))
	r.mu.Unlock()
	if r.next != nil {
		r.next.Note(at, msg)
	}
}

// Decided reports whether the analysis reached a final phase.
func (r *Recorder) Decided() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.run.Outcome != ""
}

// Finish ends the record: err (an engine failure) or a timeout when no
// verdict came, then the expectations.
func (r *Recorder) Finish(s *scenario.Scenario, elapsed time.Duration, err error) Run {
	r.mu.Lock()
	defer r.mu.Unlock()
	run := r.run
	run.Elapsed = elapsed
	switch {
	case err != nil:
		run.Outcome, run.Error = OutcomeError, err.Error()
	case run.Outcome == "":
		run.Outcome = OutcomeTimeout
	}
	run.Expectations = Evaluate(s, &run)
	run.Passed = run.Error == ""
	for _, e := range run.Expectations {
		run.Passed = run.Passed && e.Passed
	}
	return run
}

// Evaluate checks the scenario's expectations against a run.
func Evaluate(s *scenario.Scenario, run *Run) []Expectation {
	e := s.Expect
	var out []Expectation
	add := func(name, want, got string, ok bool) {
		out = append(out, Expectation{Name: name, Want: want, Got: got, Passed: ok})
	}
	add("outcome", string(e.Outcome), run.Outcome, run.Outcome == string(e.Outcome))
	if e.FailedChecks != nil {
		add("failedChecks", fmt.Sprint(*e.FailedChecks), fmt.Sprint(run.FailedChecks), run.Outcome == string(scenario.Failed) && run.FailedChecks == *e.FailedChecks)
	}
	if e.MaxCanaryWeight != nil {
		add("maxCanaryWeight", fmt.Sprint(*e.MaxCanaryWeight), fmt.Sprint(run.MaxCanaryWeight), run.MaxCanaryWeight == *e.MaxCanaryWeight)
	}
	if r := e.DecisionTime; r != nil {
		want, ok := "", run.Outcome == string(scenario.Succeeded) || run.Outcome == string(scenario.Failed)
		if r.Min != nil {
			want += "≥ " + r.Min.String()
			ok = ok && run.DecisionTime >= r.Min.D()
		}
		if r.Max != nil {
			if want != "" {
				want += ", "
			}
			want += "≤ " + r.Max.String()
			ok = ok && run.DecisionTime <= r.Max.D()
		}
		got := "no decision"
		if run.DecisionTime > 0 {
			got = FormatAt(run.DecisionTime)
		}
		add("decisionTime", want, got, ok)
	}
	for _, re := range e.Events.Include {
		m := firstMatch(run.Events, re)
		add("event", "includes /"+re+"/", orNone(m), m != "")
	}
	for _, re := range e.Events.Exclude {
		m := firstMatch(run.Events, re)
		add("event", "excludes /"+re+"/", orNone(m), m == "")
	}
	if seq := e.Events.Sequence; len(seq) > 0 {
		got, ok := matchSequence(run.Events, seq)
		add("event sequence", fmt.Sprintf("%d events in order", len(seq)), got, ok)
	}
	for _, me := range e.Metrics {
		var vals []float64
		for _, t := range run.Ticks {
			for _, c := range t.Checks {
				if c.Metric == me.Name && c.Value != nil {
					vals = append(vals, *c.Value)
				}
			}
		}
		want := "values within [" + bound(me.Min, "-∞") + ", " + bound(me.Max, "+∞") + "]"
		if len(vals) == 0 {
			add("metric "+me.Name, want, "no value observed", false)
			continue
		}
		lo, hi := slices.Min(vals), slices.Max(vals)
		ok := (me.Min == nil || lo >= *me.Min) && (me.Max == nil || hi <= *me.Max)
		add("metric "+me.Name, want, fmt.Sprintf("%d values in [%.4g, %.4g]", len(vals), lo, hi), ok)
	}
	return out
}

// matchSequence matches the patterns against the events in order, and
// says how far it got.
func matchSequence(events []Event, seq []string) (string, bool) {
	i := 0
	for _, e := range events {
		if i == len(seq) {
			break
		}
		if rx, err := regexp.Compile(seq[i]); err == nil && rx.MatchString(e.Message) {
			i++
		}
	}
	if i == len(seq) {
		return "all in order", true
	}
	return fmt.Sprintf("matched %d, then nothing matched /%s/", i, seq[i]), false
}

func firstMatch(events []Event, re string) string {
	rx, err := regexp.Compile(re)
	if err != nil {
		return ""
	}
	for _, e := range events {
		if rx.MatchString(e.Message) {
			return e.Message
		}
	}
	return ""
}

func orNone(s string) string {
	if s == "" {
		return "no such event"
	}
	return s
}

func bound(v *float64, none string) string {
	if v == nil {
		return none
	}
	return fmt.Sprint(*v)
}

// FormatAt formats a scenario time as [-]1m30s, rounded to 100 ms.
func FormatAt(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	return sign + d.Round(100*time.Millisecond).String()
}
