package behavior

import (
	"math"
	"reflect"
	"testing"
)

// The fuzz targets run as ordinary tests over their f.Add seeds and the
// corpus in testdata/fuzz/<FuzzName>/; fuzz them with, for example,
//
//	go test -run='^$' -fuzz=FuzzParseLatency -fuzztime=20s ./mockserver/behavior/

// fuzzDraws is how many outcomes a fuzz target samples per input: enough to
// reach the tails of wide distributions, few enough to keep exec/s high.
const fuzzDraws = 64

func FuzzParseLatency(f *testing.F) {
	for _, s := range []string{
		"50ms", "0", "fixed(1.5s)", "1h2m3.5s",
		"uniform(10ms,50ms)", "uniform(max=50ms,min=10ms)",
		"normal(50ms,10ms)", "gaussian(5ms,10ms)", "normal(1ns,0s)",
		"lognormal(50ms,400ms)", "lognormal(median=50ms,p99=400ms) cap 200ms",
		"5ms:0.9,50ms:0.09,2s:0.01", "50ms:10%", "mix(1ms:50%,2ms:50%) cap 1ms",
		"percentiles(p50=10ms,p90=50ms,p99=200ms,p999=1s)", "percentiles(min=1ms,p50=10ms,max=1s)",
		"50ms cap 10ms", "lognormal(50ms,40ms)", "50", "uniform(10ms", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLatency(s)
		if err != nil {
			return
		}
		str := l.String()
		back, err := ParseLatency(str)
		if err != nil {
			t.Fatalf("ParseLatency(%q) = %#v; its String() %q does not parse: %v", s, l, str, err)
		}
		if !reflect.DeepEqual(back, l) {
			t.Fatalf("ParseLatency(%q) = %#v, but its String() %q parses as %#v", s, l, str, back)
		}
		if again := back.String(); again != str {
			t.Fatalf("String() not stable: %q then %q", str, again)
		}
		m, err := Profile{Latency: &l}.Compile()
		if err != nil {
			t.Fatalf("ParseLatency(%q) accepted %q but Compile fails: %v", s, str, err)
		}
		r := newRand()
		for range fuzzDraws {
			o := m.Sample(r)
			if o.Delay < 0 || o.Uncapped < 0 {
				t.Fatalf("%s: negative delay: %+v", str, o)
			}
			if l.Cap > 0 && o.Delay > l.Cap.D() {
				t.Fatalf("%s: delay %v above the cap", str, o.Delay)
			}
			if o.Capped != (o.Uncapped > o.Delay) {
				t.Fatalf("%s: Capped %v with Delay %v, Uncapped %v", str, o.Capped, o.Delay, o.Uncapped)
			}
		}
	})
}

func FuzzParseErrors(f *testing.F) {
	for _, s := range []string{
		"503", "503:0.2,500:0.1", "503:20%", "429:0.5,503:0.5", " 503 : 0.5 , 500 : 25% ",
		"503:0.1,503:0.1", "503:0.5,500:0", "503:2", "abc", "", "99:0.1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseErrors(s)
		if err != nil {
			return
		}
		str := e.String()
		back, err := ParseErrors(str)
		if err != nil {
			t.Fatalf("ParseErrors(%q) = %+v; its String() %q does not parse: %v", s, e, str, err)
		}
		for code := range e.Codes {
			if p, q := e.Probability(code), back.Probability(code); math.Abs(p-q) > 1e-9 {
				t.Fatalf("%q: P(%d) = %v, after the round trip through %q %v", s, code, p, str, q)
			}
		}
		m, err := Profile{Errors: &e}.Compile()
		if err != nil {
			t.Fatalf("ParseErrors(%q) accepted but Compile fails: %v", s, err)
		}
		r := newRand()
		for range fuzzDraws {
			if st := m.Sample(r).Status; st != 0 {
				if _, ok := e.Codes[st]; !ok {
					t.Fatalf("%q: drew status %d, not configured", s, st)
				}
			}
		}
	})
}

func FuzzParseFaults(f *testing.F) {
	for _, s := range []string{
		"reset:0.01,hang(10s):0.02,slowBody(3s):0.05,truncate(0.2):0.01",
		"close:1%", "slow_body(2m):0.5", "hang:1", "truncate:0.5", "reset:0.5,close:0.5",
		"", "reset", "hang(10):0.1", "truncate(1.5):0.1", "boom:0.1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fs, err := ParseFaults(s)
		if err != nil {
			return
		}
		str := fs.String()
		back, err := ParseFaults(str)
		if err != nil {
			t.Fatalf("ParseFaults(%q) = %+v; its String() %q does not parse: %v", s, fs, str, err)
		}
		if !reflect.DeepEqual(back, fs) {
			t.Fatalf("ParseFaults(%q) = %+v, but its String() %q parses as %+v", s, fs, str, back)
		}
		m, err := Profile{Faults: &fs}.Compile()
		if err != nil {
			t.Fatalf("ParseFaults(%q) accepted but Compile fails: %v", s, err)
		}
		r := newRand()
		for range fuzzDraws {
			o := m.Sample(r)
			if o.Fault == FaultNone {
				continue
			}
			if spec := fs.Spec(o.Fault); spec == nil || spec.Rate == 0 {
				t.Fatalf("%q: drew %v, not configured", s, o.Fault)
			}
			if o.FaultDuration < 0 || o.FaultFraction < 0 || o.FaultFraction >= 1 {
				t.Fatalf("%q: bad parameters %+v", s, o)
			}
		}
	})
}
