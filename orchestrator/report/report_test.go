package report

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canarylab/canarylab/orchestrator/analysis"
	"github.com/canarylab/canarylab/orchestrator/scenario"
)

func f(v float64) *float64 { return &v }
func i(v int) *int         { return &v }
func d(v time.Duration) *scenario.Duration {
	x := scenario.Duration(v)
	return &x
}

// recordRollback feeds a recorder the ticks of a canary rolled back after
// three failed checks at weight 10.
func recordRollback(s *scenario.Scenario) Run {
	rec := NewRecorder(s, "x.yaml", "local", 30, nil)
	rec.Started(&Run{Started: time.Unix(0, 0), Interval: time.Minute})
	tick := func(at time.Duration, phase analysis.Phase, weight, fc int, val *float64, events ...string) {
		t := Tick{At: at}
		t.Status = analysis.Status{Phase: phase, FailedChecks: fc}
		t.Routes = analysis.Routes{Primary: 100 - weight, Canary: weight}
		if val != nil {
			t.Checks = []analysis.Check{{Metric: "request-success-rate", Value: val, Counted: true}}
		}
		for _, e := range events {
			t.Events = append(t.Events, analysis.Event{Type: analysis.Warning, Message: e})
		}
		rec.Ticked(t)
	}
	tick(0, analysis.PhaseInitialized, 0, 0, nil, "Initialization done! podinfo.test")
	rec.Revision(time.Unix(1, 0))
	tick(time.Minute, analysis.PhaseProgressing, 0, 0, nil, "New revision detected! Scaling up podinfo.test")
	tick(2*time.Minute, analysis.PhaseProgressing, 10, 0, nil, "Advance podinfo.test canary weight 10")
	for k := 1; k <= 3; k++ {
		tick(time.Duration(2+k)*time.Minute, analysis.PhaseProgressing, 10, k, f(80+float64(k)), "Halt podinfo.test advancement success rate 8x% < 99%")
	}
	tick(6*time.Minute, analysis.PhaseFailed, 0, 0, nil, "Rolling back podinfo.test failed checks threshold reached 3", "Canary failed! Scaling down podinfo.test")
	tick(7*time.Minute, analysis.PhaseFailed, 0, 0, nil)
	return rec.Finish(s, 12*time.Second, nil)
}

func TestExpectations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		expect scenario.Expect
		failed []string // names of the expectations that must fail
	}{
		{"all hold", scenario.Expect{Outcome: scenario.Failed, FailedChecks: i(3), MaxCanaryWeight: i(10),
			DecisionTime: &scenario.DurationRange{Min: d(5 * time.Minute), Max: d(6 * time.Minute)},
			Events: scenario.EventExpect{Include: []string{"threshold reached 3$"}, Exclude: []string{"^Promotion"},
				Sequence: []string{"Scaling up", "weight 10$", "^Halt", "^Halt", "^Halt", "^Rolling back"}},
			Metrics: []scenario.MetricExpect{{Name: "request-success-rate", Min: f(80), Max: f(90)}}}, nil},
		{"wrong outcome and counts", scenario.Expect{Outcome: scenario.Succeeded, FailedChecks: i(5), MaxCanaryWeight: i(50)},
			[]string{"outcome", "failedChecks", "maxCanaryWeight"}},
		{"too slow", scenario.Expect{Outcome: scenario.Failed, DecisionTime: &scenario.DurationRange{Max: d(5 * time.Minute)}},
			[]string{"decisionTime"}},
		{"events", scenario.Expect{Outcome: scenario.Failed, Events: scenario.EventExpect{Include: []string{"^Promotion completed"}, Exclude: []string{"^Halt"}}},
			[]string{"event", "event"}},
		{"a sequence out of order", scenario.Expect{Outcome: scenario.Failed, Events: scenario.EventExpect{Sequence: []string{"^Rolling back", "^Halt"}}},
			[]string{"event sequence"}},
		{"four halts where there were three", scenario.Expect{Outcome: scenario.Failed, Events: scenario.EventExpect{Sequence: []string{"^Halt", "^Halt", "^Halt", "^Halt"}}},
			[]string{"event sequence"}},
		{"metric bound", scenario.Expect{Outcome: scenario.Failed, Metrics: []scenario.MetricExpect{{Name: "request-success-rate", Min: f(82)}}},
			[]string{"metric request-success-rate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &scenario.Scenario{Metadata: scenario.Metadata{Name: "x"}, Expect: tc.expect}
			run := recordRollback(s)
			if run.Outcome != "Failed" || run.DecisionTime != 6*time.Minute || run.FailedChecks != 3 || run.MaxCanaryWeight != 10 {
				t.Fatalf("recorded outcome %s at %s, failed checks %d, max weight %d", run.Outcome, run.DecisionTime, run.FailedChecks, run.MaxCanaryWeight)
			}
			var failed []string
			for _, e := range run.Expectations {
				if !e.Passed {
					failed = append(failed, e.Name)
				}
			}
			if strings.Join(failed, ",") != strings.Join(tc.failed, ",") {
				t.Errorf("failed expectations %q, want %q: %+v", failed, tc.failed, run.Expectations)
			}
			if run.Passed != (len(tc.failed) == 0) {
				t.Errorf("Passed = %v", run.Passed)
			}
		})
	}
}

func TestTimeoutAndError(t *testing.T) {
	s := &scenario.Scenario{Metadata: scenario.Metadata{Name: "x"}, Expect: scenario.Expect{Outcome: scenario.Succeeded}}
	rec := NewRecorder(s, "", "local", 1, nil)
	if run := rec.Finish(s, time.Second, nil); run.Outcome != OutcomeTimeout || run.Passed {
		t.Errorf("no verdict: outcome %s passed %v", run.Outcome, run.Passed)
	}
	rec = NewRecorder(s, "", "local", 1, nil)
	if run := rec.Finish(s, time.Second, os.ErrClosed); run.Outcome != OutcomeError || run.Error == "" || run.Passed {
		t.Errorf("engine error: %+v", run)
	}
}

func TestJUnitAndJSON(t *testing.T) {
	s := &scenario.Scenario{Metadata: scenario.Metadata{Name: "rollback"}, Expect: scenario.Expect{Outcome: scenario.Succeeded}}
	run := recordRollback(s)
	dir := t.TempDir()
	if err := WriteJUnit(filepath.Join(dir, "r.xml"), []Run{run}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "r.xml"))
	var ju junitSuites
	if err := xml.Unmarshal(data, &ju); err != nil {
		t.Fatal(err)
	}
	if ju.Tests != 1 || ju.Failures != 1 || ju.Suites[0].Cases[0].Failure == nil ||
		!strings.Contains(ju.Suites[0].Cases[0].Failure.Message, "want Succeeded, got Failed") ||
		!strings.Contains(ju.Suites[0].Cases[0].SystemOut, "Canary failed! Scaling down podinfo.test") {
		t.Errorf("JUnit:\n%s", data)
	}
	if err := WriteJSON(filepath.Join(dir, "r.json"), []Run{run}); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(filepath.Join(dir, "r.json"))
	for _, want := range []string{`"scenario": "rollback"`, `"outcome": "Failed"`, `"failedChecks": 3`, `"canary": 10`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("JSON lacks %s", want)
		}
	}
}

func TestLiveView(t *testing.T) {
	var b strings.Builder
	l := NewLive(&b, 5, 50)
	l.Ticked(Tick{At: 3 * time.Minute, Tick: analysis.Tick{
		Status: analysis.Status{Phase: analysis.PhaseProgressing, FailedChecks: 1},
		Routes: analysis.Routes{Primary: 90, Canary: 10},
		Checks: []analysis.Check{
			{Metric: "request-success-rate", Value: f(73.28), Unit: "%", Min: f(99), Counted: true},
			{Metric: "request-duration", Value: f(93.7), Unit: "ms", Max: f(500), Passed: true},
			{Metric: "my metric", Min: f(1), Max: f(10), Error: "no values found", Counted: true},
		},
		Events: []analysis.Event{{Type: analysis.Warning, Message: "Halt podinfo.test advancement success rate 73.28% < 99%"}},
	}})
	want := "    3m0s  Progressing      weight  10  failed checks 1/5  request-success-rate 73.28 % ≥ 99 ✗  request-duration 93.70 ms ≤ 500 ✓ (not run by Flagger)  my metric no value in [1, 10] ✗\n" +
		"            Warning Halt podinfo.test advancement success rate 73.28% < 99%\n"
	if b.String() != want {
		t.Errorf("live view\n%q\nwant\n%q", b.String(), want)
	}
}

func TestFormatAt(t *testing.T) {
	for in, want := range map[time.Duration]string{0: "0s", 90 * time.Second: "1m30s", 3*time.Minute + 149*time.Millisecond: "3m0.1s", -2 * time.Second: "-2s"} {
		if got := FormatAt(in); got != want {
			t.Errorf("FormatAt(%s) = %s, want %s", in, got, want)
		}
	}
}
