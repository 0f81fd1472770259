package behavior

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// Cases' probabilities are those Sample draws with: every outcome falls
// in one case, and each case's frequency is within sigmas binomial
// standard errors of its P.
func TestCasesMatchSample(t *testing.T) {
	m := fullProfile(t).MustCompile()
	cases := m.Cases()
	sum := 0.0
	for _, c := range cases {
		sum += c.P
	}
	if math.Abs(sum-1) > 1e-12 {
		t.Fatalf("probabilities sum to %v", sum)
	}
	// slowBody, truncate and no fault, each with 503, 500 or no status;
	// reset and hang, which never answer.
	if want := 3*3 + 2; len(cases) != want {
		t.Errorf("%d cases: %+v", len(cases), cases)
	}
	counts := make([]int, len(cases))
	r := newRand()
	for range nSamples {
		o := m.Sample(r)
		found := false
		for i, c := range cases {
			if c.Fault == o.Fault && c.Status == o.Status && c.FaultDuration == o.FaultDuration {
				counts[i]++
				found = true
				break
			}
		}
		if !found {
			t.Fatalf("outcome %+v is in no case", o)
		}
	}
	for i, c := range cases {
		checkFraction(t, fmt.Sprintf("%+v", c), counts[i], nSamples, c.P)
	}
}

// DelayCDF is the distribution of Sample's Delay, cap and whole
// nanoseconds included, for every latency shape.
func TestDelayCDFMatchesSample(t *testing.T) {
	for _, src := range []string{
		"lognormal(20ms,80ms)", "lognormal(50ms,400ms) cap 300ms", "uniform(10ms,50ms)",
		"normal(30ms,20ms)", "5ms:0.5,50ms:0.3", "percentiles(p50=10ms,p90=40ms,p99=200ms)", "25ms",
	} {
		t.Run(src, func(t *testing.T) {
			l := mustParseLatency(t, src)
			m := Profile{Latency: &l}.MustCompile()
			delays := sampleLatency(t, l, nSamples)
			for _, d := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
				30 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 300 * time.Millisecond} {
				n := 0
				for _, x := range delays {
					if x <= d {
						n++
					}
				}
				checkFraction(t, d.String(), n, nSamples, m.DelayCDF(d))
			}
		})
	}
}

// The steps of discrete delays sit exactly where Sample puts them.
func TestDelayCDFSteps(t *testing.T) {
	l := mustParseLatency(t, "5ms:0.5,50ms:0.3")
	m := Profile{Latency: &l}.MustCompile()
	for _, c := range []struct {
		d time.Duration
		p float64
	}{{-1, 0}, {0, 0.2}, {5*time.Millisecond - 1, 0.2}, {5 * time.Millisecond, 0.7}, {50 * time.Millisecond, 1}} {
		if got := m.DelayCDF(c.d); math.Abs(got-c.p) > 1e-12 {
			t.Errorf("DelayCDF(%v) = %v, want %v", c.d, got, c.p)
		}
	}
	var none Model
	if none.DelayCDF(0) != 1 || len(none.Cases()) != 1 || none.Cases()[0].P != 1 {
		t.Errorf("a model without latency: DelayCDF(0) = %v, cases %+v", none.DelayCDF(0), none.Cases())
	}
}
