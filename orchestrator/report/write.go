package report

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/canarylab/canarylab/orchestrator/analysis"
)

// WriteJSON writes runs as one JSON document ({"runs": [...]}).
func WriteJSON(path string, runs []Run) error {
	data, err := json.MarshalIndent(struct {
		Runs []Run `json:"runs"`
	}{runs}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     float64      `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Failures  int         `xml:"failures,attr"`
	Errors    int         `xml:"errors,attr"`
	Time      float64     `xml:"time,attr"`
	Timestamp string      `xml:"timestamp,attr"`
	Cases     []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      float64       `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes runs as JUnit XML for CI: a suite per scenario, a
// case per expectation, the events as system-out.
func WriteJUnit(path string, runs []Run) error {
	all := junitSuites{Name: "canarylab"}
	for _, r := range runs {
		s := junitSuite{Name: r.Scenario, Time: r.Elapsed.Seconds(), Timestamp: r.Started.UTC().Format(time.RFC3339)}
		var events strings.Builder
		for _, e := range r.Events {
			fmt.Fprintf(&events, "%s %-7s %s\n", FormatAt(e.At), e.Type, e.Message)
		}
		for _, e := range r.Expectations {
			c := junitCase{Name: e.Name + ": " + e.Want, Classname: "canarylab." + r.Engine + "." + r.Scenario, SystemOut: events.String()}
			if !e.Passed {
				c.Failure = &junitProblem{Message: fmt.Sprintf("want %s, got %s", e.Want, e.Got), Type: "expectation", Text: e.Got}
				s.Failures++
			}
			s.Cases = append(s.Cases, c)
		}
		if r.Error != "" {
			s.Cases = append(s.Cases, junitCase{Name: "run", Classname: "canarylab." + r.Engine + "." + r.Scenario,
				Error: &junitProblem{Message: r.Error, Type: "engine", Text: r.Error}})
			s.Errors++
		}
		s.Tests = len(s.Cases)
		all.Tests += s.Tests
		all.Failures += s.Failures
		all.Errors += s.Errors
		all.Time += s.Time
		all.Suites = append(all.Suites, s)
	}
	data, err := xml.MarshalIndent(all, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JUnit report: %w", err)
	}
	if err := os.WriteFile(path, append([]byte(xml.Header), append(data, '\n')...), 0o644); err != nil {
		return fmt.Errorf("write JUnit report: %w", err)
	}
	return nil
}

// Live prints a run as it happens, one status line per tick with each
// metric against its range, and the events under it as kubectl describe
// lists them.
type Live struct {
	mu        sync.Mutex
	w         io.Writer
	threshold int
	maxWeight int
}

// NewLive returns a live view writing to w.
func NewLive(w io.Writer, threshold, maxWeight int) *Live {
	return &Live{w: w, threshold: threshold, maxWeight: maxWeight}
}

// Started prints the header.
func (l *Live) Started(r *Run) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "%s: canary %s on the %s engine, Flagger %s, interval %s", r.Scenario, r.Canary, r.Engine, r.Flagger, r.Interval)
	if r.Speed != 1 {
		fmt.Fprintf(l.w, ", %g× real time", r.Speed)
	}
	fmt.Fprintln(l.w)
}

// Revision prints scenario time zero.
func (l *Live) Revision(time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "%8s  new revision deployed\n", FormatAt(0))
}

// Ticked prints a tick.
func (l *Live) Ticked(t Tick) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := t.Status
	fmt.Fprintf(l.w, "%8s  %-16s weight %3d  failed checks %d/%d", FormatAt(t.At), st.Phase, t.Routes.Canary, st.FailedChecks, l.threshold)
	if t.Routes.Mirrored {
		fmt.Fprint(l.w, "  mirrored")
	}
	for _, c := range t.Checks {
		fmt.Fprintf(l.w, "  %s %s", c.Metric, checkText(c))
	}
	fmt.Fprintln(l.w)
	for _, e := range t.Events {
		fmt.Fprintf(l.w, "%8s    %-7s %s\n", "", e.Type, e.Message)
	}
	if t.Fatal != "" {
		fmt.Fprintf(l.w, "%8s    FATAL   %s\n", "", t.Fatal)
	}
}

// Note prints a note.
func (l *Live) Note(at time.Duration, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "%8s  %s\n", FormatAt(at), msg)
}

// checkText is a metric's value against its range: "99.20 % ≥ 99 ✓".
func checkText(c analysis.Check) string {
	val := "no value"
	if c.Value != nil {
		val = fmt.Sprintf("%.2f", *c.Value)
		if c.Unit != "" {
			val += " " + c.Unit
		}
	}
	rng := ""
	switch {
	case c.Min != nil && c.Max != nil:
		rng = fmt.Sprintf(" in [%g, %g]", *c.Min, *c.Max)
	case c.Min != nil:
		rng = fmt.Sprintf(" ≥ %g", *c.Min)
	case c.Max != nil:
		rng = fmt.Sprintf(" ≤ %g", *c.Max)
	}
	mark := "✓"
	if !c.Passed {
		mark = "✗"
	}
	if !c.Counted {
		mark += " (not run by Flagger)"
	}
	return val + rng + " " + mark
}

// Summary prints the verdict line and each expectation.
func Summary(w io.Writer, r Run) {
	mark := "PASS"
	if !r.Passed {
		mark = "FAIL"
	}
	fmt.Fprintf(w, "%s %s: %s", mark, r.Scenario, r.Outcome)
	if r.DecisionTime > 0 {
		fmt.Fprintf(w, " after %s of analysis", FormatAt(r.DecisionTime))
	}
	if r.Outcome == "Failed" {
		fmt.Fprintf(w, ", failed checks %d", r.FailedChecks)
	}
	fmt.Fprintf(w, ", max canary weight %d (%s real time)\n", r.MaxCanaryWeight, r.Elapsed.Round(100*time.Millisecond))
	if r.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", r.Error)
	}
	for _, e := range r.Expectations {
		m := "✓"
		if !e.Passed {
			m = "✗"
		}
		fmt.Fprintf(w, "  %s %s: want %s, got %s\n", m, e.Name, e.Want, e.Got)
	}
}
