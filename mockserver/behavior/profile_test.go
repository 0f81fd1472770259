package behavior

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// fullProfile exercises every draw: a fault, an error and a delay.
func fullProfile(t *testing.T) Profile {
	t.Helper()
	l := mustParseLatency(t, "lognormal(50ms,400ms) cap 300ms")
	e := mustErrors("503:0.2,500:0.1")(t)
	f := mustParseFaults(t, "reset:0.05,hang(10s):0.05,slowBody(3s):0.05,truncate(0.2):0.05")
	return Profile{Latency: &l, Errors: &e, Faults: &f}
}

func TestSampleDeterministic(t *testing.T) {
	m := fullProfile(t).MustCompile()
	draw := func(seed1, seed2 uint64) []Outcome {
		r := rand.New(rand.NewPCG(seed1, seed2))
		out := make([]Outcome, 1000)
		for i := range out {
			out[i] = m.Sample(r)
		}
		return out
	}
	a, b := draw(1, 2), draw(1, 2)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, draw %d differs: %+v vs %+v", i, a[i], b[i])
		}
	}
	// A model compiled again from the same profile draws the same sequence.
	m2 := fullProfile(t).MustCompile()
	r := newRand()
	for i := range a {
		if o := m2.Sample(r); o != a[i] {
			t.Fatalf("recompiled model, draw %d differs: %+v vs %+v", i, o, a[i])
		}
	}
	for _, seed := range [][2]uint64{{2, 1}, {1, 3}, {3, 2}} {
		c := draw(seed[0], seed[1])
		same := 0
		for i := range a {
			if a[i] == c[i] {
				same++
			}
		}
		// Outcomes can coincide (two undelayed resets), so don't ask for
		// every one to differ; a different seed must change most of them.
		if same > len(a)/5 {
			t.Errorf("seed %v: %d of %d outcomes equal to seed {1 2}'s; the seed barely matters", seed, same, len(a))
		}
	}
}

// TestSampleConcurrent: a Model is shared between goroutines, each with
// its own source (run under -race).
func TestSampleConcurrent(t *testing.T) {
	m := fullProfile(t).MustCompile()
	done := make(chan []Outcome)
	for g := range 4 {
		go func() {
			r := rand.New(rand.NewPCG(uint64(g), 7))
			out := make([]Outcome, 2000)
			for i := range out {
				out[i] = m.Sample(r)
			}
			done <- out
		}()
	}
	for range 4 {
		<-done
	}
}

func TestOver(t *testing.T) {
	lBase := mustParseLatency(t, "50ms")
	eBase := mustErrors("503")(t)
	fBase := mustParseFaults(t, "truncate(0.3):1")
	base := Profile{Latency: &lBase, Errors: &eBase, Faults: &fBase}.MustCompile()

	lTop := mustParseLatency(t, "2s")
	eTop := mustErrors("500")(t)
	fTop := mustParseFaults(t, "slowBody(1s):1")

	tests := []struct {
		name   string
		top    Profile
		delay  time.Duration
		status int
		fault  FaultKind
		source string
	}{
		{"nothing set keeps all", Profile{}, 50 * time.Millisecond, 503, FaultTruncate, "50ms"},
		{"latency only", Profile{Latency: &lTop}, 2 * time.Second, 503, FaultTruncate, "2s"},
		{"errors only", Profile{Errors: &eTop}, 50 * time.Millisecond, 500, FaultTruncate, "50ms"},
		{"faults only", Profile{Faults: &fTop}, 50 * time.Millisecond, 503, FaultSlowBody, "50ms"},
		{"all", Profile{Latency: &lTop, Errors: &eTop, Faults: &fTop}, 2 * time.Second, 500, FaultSlowBody, "2s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.top.MustCompile().Over(base)
			o := m.Sample(newRand())
			if o.Delay != tt.delay || o.Status != tt.status || o.Fault != tt.fault {
				t.Errorf("Over: delay %v status %d fault %v; want %v %d %v", o.Delay, o.Status, o.Fault, tt.delay, tt.status, tt.fault)
			}
			if m.LatencySource() != tt.source {
				t.Errorf("LatencySource() = %q, want %q", m.LatencySource(), tt.source)
			}
		})
	}
	// Over does not change either operand.
	top := Profile{Latency: &lTop}.MustCompile()
	_ = top.Over(base)
	if base.LatencySource() != "50ms" || top.LatencySource() != "2s" {
		t.Errorf("Over modified its operands: base %q, top %q", base.LatencySource(), top.LatencySource())
	}
	// Over an empty model, a model is itself; an empty model over nothing is empty.
	if got := base.Over(Model{}).Sample(newRand()); got != base.Sample(newRand()) {
		t.Errorf("base.Over(Model{}) = %+v, want %+v", got, base.Sample(newRand()))
	}
	if !(Model{}).Over(Model{}).IsZero() || base.IsZero() {
		t.Errorf("IsZero wrong")
	}
	// An explicit zero part still replaces the part below: errors at rate 0
	// laid over 503 everywhere switch errors off.
	off := Errors{Rate: 0}
	if o := (Profile{Errors: &off}).MustCompile().Over(base).Sample(newRand()); o.Status != 0 {
		t.Errorf("rate-0 errors over 503: status %d, want 0", o.Status)
	}
}

func TestZeroModel(t *testing.T) {
	var m Model
	if !m.IsZero() || m.LatencySource() != "" {
		t.Errorf("zero Model: IsZero %v, LatencySource %q", m.IsZero(), m.LatencySource())
	}
	m2, err := Profile{}.Compile()
	if err != nil || !m2.IsZero() {
		t.Errorf("Profile{}.Compile() = %+v, %v; want a zero model", m2, err)
	}
	if o := m.Sample(newRand()); o != (Outcome{}) {
		t.Errorf("zero Model sampled %+v, want a zero Outcome", o)
	}
	if !(Profile{}).IsZero() || (Profile{}).String() != "healthy" {
		t.Errorf("Profile{}: IsZero %v, String %q", Profile{}.IsZero(), Profile{}.String())
	}
	if got := fullProfile(t).String(); got != "latency=lognormal(50ms,400ms) cap 300ms errors=500:0.1,503:0.2 faults=reset:0.05,hang(10s):0.05,slowBody(3s):0.05,truncate(0.2):0.05" {
		t.Errorf("String() = %q", got)
	}
}

func TestMustCompilePanics(t *testing.T) {
	defer func() {
		r := recover()
		if r == nil {
			t.Fatal("MustCompile of an invalid profile did not panic")
		}
		if s, _ := r.(string); !strings.Contains(s, "errors.rate") {
			t.Errorf("panic %v does not name the field errors.rate", r)
		}
	}()
	Profile{Errors: &Errors{Rate: 2}}.MustCompile()
}

func TestValidateFieldPaths(t *testing.T) {
	ms := func(n int) Duration { return Duration(time.Duration(n) * time.Millisecond) }
	tests := []struct {
		name   string
		p      Profile
		fields []string // Field of every error, in order
	}{
		{"valid", fullProfile(t), nil},
		{"errors rate", Profile{Errors: &Errors{Rate: 2}}, []string{"errors.rate"}},
		{"errors code", Profile{Errors: &Errors{Rate: 0.1, Codes: map[int]float64{42: 1}}}, []string{"errors.codes.42"}},
		{"errors weights zero", Profile{Errors: &Errors{Rate: 0.1, Codes: map[int]float64{503: 0}}}, []string{"errors.codes"}},
		{"latency empty", Profile{Latency: &Latency{}}, []string{"latency"}},
		{"latency two shapes", Profile{Latency: &Latency{Fixed: dur(0), Uniform: &UniformLatency{0, ms(1)}}}, []string{"latency"}},
		{"uniform max", Profile{Latency: &Latency{Uniform: &UniformLatency{ms(50), ms(10)}}}, []string{"latency.uniform.max"}},
		{"normal mean", Profile{Latency: &Latency{Normal: &NormalLatency{0, ms(10)}}}, []string{"latency.normal.mean"}},
		{"lognormal p99", Profile{Latency: &Latency{Lognormal: &LognormalLatency{ms(50), ms(40)}}}, []string{"latency.lognormal.p99"}},
		{"lognormal median", Profile{Latency: &Latency{Lognormal: &LognormalLatency{0, ms(40)}}}, []string{"latency.lognormal.median"}},
		{"mix weight", Profile{Latency: &Latency{Mix: []MixEntry{{ms(5), 0.5}, {ms(50), 1.5}}}}, []string{"latency.mix[1].weight", "latency.mix"}},
		{"mix empty", Profile{Latency: &Latency{Mix: []MixEntry{}}}, []string{"latency.mix"}},
		{"mix sum", Profile{Latency: &Latency{Mix: []MixEntry{{ms(5), 0.6}, {ms(50), 0.6}}}}, []string{"latency.mix"}},
		{"percentiles order", Profile{Latency: &Latency{Percentiles: PercentileTable{"p50": ms(100), "p99": ms(10)}}}, []string{"latency.percentiles"}},
		{"percentiles name", Profile{Latency: &Latency{Percentiles: PercentileTable{"median": ms(100)}}}, []string{"latency.percentiles"}},
		{"percentiles empty", Profile{Latency: &Latency{Percentiles: PercentileTable{}}}, []string{"latency.percentiles"}},
		{"fault rate", Profile{Faults: &Faults{Hang: &FaultSpec{Rate: 2}}}, []string{"faults.hang.rate", "faults"}},
		{"fault fraction on slowBody", Profile{Faults: &Faults{SlowBody: &FaultSpec{Rate: 0.1, Fraction: 0.5}}}, []string{"faults.slowBody.fraction"}},
		{"fault duration on reset", Profile{Faults: &Faults{Reset: &FaultSpec{Rate: 0.1, Duration: ms(1000)}}}, []string{"faults.reset.duration"}},
		{"truncate fraction", Profile{Faults: &Faults{Truncate: &FaultSpec{Rate: 0.1, Fraction: 1}}}, []string{"faults.truncate.fraction"}},
		{"fault sum", Profile{Faults: &Faults{Reset: &FaultSpec{Rate: 0.6}, Close: &FaultSpec{Rate: 0.6}}}, []string{"faults"}},
		{"all parts at once", Profile{
			Latency: &Latency{Uniform: &UniformLatency{ms(50), ms(10)}},
			Errors:  &Errors{Rate: -1},
			Faults:  &Faults{Close: &FaultSpec{Rate: -1}},
		}, []string{"latency.uniform.max", "errors.rate", "faults.close.rate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := tt.p.Validate()
			var got []string
			for _, e := range errs {
				got = append(got, e.Field)
				if e.Message == "" {
					t.Errorf("error for %s has no message", e.Field)
				}
			}
			if strings.Join(got, " ") != strings.Join(tt.fields, " ") {
				t.Errorf("Validate fields %q, want %q (%v)", got, tt.fields, errs)
			}
			_, err := tt.p.Compile()
			if (err == nil) != (len(tt.fields) == 0) {
				t.Errorf("Compile error %v, want one iff Validate finds problems", err)
			}
			if err != nil && !strings.HasPrefix(err.Error(), errs[0].Field+": ") {
				t.Errorf("Compile error %q does not start with the first field %q", err, errs[0].Field)
			}
		})
	}
	// The case spelled out in the brief.
	if f := (Profile{Errors: &Errors{Rate: 2}}).Validate()[0].Field; f != "errors.rate" {
		t.Errorf("Field = %q, want errors.rate", f)
	}
}

func TestPrefixAndFieldError(t *testing.T) {
	errs := []FieldError{{Field: "", Message: "a"}, {Field: "rate", Message: "b"}, {Field: "[2].rate", Message: "c"}}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"errors", []string{"errors", "errors.rate", "errors[2].rate"}},
		{"routes[1].profile", []string{"routes[1].profile", "routes[1].profile.rate", "routes[1].profile[2].rate"}},
		{"", []string{"", "rate", "[2].rate"}},
	}
	for _, tt := range tests {
		got := Prefix(tt.prefix, errs)
		for i := range got {
			if got[i].Field != tt.want[i] || got[i].Message != errs[i].Message {
				t.Errorf("Prefix(%q)[%d] = %+v, want field %q", tt.prefix, i, got[i], tt.want[i])
			}
		}
	}
	if errs[1].Field != "rate" {
		t.Errorf("Prefix modified its argument")
	}
	if s := (FieldError{Field: "errors.rate", Message: "too big"}).Error(); s != "errors.rate: too big" {
		t.Errorf("Error() = %q", s)
	}
	if s := (FieldError{Message: "too big"}).Error(); s != "too big" {
		t.Errorf("Error() without field = %q", s)
	}
}
