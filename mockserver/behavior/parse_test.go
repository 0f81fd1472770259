package behavior

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func dur(d time.Duration) *Duration { v := Duration(d); return &v }

func TestParseLatencyGood(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		in   string
		want Latency
		str  string // canonical String()
	}{
		{"50ms", Latency{Fixed: dur(50 * ms)}, "50ms"},
		{"  50ms  ", Latency{Fixed: dur(50 * ms)}, "50ms"},
		{"0", Latency{Fixed: dur(0)}, "0s"},
		{"1m30s", Latency{Fixed: dur(90 * time.Second)}, "1m30s"},
		{"fixed(50ms)", Latency{Fixed: dur(50 * ms)}, "50ms"},
		{"fixed(delay=1.5s)", Latency{Fixed: dur(1500 * ms)}, "1.5s"},
		{"uniform(10ms,50ms)", Latency{Uniform: &UniformLatency{Duration(10 * ms), Duration(50 * ms)}}, "uniform(10ms,50ms)"},
		{"Uniform( 10ms , 50ms )", Latency{Uniform: &UniformLatency{Duration(10 * ms), Duration(50 * ms)}}, "uniform(10ms,50ms)"},
		{"uniform(max=50ms,min=10ms)", Latency{Uniform: &UniformLatency{Duration(10 * ms), Duration(50 * ms)}}, "uniform(10ms,50ms)"},
		{"uniform(5ms,5ms)", Latency{Uniform: &UniformLatency{Duration(5 * ms), Duration(5 * ms)}}, "uniform(5ms,5ms)"},
		{"normal(50ms,10ms)", Latency{Normal: &NormalLatency{Duration(50 * ms), Duration(10 * ms)}}, "normal(50ms,10ms)"},
		{"gaussian(50ms,10ms)", Latency{Normal: &NormalLatency{Duration(50 * ms), Duration(10 * ms)}}, "normal(50ms,10ms)"},
		{"normal(mean=50ms,stddev=0s)", Latency{Normal: &NormalLatency{Duration(50 * ms), 0}}, "normal(50ms,0s)"},
		{"lognormal(50ms,400ms)", Latency{Lognormal: &LognormalLatency{Duration(50 * ms), Duration(400 * ms)}}, "lognormal(50ms,400ms)"},
		{"lognormal(median=50ms,p99=400ms)", Latency{Lognormal: &LognormalLatency{Duration(50 * ms), Duration(400 * ms)}}, "lognormal(50ms,400ms)"},
		{"lognormal(P99=400ms, Median=50ms)", Latency{Lognormal: &LognormalLatency{Duration(50 * ms), Duration(400 * ms)}}, "lognormal(50ms,400ms)"},
		{"5ms:0.9,50ms:0.09,2s:0.01", Latency{Mix: []MixEntry{{Duration(5 * ms), 0.9}, {Duration(50 * ms), 0.09}, {Duration(2 * time.Second), 0.01}}}, "5ms:0.9,50ms:0.09,2s:0.01"},
		{"50ms:10%", Latency{Mix: []MixEntry{{Duration(50 * ms), 0.1}}}, "50ms:0.1"},
		{" 5ms : 90% , 50ms : 10% ", Latency{Mix: []MixEntry{{Duration(5 * ms), 0.9}, {Duration(50 * ms), 0.1}}}, "5ms:0.9,50ms:0.1"},
		{"mix(5ms:0.5,50ms:0.5)", Latency{Mix: []MixEntry{{Duration(5 * ms), 0.5}, {Duration(50 * ms), 0.5}}}, "5ms:0.5,50ms:0.5"},
		{"percentiles(p50=10ms,p99=100ms)", Latency{Percentiles: PercentileTable{"p50": Duration(10 * ms), "p99": Duration(100 * ms)}}, "percentiles(p50=10ms,p99=100ms)"},
		{"percentiles(p999=1s, p50=10ms, p90=50ms, p99=200ms)", Latency{Percentiles: PercentileTable{"p50": Duration(10 * ms), "p90": Duration(50 * ms), "p99": Duration(200 * ms), "p999": Duration(time.Second)}}, "percentiles(p50=10ms,p90=50ms,p99=200ms,p999=1s)"},
		{"percentiles(max=1s,min=1ms,p50=10ms)", Latency{Percentiles: PercentileTable{"min": Duration(ms), "p50": Duration(10 * ms), "max": Duration(time.Second)}}, "percentiles(min=1ms,p50=10ms,max=1s)"},
		{"lognormal(50ms,400ms) cap 2s", Latency{Lognormal: &LognormalLatency{Duration(50 * ms), Duration(400 * ms)}, Cap: Duration(2 * time.Second)}, "lognormal(50ms,400ms) cap 2s"},
		{"50ms cap 10ms", Latency{Fixed: dur(50 * ms), Cap: Duration(10 * ms)}, "50ms cap 10ms"},
		{"uniform(10ms,50ms)  cap  1m30s ", Latency{Uniform: &UniformLatency{Duration(10 * ms), Duration(50 * ms)}, Cap: Duration(90 * time.Second)}, "uniform(10ms,50ms) cap 1m30s"},
		{"5ms:0.9,2s:0.1 cap 1s", Latency{Mix: []MixEntry{{Duration(5 * ms), 0.9}, {Duration(2 * time.Second), 0.1}}, Cap: Duration(time.Second)}, "5ms:0.9,2s:0.1 cap 1s"},
		// A zero cap is no cap.
		{"50ms cap 0", Latency{Fixed: dur(50 * ms)}, "50ms"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLatency(tt.in)
			if err != nil {
				t.Fatalf("ParseLatency: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseLatency = %#v, want %#v", got, tt.want)
			}
			if s := got.String(); s != tt.str {
				t.Errorf("String() = %q, want %q", s, tt.str)
			}
			// Round trip: the short form parses back to the same distribution.
			back, err := ParseLatency(got.String())
			if err != nil {
				t.Fatalf("ParseLatency(String()=%q): %v", got.String(), err)
			}
			if !reflect.DeepEqual(back, got) {
				t.Errorf("round trip through %q: got %#v, want %#v", got.String(), back, got)
			}
			// And through JSON, string and object form alike.
			for _, form := range []func() ([]byte, error){
				func() ([]byte, error) { return json.Marshal(got.String()) },
				func() ([]byte, error) { return json.Marshal(got) },
			} {
				b, err := form()
				if err != nil {
					t.Fatal(err)
				}
				var viaJSON Latency
				if err := json.Unmarshal(b, &viaJSON); err != nil {
					t.Fatalf("json.Unmarshal(%s): %v", b, err)
				}
				if !reflect.DeepEqual(viaJSON, got) {
					t.Errorf("JSON round trip through %s: got %#v, want %#v", b, viaJSON, got)
				}
			}
			if _, err := (Profile{Latency: &got}).Compile(); err != nil {
				t.Errorf("Compile: %v", err)
			}
		})
	}
}

func TestParseLatencyBad(t *testing.T) {
	tests := []struct {
		in string
		// every one of these must be in the error: the fix, or the part at fault
		want []string
	}{
		{"", []string{"empty", "50ms"}},
		{"   ", []string{"empty"}},
		{"50", []string{"unit", "50ms"}},
		{"1.5", []string{"unit", "1.5s"}},
		{"fast", []string{"not a duration", "uniform(min,max)"}},
		{"-5ms", []string{"negative"}},
		{"lognormal(50ms,40ms)", []string{"p99", "greater than the median", "fixed"}},
		{"lognormal(50ms,50ms)", []string{"p99", "greater than the median"}},
		{"lognormal(0s,50ms)", []string{"median", "positive"}},
		{"lognormal(50,400ms)", []string{"median", "unit"}},
		{"lognormal(median=50ms,p95=400ms)", []string{"unknown argument", "p95", "lognormal(median,p99)"}},
		{"lognormal(50ms)", []string{"takes 2 arguments", "got 1"}},
		{"lognormal(50ms,400ms,1s)", []string{"takes 2 arguments", "got 3"}},
		{"uniform(50ms,10ms)", []string{"uniform.max", "at least min"}},
		{"uniform()", []string{"takes 2 arguments", "got 0"}},
		{"uniform(10ms,50ms", []string{"closing parenthesis"}},
		{"normal(0s,10ms)", []string{"normal.mean", "positive"}},
		{"fixed(50)", []string{"unit"}},
		{"exponential(50ms)", []string{"unknown distribution", "lognormal"}},
		{"5ms:0.9,50ms:0.2", []string{"sum", "at most 1"}},
		{"50ms:90%,1s:20%", []string{"sum", "at most 1"}},
		{"50ms:1.5", []string{"outside 0..1"}},
		{"50ms:-0.1", []string{"outside 0..1"}},
		{"50ms:abc", []string{"not a probability", "20%"}},
		{"50ms:NaN", []string{"outside 0..1"}},
		{"50:0.5", []string{"unit"}},
		{"5ms:0.5,50ms", []string{"value:probability"}},
		{"mix()", []string{"empty list"}},
		{"percentiles()", []string{"at least one percentile"}},
		{"percentiles(p50)", []string{"name=delay", "p99=200ms"}},
		{"percentiles(p50=100ms,p99=10ms)", []string{"must not decrease"}},
		{"percentiles(p50=10ms,p99.9=1s,p999=2s)", []string{"twice"}},
		{"percentiles(q50=10ms)", []string{"not a percentile", "p99"}},
		{"percentiles(p100.5=10ms)", []string{"not a percentile"}},
		{"percentiles(p50=10)", []string{"p50", "unit"}},
		{"50ms cap 2", []string{"cap", "unit"}},
		{"50ms cap fast", []string{"cap", "not a duration"}},
		{"cap 2s", []string{"not a duration"}},
		{" cap 2s", []string{"not a duration"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			l, err := ParseLatency(tt.in)
			if err == nil {
				t.Fatalf("ParseLatency(%q) = %v, want an error", tt.in, l)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestParseLatencyArgumentMixups: named arguments must not be silently
// dropped or shadowed by a positional one.
func TestParseLatencyArgumentMixups(t *testing.T) {
	var wrong []string
	for _, in := range []string{"uniform(max=50ms,10ms)", "uniform(max=50ms,max=60ms)", "lognormal(p99=400ms,p99=500ms)"} {
		if l, err := ParseLatency(in); err == nil {
			wrong = append(wrong, fmt.Sprintf("%s parses as %s", in, l))
		}
	}
	if len(wrong) > 0 {
		t.Error("a positional argument after a named one, or a name given twice, must be refused: " + strings.Join(wrong, "; "))
	}
}

func TestLatencyJSON(t *testing.T) {
	const ms = time.Millisecond
	good := []struct {
		in   string
		want Latency
	}{
		{`"lognormal(50ms,400ms)"`, Latency{Lognormal: &LognormalLatency{Duration(50 * ms), Duration(400 * ms)}}},
		{`"50ms cap 10ms"`, Latency{Fixed: dur(50 * ms), Cap: Duration(10 * ms)}},
		{`{"uniform":{"min":"10ms","max":"50ms"},"cap":"1s"}`, Latency{Uniform: &UniformLatency{Duration(10 * ms), Duration(50 * ms)}, Cap: Duration(time.Second)}},
		{`{"lognormal":{"median":"50ms","p99":"400ms"}}`, Latency{Lognormal: &LognormalLatency{Duration(50 * ms), Duration(400 * ms)}}},
		{`{"normal":{"mean":"50ms","stddev":"10ms"}}`, Latency{Normal: &NormalLatency{Duration(50 * ms), Duration(10 * ms)}}},
		{`{"fixed":"50ms"}`, Latency{Fixed: dur(50 * ms)}},
		{`{"fixed":0}`, Latency{Fixed: dur(0)}},
		{`{"mix":[{"delay":"5ms","weight":0.9},{"delay":"50ms","weight":0.1}]}`, Latency{Mix: []MixEntry{{Duration(5 * ms), 0.9}, {Duration(50 * ms), 0.1}}}},
		{`{"percentiles":{"p50":"10ms","p99":"100ms"}}`, Latency{Percentiles: PercentileTable{"p50": Duration(10 * ms), "p99": Duration(100 * ms)}}},
	}
	for _, tt := range good {
		var got Latency
		if err := json.Unmarshal([]byte(tt.in), &got); err != nil {
			t.Errorf("Unmarshal(%s): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Unmarshal(%s) = %#v, want %#v", tt.in, got, tt.want)
		}
		if errs := got.Validate(); len(errs) > 0 {
			t.Errorf("Unmarshal(%s): Validate: %v", tt.in, errs)
		}
	}
	bad := []struct{ in, want string }{
		{`"50"`, "unit"},
		{`"lognormal(50ms,40ms)"`, "p99"},
		{`{"uniform":{"min":10,"max":"50ms"}}`, "unit"},
		{`{"lognorm":{"median":"50ms","p99":"400ms"}}`, "lognorm"},
		{`{"fixed":"-1s"}`, "negative"},
		{`42`, "lognormal(50ms,400ms)"},
	}
	for _, tt := range bad {
		var got Latency
		err := json.Unmarshal([]byte(tt.in), &got)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Unmarshal(%s) error = %v, want one mentioning %q", tt.in, err, tt.want)
		}
	}
}

func TestProfileJSON(t *testing.T) {
	in := `{
		"latency": {"lognormal": {"median": "50ms", "p99": "400ms"}, "cap": "2s"},
		"errors": {"rate": 0.1, "codes": {"503": 3, "500": 1}},
		"faults": {"reset": 0.01, "hang": {"rate": 0.02, "duration": "10s"}, "truncate": {"rate": 0.05, "fraction": 0.2}}
	}`
	var p Profile
	if err := json.Unmarshal([]byte(in), &p); err != nil {
		t.Fatal(err)
	}
	if errs := p.Validate(); len(errs) > 0 {
		t.Fatalf("Validate: %v", errs)
	}
	if got, want := p.String(), "latency=lognormal(50ms,400ms) cap 2s errors=500:0.025,503:0.075 faults=reset:0.01,hang(10s):0.02,truncate(0.2):0.05"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	// The short forms inside JSON decode to the same profile.
	short := `{"latency": "lognormal(50ms,400ms) cap 2s", "errors": "503:0.075,500:0.025", "faults": "reset:0.01,hang(10s):0.02,truncate(0.2):0.05"}`
	var q Profile
	if err := json.Unmarshal([]byte(short), &q); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(q.Latency, p.Latency) || !reflect.DeepEqual(q.Faults, p.Faults) {
		t.Errorf("short form %+v differs from object form %+v", q, p)
	}
	for _, c := range []int{500, 503} {
		if math.Abs(q.Errors.Probability(c)-p.Errors.Probability(c)) > 1e-12 {
			t.Errorf("P(%d): short form %v, object form %v", c, q.Errors.Probability(c), p.Errors.Probability(c))
		}
	}
	// Marshal and read back.
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back Profile
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("Unmarshal(%s): %v", b, err)
	}
	if !reflect.DeepEqual(back, p) {
		t.Errorf("JSON round trip through %s: %+v, want %+v", b, back, p)
	}
}

func TestParseDuration(t *testing.T) {
	good := []struct {
		in   string
		want time.Duration
	}{
		{"0", 0},
		{"0s", 0},
		{" 250ms ", 250 * time.Millisecond},
		{"1.5s", 1500 * time.Millisecond},
		{"1m30s", 90 * time.Second},
		{"2562047h47m16.854775807s", math.MaxInt64},
	}
	for _, tt := range good {
		got, err := ParseDuration(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	bad := []struct{ in, want string }{
		{"", "empty"},
		{"50", "no unit"},
		{"0.5", "write 0.5ms or 0.5s"},
		{"-0", "no unit"},
		{"-1s", "negative"},
		{"5 ms", "not a duration"},
		{"1d", "not a duration"},
	}
	for _, tt := range bad {
		_, err := ParseDuration(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseDuration(%q) error = %v, want one mentioning %q", tt.in, err, tt.want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"},
		{50 * time.Millisecond, "50ms"},
		{1500 * time.Millisecond, "1.5s"},
		{2 * time.Minute, "2m"},
		{90 * time.Second, "1m30s"},
		{time.Hour, "1h"},
		{90 * time.Minute, "1h30m"},
		{time.Hour + 5*time.Second, "1h0m5s"},
		{10 * time.Minute, "10m"},
	}
	for _, tt := range tests {
		if got := FormatDuration(tt.in); got != tt.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tt.in, got, tt.want)
		}
		if back, err := ParseDuration(tt.want); err != nil || back != tt.in {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.want, back, err, tt.in)
		}
	}
	// Every duration formats to something that parses back to it.
	for _, d := range []time.Duration{1, 999, time.Microsecond, 61 * time.Minute, 25 * time.Hour, 3*time.Hour + time.Nanosecond, math.MaxInt64} {
		if back, err := ParseDuration(FormatDuration(d)); err != nil || back != d {
			t.Errorf("%d ns: ParseDuration(%q) = %v, %v", int64(d), FormatDuration(d), back, err)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	b, err := json.Marshal(Duration(90 * time.Second))
	if err != nil || string(b) != `"1m30s"` {
		t.Errorf("Marshal = %s, %v; want \"1m30s\"", b, err)
	}
	good := map[string]time.Duration{`"250ms"`: 250 * time.Millisecond, `0`: 0, `"0"`: 0, `"2m"`: 2 * time.Minute}
	for in, want := range good {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err != nil || d.D() != want {
			t.Errorf("Unmarshal(%s) = %v, %v; want %v", in, d, err, want)
		}
	}
	bad := map[string]string{`5`: "unit", `"5"`: "unit", `1.5`: "unit", `"-2s"`: "negative", `true`: "unit"}
	for in, want := range bad {
		var d Duration
		err := json.Unmarshal([]byte(in), &d)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Unmarshal(%s) error = %v, want one mentioning %q", in, err, want)
		}
	}
}

func TestParsePercentileName(t *testing.T) {
	good := map[string]float64{
		"min": 0, "p0": 0, "max": 1, "p100": 1, "MAX": 1,
		"p50": 0.5, "P90": 0.9, " p95 ": 0.95, "p99": 0.99,
		"p999": 0.999, "p99.9": 0.999, "p9999": 0.9999, "p99.99": 0.9999,
		"p5": 0.05, "p0.5": 0.005,
	}
	for in, want := range good {
		got, err := ParsePercentileName(in)
		if err != nil || math.Abs(got-want) > 1e-12 {
			t.Errorf("ParsePercentileName(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "p", "50", "q50", "p-5", "p100.5", "p50%", "median", "pinf", "pnan"} {
		if got, err := ParsePercentileName(in); err == nil {
			t.Errorf("ParsePercentileName(%q) = %v, want an error", in, got)
		} else if !strings.Contains(err.Error(), "not a percentile") {
			t.Errorf("ParsePercentileName(%q) error %q does not say what a percentile is", in, err)
		}
	}
}
