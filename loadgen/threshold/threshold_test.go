package threshold

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/canarylab/canarylab/loadgen/stats"
)

func TestParse(t *testing.T) {
	good := []struct {
		in     string
		metric string
		q      float64
		name   string
		op     string
		value  float64
	}{
		{"p99<500ms", "quantile", 0.99, "", "<", 0.5},
		{"p(99.9) <= 1s", "quantile", 0.999, "", "<=", 1},
		{"p95{name=/api}<300ms", "quantile", 0.95, "/api", "<", 0.3},
		{`p50{name="/a b"}<1s`, "quantile", 0.5, "/a b", "<", 1},
		{"avg<200ms", "avg", 0, "", "<", 0.2},
		{"med<20ms", "median", 0, "", "<", 0.02},
		{"errors<1%", "errors", 0, "", "<", 0.01},
		{"errors<=0.05", "errors", 0, "", "<=", 0.05},
		{"rps>=100", "rps", 0, "", ">=", 100},
		{"failures==0", "failures", 0, "", "==", 0},
	}
	for _, g := range good {
		th, err := Parse(g.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", g.in, err)
			continue
		}
		if th.Metric != g.metric || math.Abs(th.Quantile-g.q) > 1e-12 || th.Name != g.name || th.Op != g.op || th.Value != g.value {
			t.Errorf("Parse(%q) = %+v", g.in, th)
		}
	}
	for in, want := range map[string]string{
		"p99":           "write metric",
		"p99<500":       "unit",
		"latency<1s":    "unknown metric",
		"errors<lots":   "percentage",
		"p100.5<1s":     "percentile",
		"rps>fast":      "not a number",
		"p99 << 500ms":  "write metric",
		"errors<1%%":    "percentage",
		"p99{job=x}<1s": "write metric",
	} {
		if _, err := Parse(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) error %v, want one mentioning %q", in, err, want)
		}
	}
}

func TestCheck(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	st := stats.New(func() time.Time { return now })
	for i := 1; i <= 100; i++ {
		st.Success("GET", "/fast", time.Duration(i)*time.Millisecond, 0)
	}
	for i := 0; i < 10; i++ {
		st.Failure("GET", "/slow", 2*time.Second, 0, "HTTP 503")
	}
	snap := st.Cumulative()
	tests := []struct {
		expr    string
		pass    bool
		display string
	}{
		// HDR quantiles are the top of their bucket (3 significant digits).
		{"p50{name=/fast}<51ms", true, "50.015ms"},
		{"p99{name=/fast}<=99ms", false, "99.007ms"},
		{"max<1s", false, "2s"},
		{"errors<10%", true, "9.091%"},
		{"errors<5%", false, "9.091%"},
		{"rps>=10", true, "11.0/s"},
		{"requests==110", true, "110"},
		{"p99{name=/missing}<1s", false, "no requests"},
	}
	for _, tt := range tests {
		th, err := Parse(tt.expr)
		if err != nil {
			t.Fatal(err)
		}
		r := th.Check(snap, 10*time.Second)
		if r.Passed != tt.pass || r.Display != tt.display {
			t.Errorf("%s: passed %v (%s), want %v (%s)", tt.expr, r.Passed, r.Display, tt.pass, tt.display)
		}
	}
	ths := []Threshold{}
	for _, e := range []string{"errors<50%", "max<1s"} {
		th, _ := Parse(e)
		ths = append(ths, th)
	}
	if _, ok := CheckAll(ths, snap, time.Second); ok {
		t.Error("CheckAll passed with a broken threshold")
	}
}
