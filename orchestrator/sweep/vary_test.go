package sweep

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/canarylab/canarylab/orchestrator/scenario"
	"github.com/canarylab/canarylab/scenarios"
)

func TestParseVary(t *testing.T) {
	for _, tc := range []struct {
		spec string
		path string
		want []any
	}{
		{"canary.errors.rate=0:0.05:0.01", "canary.errors.rate", []any{0.0, 0.01, 0.02, 0.03, 0.04, 0.05}},
		{"canary.errors.rate=0:0.05:0.005", "canary.errors.rate", []any{0.0, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.045, 0.05}},
		{"analysis.threshold=1:10:4", "analysis.threshold", []any{1.0, 5.0, 9.0}},
		{"analysis.threshold=1:10:3", "analysis.threshold", []any{1.0, 4.0, 7.0, 10.0}},
		{"load.rate=20:20:1", "load.rate", []any{20.0}},
		{"load.rate=0.1:0.3:0.1", "load.rate", []any{0.1, 0.2, 0.3}},
		{"analysis.threshold=2,5,10", "analysis.threshold", []any{2.0, 5.0, 10.0}},
		{" analysis.threshold = 2, 5 ", "analysis.threshold", []any{2.0, 5.0}},
		{"analysis.interval=30s,1m", "analysis.interval", []any{"30s", "1m"}},
		{"analysis.mirror=true,false", "analysis.mirror", []any{true, false}},
		{"canary.errors=null", "canary.errors", []any{nil}},
		{`canary.errors="503:0.1,500:0.1",503:0.2`, "canary.errors", []any{"503:0.1,500:0.1", "503:0.2"}},
		{"canary.errors=503:0.2", "canary.errors", []any{"503:0.2"}},
		{"canary.latency=lognormal(20ms, 80ms),50ms", "canary.latency", []any{"lognormal(20ms, 80ms)", "50ms"}},
		{`canary.latency={"fixed":"50ms"},{"uniform":{"min":"1ms","max":"2ms"}}`, "canary.latency",
			[]any{map[string]any{"fixed": "50ms"}, map[string]any{"uniform": map[string]any{"min": "1ms", "max": "2ms"}}}},
		{"analysis.stepWeights=[1,5,10],[10,50]", "analysis.stepWeights", []any{[]any{1.0, 5.0, 10.0}, []any{10.0, 50.0}}},
		{"analysis.metrics[0].thresholdRange.min=95,99", "analysis.metrics[0].thresholdRange.min", []any{95.0, 99.0}},
		{"actions[0].at=1m", "actions[0].at", []any{"1m"}},
		{"canary.errors.codes.503=1", "canary.errors.codes.503", []any{1.0}},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			v, err := ParseVary(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if v.Path != tc.path || v.Spec != tc.spec || !reflect.DeepEqual(v.Values, tc.want) {
				t.Errorf("got %q %#v, want %q %#v", v.Path, v.Values, tc.path, tc.want)
			}
		})
	}
}

func TestParseVaryErrors(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"analysis.threshold", "want PATH=VALUES"},
		{"=1,2", "want PATH=VALUES"},
		{"analysis.threshold=", "no values after analysis.threshold="},
		{"load.rate=0:1:0", "the step must be positive"},
		{"load.rate=0:1:-0.1", "the step must be positive"},
		{"load.rate=5:1:1", "the end 1 is below the start 5"},
		{"load.rate=0:100000:1", "has 100001 points, more than 10000"},
		{"load.rate=0:1:1e-300", "more than 10000"},
		{"load.rate=0:inf:1", "must be finite"},
		{"load..rate=1", `"" is not a field name`},
		{"analysis.metrics[x].name=a", "an index is a whole number in brackets"},
		{"analysis.metrics[-1].name=a", "an index is a whole number in brackets"},
		{"analysis.metrics[0.name=a", "an index is a whole number in brackets"},
		{"analysis.metrics[0]x.name=a", "an index is a whole number in brackets"},
		{"analysis.threshold=1,,2", "value 2 is empty"},
		{`canary.errors="503:0.1`, "a double quote is not closed"},
		{`canary.latency={"fixed":"1ms"`, "braces or brackets do not match"},
		{`canary.latency={fixed}`, "is not valid JSON"},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			_, err := ParseVary(tc.spec)
			var ve *VaryError
			if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "--vary "+tc.spec+": ") {
				t.Errorf("error %v, want a *VaryError with %q", err, tc.want)
			}
		})
	}
}

func ready(t testing.TB, name string) *scenario.Scenario {
	t.Helper()
	s, err := scenarios.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustVary(t testing.TB, spec string) Vary {
	t.Helper()
	v, err := ParseVary(spec)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Every ready scenario survives the trip through JSON unchanged.
func TestApplyRoundTrip(t *testing.T) {
	for _, name := range scenarios.Names() {
		s := ready(t, name)
		got, err := Apply(s, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, s) {
			t.Errorf("%s: the scenario changed on the way through JSON:\n%+v\n%+v", name, got, s)
		}
	}
}

func TestApply(t *testing.T) {
	f64 := func(p *float64) float64 {
		if p == nil {
			return -1
		}
		return *p
	}
	for _, tc := range []struct {
		scenario, spec string
		value          any
		check          func(s *scenario.Scenario) bool
	}{
		// failure-errors writes its errors "503:0.2": the short form is an
		// object in JSON, so its rate can be varied.
		{"failure-errors", "canary.errors.rate=0.05", 0.05, func(s *scenario.Scenario) bool {
			return s.Canary.Errors.Rate == 0.05 && s.Canary.Errors.Probability(503) == 0.05
		}},
		{"failure-errors", "canary.errors=500:0.1", "500:0.1", func(s *scenario.Scenario) bool {
			return s.Canary.Errors.Probability(500) == 0.1 && s.Canary.Errors.Probability(503) == 0
		}},
		{"failure-errors", "analysis.threshold=2", 2.0, func(s *scenario.Scenario) bool { return s.Analysis.Threshold == 2 }},
		{"failure-errors", "analysis.interval=30s", "30s", func(s *scenario.Scenario) bool { return s.Analysis.Interval == "30s" }},
		{"failure-errors", "load.rate=50", 50.0, func(s *scenario.Scenario) bool { return s.Load.Rate == 50 }},
		{"failure-errors", "analysis.metrics[0].thresholdRange.min=95", 95.0, func(s *scenario.Scenario) bool {
			return f64(s.Analysis.Metrics[0].ThresholdRange.Min) == 95 && f64(s.Analysis.Metrics[1].ThresholdRange.Max) == 500
		}},
		{"failure-errors", "analysis.metrics[1].thresholdRange.min=1", 1.0, func(s *scenario.Scenario) bool {
			return f64(s.Analysis.Metrics[1].ThresholdRange.Min) == 1 && f64(s.Analysis.Metrics[1].ThresholdRange.Max) == 500
		}},
		{"failure-errors", "canary.latency.lognormal.p99=200ms", "200ms", func(s *scenario.Scenario) bool {
			return s.Canary.Latency.Lognormal.P99.D() == 200*time.Millisecond && s.Canary.Latency.Lognormal.Median.D() == 20*time.Millisecond &&
				s.Stable.Latency.Lognormal.P99.D() == 80*time.Millisecond
		}},
		{"failure-errors", "canary.latency=50ms", "50ms", func(s *scenario.Scenario) bool {
			return s.Canary.Latency.Fixed != nil && s.Canary.Latency.Fixed.D() == 50*time.Millisecond
		}},
		// Absent fields and their parents are created.
		{"success", "canary.errors.rate=0.1", 0.1, func(s *scenario.Scenario) bool {
			return s.Canary.Errors != nil && s.Canary.Errors.Rate == 0.1 && s.Stable.Errors == nil
		}},
		{"success", "canary.faults.reset.rate=0.01", 0.01, func(s *scenario.Scenario) bool {
			return s.Canary.Faults != nil && s.Canary.Faults.Reset.Rate == 0.01
		}},
		{"success", "metadata.labels.team=payments", "payments", func(s *scenario.Scenario) bool {
			return s.Metadata.Labels["team"] == "payments"
		}},
		{"success", "analysis.stepWeights=[1,5,10]", []any{1.0, 5.0, 10.0}, func(s *scenario.Scenario) bool {
			return reflect.DeepEqual(s.Analysis.StepWeights, []int{1, 5, 10})
		}},
		{"gated", "actions[0].at=2m", "2m", func(s *scenario.Scenario) bool { return s.Actions[0].At.D() == 2*time.Minute }},
	} {
		t.Run(tc.scenario+"/"+tc.spec, func(t *testing.T) {
			base := ready(t, tc.scenario)
			v := mustVary(t, tc.spec)
			s, err := Apply(base, []Vary{v}, []any{tc.value})
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(s) {
				t.Errorf("not applied: %+v", s)
			}
			if again := ready(t, tc.scenario); !reflect.DeepEqual(again, base) {
				t.Error("the base scenario changed")
			}
		})
	}
}

func TestApplyErrors(t *testing.T) {
	for _, tc := range []struct {
		scenario string
		specs    []string
		want     string
	}{
		{"failure-errors", []string{"analysis.treshold=2"}, "--vary analysis.treshold=2: analysis.treshold: unknown field: did you mean threshold?"},
		{"failure-errors", []string{"canary.errors.rat=0.1"}, "--vary canary.errors.rat=0.1: canary.errors.rat: unknown field"},
		{"failure-errors", []string{"analysis.metrics[5].thresholdRange.min=1"},
			"--vary analysis.metrics[5].thresholdRange.min=1: analysis.metrics[5]: index 5 is beyond the end of the list (2 items)"},
		{"failure-errors", []string{"analysis.webhooks[0].name=x"}, "analysis.webhooks[0]: index 0 is beyond the end of the list (the list is empty)"},
		{"failure-errors", []string{"analysis.interval.seconds=1"}, `analysis.interval is the string "1m", not an object with field seconds`},
		{"failure-errors", []string{"analysis.threshold[0]=1"}, "analysis.threshold is the number 5, not a list"},
		{"failure-errors", []string{"analysis.threshold=0"}, "--vary analysis.threshold=0: analysis.threshold: must be 1 or more"},
		{"failure-errors", []string{"analysis.threshold=2.5"}, "analysis.threshold: must be a whole number, got 2.5"},
		{"failure-errors", []string{"analysis.threshold=five"}, `analysis.threshold: must be a whole number, got the string "five"`},
		{"failure-errors", []string{"canary.errors.rate=1.5"}, "canary.errors.rate: must be a probability between 0 and 1"},
		{"failure-errors", []string{"analysis.interval=5s"}, "analysis.interval: 5s is under Flagger's minimum of 10s"},
		{"failure-errors", []string{"load.users=5"}, "load: give rate (open model) or users (closed model), not both"},
		// Each alone is fine; together min is above max.
		{"failure-errors", []string{"analysis.metrics[1].thresholdRange.max=50", "analysis.metrics[1].thresholdRange.min=100"},
			"--vary analysis.metrics[1].thresholdRange.max=50 --vary analysis.metrics[1].thresholdRange.min=100: analysis.metrics[1].thresholdRange: min 100 is above max 50"},
	} {
		t.Run(strings.Join(tc.specs, " "), func(t *testing.T) {
			var varies []Vary
			var values []any
			for _, s := range tc.specs {
				v := mustVary(t, s)
				varies, values = append(varies, v), append(values, v.Values[0])
			}
			_, err := Apply(ready(t, tc.scenario), varies, values)
			var ve *VaryError
			if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v\nwant a *VaryError with %q", err, tc.want)
			}
		})
	}
}

// Run checks every point before it runs any, and names the --vary.
func TestRunChecksPointsFirst(t *testing.T) {
	base := ready(t, "failure-errors")
	for _, tc := range []struct {
		specs []string
		want  string
	}{
		{[]string{"canary.errors.rate=0,0.1", "analysis.treshold=2,5"}, "--vary analysis.treshold=2: analysis.treshold: unknown field: did you mean threshold?"},
		{[]string{"analysis.threshold=5,0,2"}, "--vary analysis.threshold=0: analysis.threshold: must be 1 or more"},
		{[]string{"analysis.metrics[1].thresholdRange.max=50,800", "analysis.metrics[1].thresholdRange.min=100"},
			"--vary analysis.metrics[1].thresholdRange.max=50 --vary analysis.metrics[1].thresholdRange.min=100: analysis.metrics[1].thresholdRange: min 100 is above max 50"},
		{[]string{"analysis.threshold=1,2", "analysis.threshold=3"}, "--vary analysis.threshold=3: analysis.threshold is varied twice"},
		{[]string{"load.rate=1:100:1", "analysis.threshold=1:200:1"}, "more than 10000 points"},
	} {
		t.Run(strings.Join(tc.specs, " "), func(t *testing.T) {
			var varies []Vary
			for _, s := range tc.specs {
				varies = append(varies, mustVary(t, s))
			}
			ran := false
			_, err := Run(t.Context(), base, varies, Options{Runs: 1, Healthy: true, Progress: func(int, int) { ran = true }})
			var ve *VaryError
			if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v\nwant a *VaryError with %q", err, tc.want)
			}
			if ran {
				t.Error("runs started before every point was checked")
			}
		})
	}
}
