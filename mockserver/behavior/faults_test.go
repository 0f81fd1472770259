package behavior

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func mustParseFaults(t *testing.T, s string) Faults {
	t.Helper()
	f, err := ParseFaults(s)
	if err != nil {
		t.Fatalf("ParseFaults(%q): %v", s, err)
	}
	return f
}

func TestFaultsSampling(t *testing.T) {
	type param struct {
		d  time.Duration
		fr float64
	}
	tests := []struct {
		spec  string
		want  map[FaultKind]float64 // probability of each fault, FaultNone included
		param map[FaultKind]param   // the duration and fraction every draw of the kind carries
	}{
		{
			"reset:0.01,hang(10s):0.02,slowBody(3s):0.05,truncate(0.2):0.01",
			map[FaultKind]float64{FaultReset: 0.01, FaultHang: 0.02, FaultSlowBody: 0.05, FaultTruncate: 0.01, FaultNone: 0.91},
			map[FaultKind]param{FaultReset: {}, FaultHang: {10 * time.Second, 0}, FaultSlowBody: {3 * time.Second, 0}, FaultTruncate: {0, 0.2}, FaultNone: {}},
		},
		{
			// Defaults when only the rate is given.
			"close:1%,hang:0.1,slowBody:0.1,truncate:0.1",
			map[FaultKind]float64{FaultClose: 0.01, FaultHang: 0.1, FaultSlowBody: 0.1, FaultTruncate: 0.1, FaultNone: 0.69},
			map[FaultKind]param{FaultClose: {}, FaultHang: {DefaultHangFor, 0}, FaultSlowBody: {DefaultSlowBodyDuration, 0}, FaultTruncate: {0, DefaultTruncateFraction}, FaultNone: {}},
		},
		{
			"reset:1",
			map[FaultKind]float64{FaultReset: 1},
			map[FaultKind]param{FaultReset: {}},
		},
		{
			"reset:0,close:0.5",
			map[FaultKind]float64{FaultClose: 0.5, FaultNone: 0.5},
			map[FaultKind]param{FaultClose: {}, FaultNone: {}},
		},
		{
			"", map[FaultKind]float64{FaultNone: 1}, map[FaultKind]param{FaultNone: {}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			f := mustParseFaults(t, tt.spec)
			m := Profile{Faults: &f}.MustCompile()
			r := newRand()
			counts := map[FaultKind]int{}
			for i := range nSamples {
				o := m.Sample(r)
				counts[o.Fault]++
				p, ok := tt.param[o.Fault]
				if !ok {
					t.Fatalf("draw %d: fault %v not configured", i, o.Fault)
				}
				if o.FaultDuration != p.d || o.FaultFraction != p.fr {
					t.Fatalf("draw %d: %v with duration %v fraction %v, want %v, %v", i, o.Fault, o.FaultDuration, o.FaultFraction, p.d, p.fr)
				}
			}
			for k, p := range tt.want {
				checkFraction(t, k.String(), counts[k], nSamples, p)
			}
		})
	}
	if DefaultHangFor != 30*time.Second || DefaultSlowBodyDuration != 5*time.Second || DefaultTruncateFraction != 0.5 {
		t.Errorf("defaults changed: hang %v, slowBody %v, truncate %v; the docs say 30s, 5s, 0.5",
			DefaultHangFor, DefaultSlowBodyDuration, DefaultTruncateFraction)
	}
}

// TestFaultOutcomes: a fault that gives no response (reset, close, hang)
// skips the error and delay draws; slowBody and truncate still answer, with
// the injected status and delay.
func TestFaultOutcomes(t *testing.T) {
	f := mustParseFaults(t, "reset:0.15,close:0.15,hang:0.15,slowBody:0.15,truncate:0.15")
	e := mustErrors("503")(t)
	l := mustParseLatency(t, "50ms cap 20ms")
	m := Profile{Latency: &l, Errors: &e, Faults: &f}.MustCompile()
	r := newRand()
	seen := map[FaultKind]int{}
	for range 20_000 {
		o := m.Sample(r)
		seen[o.Fault]++
		switch o.Fault {
		case FaultReset, FaultClose, FaultHang:
			if o.Status != 0 || o.Delay != 0 || o.Uncapped != 0 || o.Capped {
				t.Fatalf("%v outcome with Status %d Delay %v Uncapped %v Capped %v; want all zero", o.Fault, o.Status, o.Delay, o.Uncapped, o.Capped)
			}
		case FaultNone, FaultSlowBody, FaultTruncate:
			if o.Status != 503 || o.Delay != 20*time.Millisecond || o.Uncapped != 50*time.Millisecond || !o.Capped {
				t.Fatalf("%v outcome with Status %d Delay %v Uncapped %v Capped %v; want 503, 20ms, 50ms, capped", o.Fault, o.Status, o.Delay, o.Uncapped, o.Capped)
			}
		default:
			t.Fatalf("unexpected fault %v", o.Fault)
		}
	}
	for _, k := range append([]FaultKind{FaultNone}, FaultKinds...) {
		if seen[k] == 0 {
			t.Errorf("%v never drawn", k)
		}
	}
}

func TestParseFaultsGood(t *testing.T) {
	tests := []struct {
		in   string
		want Faults
		str  string
	}{
		{"", Faults{}, ""},
		{"reset:0.01", Faults{Reset: &FaultSpec{Rate: 0.01}}, "reset:0.01"},
		{"close:1%", Faults{Close: &FaultSpec{Rate: 0.01}}, "close:0.01"},
		{"hang(10s):0.02", Faults{Hang: &FaultSpec{Rate: 0.02, Duration: Duration(10 * time.Second)}}, "hang(10s):0.02"},
		{"slowBody(3s):0.05", Faults{SlowBody: &FaultSpec{Rate: 0.05, Duration: Duration(3 * time.Second)}}, "slowBody(3s):0.05"},
		{"slow_body(2m):0.05", Faults{SlowBody: &FaultSpec{Rate: 0.05, Duration: Duration(2 * time.Minute)}}, "slowBody(2m):0.05"},
		{"SLOW-BODY:0.05", Faults{SlowBody: &FaultSpec{Rate: 0.05}}, "slowBody:0.05"},
		{"truncate(0.2):0.01", Faults{Truncate: &FaultSpec{Rate: 0.01, Fraction: 0.2}}, "truncate(0.2):0.01"},
		{
			" truncate(0.2):0.01 , slowBody(3s):0.05, hang(10s):0.02,reset:0.01,, ",
			Faults{
				Reset:    &FaultSpec{Rate: 0.01},
				Hang:     &FaultSpec{Rate: 0.02, Duration: Duration(10 * time.Second)},
				SlowBody: &FaultSpec{Rate: 0.05, Duration: Duration(3 * time.Second)},
				Truncate: &FaultSpec{Rate: 0.01, Fraction: 0.2},
			},
			"reset:0.01,hang(10s):0.02,slowBody(3s):0.05,truncate(0.2):0.01",
		},
		{"reset:0.5,close:0.5", Faults{Reset: &FaultSpec{Rate: 0.5}, Close: &FaultSpec{Rate: 0.5}}, "reset:0.5,close:0.5"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			f, err := ParseFaults(tt.in)
			if err != nil {
				t.Fatalf("ParseFaults: %v", err)
			}
			if !reflect.DeepEqual(f, tt.want) {
				t.Errorf("ParseFaults = %+v, want %+v", f, tt.want)
			}
			if got := f.String(); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
			back, err := ParseFaults(f.String())
			if err != nil {
				t.Fatalf("ParseFaults(String()=%q): %v", f.String(), err)
			}
			if !reflect.DeepEqual(back, f) {
				t.Errorf("round trip through %q: %+v, want %+v", f.String(), back, f)
			}
			for _, k := range FaultKinds {
				if got, want := f.Spec(k), tt.want.Spec(k); !reflect.DeepEqual(got, want) {
					t.Errorf("Spec(%v) = %+v, want %+v", k, got, want)
				}
			}
		})
	}
}

func TestParseFaultsBad(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"reset", []string{"kind:probability", "reset:0.01"}},
		{"boom:0.1", []string{"unknown fault", "slowBody"}},
		{"none:0.1", []string{"unknown fault"}},
		{"reset:0.6,close:0.6", []string{"sum", "at most 1"}},
		{"reset:2", []string{"outside 0..1"}},
		{"reset:often", []string{"not a probability"}},
		{"hang(10):0.1", []string{"unit", "10s"}},
		// The list splits at commas first, so a second parameter is seen as
		// a broken entry.
		{"hang(1s,2s):0.1", []string{"hang(1s", "kind:probability"}},
		{"hang():0.1", []string{"one parameter"}},
		{"hang(1s:0.1", []string{"closing parenthesis"}},
		{"reset(1s):0.1", []string{"reset.duration", "only hang and slowBody"}},
		{"truncate(1s):0.1", []string{"fraction of the body"}},
		{"truncate(1.5):0.1", []string{"truncate.fraction", "below 1"}},
		{"truncate(1):0.1", []string{"truncate.fraction"}},
		{"truncate(-0.5):0.1", []string{"fraction of the body", "above 0"}},
		{"truncate(NaN):0.1", []string{"truncate.fraction"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			f, err := ParseFaults(tt.in)
			if err == nil {
				t.Fatalf("ParseFaults(%q) = %v, want an error", tt.in, f)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestFaultKindNames(t *testing.T) {
	want := map[FaultKind]string{FaultNone: "none", FaultReset: "reset", FaultClose: "close", FaultHang: "hang", FaultSlowBody: "slow_body", FaultTruncate: "truncate", FaultKind(200): "unknown"}
	for k, s := range want {
		if k.String() != s {
			t.Errorf("FaultKind(%d).String() = %q, want %q", k, k.String(), s)
		}
	}
	if len(FaultKinds) != 5 {
		t.Errorf("FaultKinds = %v, want the five kinds", FaultKinds)
	}
	for _, k := range FaultKinds {
		for _, name := range []string{k.String(), strings.ToUpper(k.String()), strings.ReplaceAll(k.String(), "_", "-"), " " + k.String() + " "} {
			if got, err := ParseFaultKind(name); err != nil || got != k {
				t.Errorf("ParseFaultKind(%q) = %v, %v; want %v", name, got, err, k)
			}
		}
	}
	for _, name := range []string{"slowBody", "slowbody"} {
		if got, err := ParseFaultKind(name); err != nil || got != FaultSlowBody {
			t.Errorf("ParseFaultKind(%q) = %v, %v; want slow_body", name, got, err)
		}
	}
	for _, name := range []string{"", "none", "rst", "slow body"} {
		if _, err := ParseFaultKind(name); err == nil {
			t.Errorf("ParseFaultKind(%q): no error", name)
		}
	}
}

func TestFaultsJSON(t *testing.T) {
	in := `{"reset": 0.01, "hang": {"rate": 0.02, "duration": "10s"}, "slowBody": {"rate": 0.05}, "truncate": {"rate": 0.01, "fraction": 0.2}}`
	var f Faults
	if err := json.Unmarshal([]byte(in), &f); err != nil {
		t.Fatal(err)
	}
	want := mustParseFaults(t, "reset:0.01,hang(10s):0.02,slowBody:0.05,truncate(0.2):0.01")
	if !reflect.DeepEqual(f, want) {
		t.Errorf("object form %+v, want %+v", f, want)
	}
	var s Faults
	if err := json.Unmarshal([]byte(`"reset:0.01,hang(10s):0.02,slowBody:0.05,truncate(0.2):0.01"`), &s); err != nil || !reflect.DeepEqual(s, want) {
		t.Errorf("string form %+v, %v; want %+v", s, err, want)
	}
	for in, want := range map[string]string{
		`{"rst": 0.01}`:                        "rst",
		`{"hang": {"rate": 0.1, "for": "1s"}}`: "for",
		`"boom:0.1"`:                           "unknown fault",
		`{"hang": {"duration": 10}}`:           "unit",
	} {
		var f Faults
		err := json.Unmarshal([]byte(in), &f)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Unmarshal(%s) error = %v, want one mentioning %q", in, err, want)
		}
	}
}

// TestTruncateFractionZero: 0 cannot be both "send none of the body" and
// "use the default", so an explicit truncate(0) is refused.
func TestTruncateFractionZero(t *testing.T) {
	if _, err := ParseFaults("truncate(0):1"); err == nil || !strings.Contains(err.Error(), "above 0") {
		t.Errorf("ParseFaults(truncate(0):1) error %v, want one saying the fraction must be above 0", err)
	}
}
