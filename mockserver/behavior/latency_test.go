package behavior

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// qCheck is one quantile a distribution test checks.
type qCheck struct {
	q float64
	// want is the q-quantile known independently of the package: the
	// configured value itself (lognormal p50 and p99, a table's p99) or a
	// closed form in the configured parameters.
	want time.Duration
	// tol is the relative tolerance of the sample quantile against want. It
	// is chosen to cover the 4σ band of the order statistic (see
	// orderStatDelta); the test fails if it is ever tighter than that band,
	// so a stated tolerance can't be quietly too optimistic.
	tol float64
}

func TestLatencyDistributions(t *testing.T) {
	const ms = time.Millisecond
	lnQ := func(z float64) time.Duration { return lognormalAt(50*ms, 400*ms, z) }
	tnQ := func(q float64) time.Duration { return truncNormalQuantile(5*ms, 10*ms, q) }
	nQ := func(z float64) time.Duration { return 50*ms + time.Duration(z*float64(10*ms)) }

	tests := []struct {
		name string
		spec string
		// continuous: the fraction of draws below each want must also be q within
		// a 4σ binomial bound (meaningless for a discrete distribution).
		continuous bool
		checks     []qCheck
	}{
		{
			name: "fixed", spec: "50ms",
			// Degenerate: every draw is exactly 50ms, no tolerance.
			checks: []qCheck{{0.1, 50 * ms, 0}, {0.5, 50 * ms, 0}, {0.9, 50 * ms, 0}, {0.99, 50 * ms, 0}, {0.999, 50 * ms, 0}},
		},
		{
			name: "uniform", spec: "uniform(10ms,50ms)", continuous: true,
			// q-quantile is 10ms + q·40ms. The 4σ order-statistic band is at
			// most ±0.18ms (at p50, 0.6%); 2% is comfortably outside it.
			checks: []qCheck{
				{0.1, 14 * ms, 0.02}, {0.5, 30 * ms, 0.02}, {0.9, 46 * ms, 0.02},
				{0.99, 49600 * time.Microsecond, 0.02}, {0.999, 49960 * time.Microsecond, 0.02},
			},
		},
		{
			name: "normal", spec: "normal(50ms,10ms)", continuous: true,
			// mean ± z·sd (truncation at 0 is 5σ away: negligible). The widest
			// 4σ band is at p999, about ±1.2%; 2% covers it.
			checks: []qCheck{
				{0.1, nQ(-zP90), 0.02},
				{0.5, 50 * ms, 0.02},
				{0.9, nQ(zP90), 0.02},
				{0.99, nQ(zP99), 0.02},
				{0.999, nQ(zP999), 0.02},
			},
		},
		{
			name: "normal truncated at 0", spec: "normal(5ms,10ms)", continuous: true,
			// Mean half a stddev above 0: 31% of the untruncated mass is
			// below 0 and must be excluded, not clamped. The quantiles are
			// those of the truncated distribution (found by bisection on its
			// CDF); its median is ≈ 8.96ms, not the mean 5ms. At p10 (≈1.9ms)
			// the 4σ band is ±2.6%, hence 4%; elsewhere 2% (p999: 4%).
			checks: []qCheck{
				{0.1, tnQ(0.1), 0.04}, {0.5, tnQ(0.5), 0.02}, {0.9, tnQ(0.9), 0.02},
				{0.99, tnQ(0.99), 0.02}, {0.999, tnQ(0.999), 0.04},
			},
		},
		{
			name: "lognormal", spec: "lognormal(50ms,400ms)", continuous: true,
			// p50 = 50ms and p99 = 400ms by construction; p10, p90 and p999 are
			// median·exp(σz) with σ = ln(8)/z99. The 4σ bands widen into the
			// tail: ±1.4% at p10/p50/p90, +3.3% at p99, +9.2% at p999.
			checks: []qCheck{
				{0.1, lnQ(-zP90), 0.02}, {0.5, 50 * ms, 0.02}, {0.9, lnQ(zP90), 0.02},
				{0.99, 400 * ms, 0.04}, {0.999, lnQ(zP999), 0.10},
			},
		},
		{
			name: "mix", spec: "5ms:0.9,50ms:0.09,2s:0.01",
			// Discrete: the sample quantile is exactly one of the values.
			// p90 and p99 sit on the steps (cumulative 0.9 and 0.99), where
			// either neighbour is right, so p95 and p995 stand in for them;
			// their 4σ bands stay inside one step, hence tolerance 0.
			checks: []qCheck{
				{0.1, 5 * ms, 0}, {0.5, 5 * ms, 0}, {0.95, 50 * ms, 0},
				{0.995, 2 * time.Second, 0}, {0.999, 2 * time.Second, 0},
			},
		},
		{
			name: "percentiles", spec: "percentiles(p50=10ms,p90=50ms,p99=200ms,p999=1s)", continuous: true,
			// The table's own values, interpolated linearly (p10 = 10ms/5
			// from the implicit min 0 at q=0). At a knee of the table the
			// slope jumps, and so does the width of the 4σ band above the
			// knee: +4.5% at p50, +9% at p90, +40% at p99 (slope 800ms per
			// 0.009). The sharp check there is the CDF one: the fraction of
			// draws < 200ms must be 0.99 within 4σ.
			checks: []qCheck{
				{0.1, 2 * ms, 0.03}, {0.5, 10 * ms, 0.05}, {0.9, 50 * ms, 0.10},
				{0.99, 200 * ms, 0.40}, {0.999, time.Second, 0.03},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := mustParseLatency(t, tt.spec)
			sorted := sampleLatency(t, l, nSamples)
			if sorted[0] < 0 {
				t.Fatalf("negative delay %v", sorted[0])
			}
			for _, c := range tt.checks {
				// Quantile agrees with the independently known value; only
				// float rounding separates them.
				qd := mustQuantile(t, l, c.q)
				if !relClose(qd, c.want, 1e-6, 2) {
					t.Errorf("Quantile(%v) = %v, want %v", c.q, qd, c.want)
				}

				// The sample quantile lies in the 4σ order-statistic band
				// [Quantile(q-δ), Quantile(q+δ)] (1ns for rounding).
				sq := sampleQuantile(sorted, c.q)
				delta := orderStatDelta(c.q, len(sorted))
				lo := mustQuantile(t, l, math.Max(0, c.q-delta))
				hi := mustQuantile(t, l, math.Min(1, c.q+delta))
				if sq < lo-1 || sq > hi+1 {
					t.Errorf("sample p%v = %v, outside Quantile's 4σ band [%v, %v]", c.q*100, sq, lo, hi)
				}

				t.Logf("p%v: sample %v, Quantile %v, want %v, 4σ band [%v, %v]", c.q*100, sq, qd, c.want, lo, hi)

				// The sample quantile is close to the configured value.
				if !relClose(sq, c.want, c.tol, 1) {
					t.Errorf("sample p%v = %v, want %v ± %.1f%%", c.q*100, sq, c.want, c.tol*100)
				}
				if c.want > 0 {
					band := math.Max(float64(hi-c.want), float64(c.want-lo)) / float64(c.want)
					if c.tol < band {
						t.Errorf("p%v: stated tolerance %.2f%% is tighter than the 4σ band %.2f%%; widen it", c.q*100, c.tol*100, band*100)
					}
				}

				if tt.continuous {
					checkFraction(t, "draws < "+c.want.String(), countBelow(sorted, c.want), len(sorted), c.q)
				}
			}
		})
	}
}

// TestNormalTruncatedNeverNegative: a mean small against the stddev must
// neither go negative nor pile mass at 0 (clamping would put 31% there).
func TestNormalTruncatedNeverNegative(t *testing.T) {
	l := mustParseLatency(t, "normal(5ms,10ms)")
	sorted := sampleLatency(t, l, nSamples)
	if sorted[0] < 0 {
		t.Fatalf("min delay %v < 0", sorted[0])
	}
	zeros := 0
	for _, d := range sorted {
		if d > 0 {
			break
		}
		zeros++
	}
	if zeros > 10 {
		t.Errorf("%d draws are exactly 0: the negative tail is clamped, not excluded", zeros)
	}
	if q0 := mustQuantile(t, l, 0); q0 != 0 {
		t.Errorf("Quantile(0) = %v, want 0 (the truncation point)", q0)
	}
	// Median of the truncated distribution, not the mean of the untruncated.
	want := truncNormalQuantile(5*time.Millisecond, 10*time.Millisecond, 0.5)
	if got := mustQuantile(t, l, 0.5); !relClose(got, want, 1e-6, 2) {
		t.Errorf("Quantile(0.5) = %v, want analytic truncated median %v", got, want)
	}
	if want < 8900*time.Microsecond || want > 9000*time.Microsecond {
		t.Errorf("reference truncated median %v, expected ≈ 8.96ms", want)
	}
}

func TestMixFractions(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		spec string
		want map[time.Duration]float64 // probability of each delay
	}{
		{"5ms:0.9,50ms:0.09,2s:0.01", map[time.Duration]float64{5 * ms: 0.9, 50 * ms: 0.09, 2 * time.Second: 0.01}},
		// Probabilities summing below 1 leave the rest undelayed (fortio).
		{"50ms:0.5", map[time.Duration]float64{50 * ms: 0.5, 0: 0.5}},
		{"mix(10ms:25%,20ms:25%,30ms:50%)", map[time.Duration]float64{10 * ms: 0.25, 20 * ms: 0.25, 30 * ms: 0.5}},
		// Order of the entries does not matter to sampling.
		{"2s:0.01,5ms:0.9,50ms:0.09", map[time.Duration]float64{5 * ms: 0.9, 50 * ms: 0.09, 2 * time.Second: 0.01}},
		// The same delay twice adds up.
		{"10ms:0.3,10ms:0.3", map[time.Duration]float64{10 * ms: 0.6, 0: 0.4}},
		// A zero weight never fires.
		{"10ms:0,20ms:1", map[time.Duration]float64{20 * ms: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			l := mustParseLatency(t, tt.spec)
			m := Profile{Latency: &l}.MustCompile()
			r := newRand()
			counts := map[time.Duration]int{}
			for range nSamples {
				counts[m.Sample(r).Delay]++
			}
			for d, n := range counts {
				if _, ok := tt.want[d]; !ok {
					t.Errorf("delay %v drawn %d times, not in the mix", d, n)
				}
			}
			for d, p := range tt.want {
				checkFraction(t, "delay "+d.String(), counts[d], nSamples, p)
			}
		})
	}
}

// TestMixQuantileIsInverseCDF: Quantile must be the inverse CDF of the
// delays, so non-decreasing in q, whatever order the entries are given in
// and when their probabilities leave room for undelayed requests.
func TestMixQuantileIsInverseCDF(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		spec string
		want map[float64]time.Duration
	}{
		{"5ms:0.9,50ms:0.09,2s:0.01", map[float64]time.Duration{0.5: 5 * ms, 0.95: 50 * ms, 0.999: 2 * time.Second}},
		{"50ms:0.5", map[float64]time.Duration{0.25: 0, 0.75: 50 * ms, 0.999: 50 * ms}},
		{"2s:0.01,5ms:0.9,50ms:0.09", map[float64]time.Duration{0.5: 5 * ms, 0.95: 50 * ms, 0.999: 2 * time.Second}},
	}
	var wrong []string
	for _, tt := range tests {
		l := mustParseLatency(t, tt.spec)
		for q, want := range tt.want {
			if got := mustQuantile(t, l, q); got != want {
				wrong = append(wrong, fmt.Sprintf("%s: Quantile(%v) = %v, want %v", tt.spec, q, got, want))
			}
		}
		prev := time.Duration(-1)
		for q := 0.0; q <= 1; q += 1.0 / 1024 {
			d := mustQuantile(t, l, q)
			if d < prev {
				wrong = append(wrong, fmt.Sprintf("%s: Quantile decreases at q=%v (%v after %v)", tt.spec, q, d, prev))
				break
			}
			prev = d
		}
	}
	if len(wrong) > 0 {
		t.Error("a mix's Quantile must be its inverse CDF (entries in any order, the undelayed rest at 0): " + strings.Join(wrong, "; "))
	}
}

func TestQuantileExact(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		spec string
		q    float64
		want time.Duration
	}{
		{"50ms", 0, 50 * ms},
		{"50ms", 1, 50 * ms},
		{"50ms cap 10ms", 0.5, 10 * ms},
		{"uniform(10ms,50ms)", 0, 10 * ms},
		{"uniform(10ms,50ms)", 0.25, 20 * ms},
		{"uniform(10ms,50ms)", 1, 50 * ms},
		{"uniform(10ms,50ms) cap 20ms", 0.75, 20 * ms},
		{"normal(50ms,0s)", 0.99, 50 * ms},
		{"lognormal(50ms,400ms)", 0, 0},
		{"lognormal(50ms,400ms) cap 200ms", 0.5, 50 * ms},
		{"lognormal(50ms,400ms) cap 200ms", 0.99, 200 * ms},
		{"5ms:0.9,50ms:0.09,2s:0.01", 0.5, 5 * ms},
		{"5ms:0.9,50ms:0.09,2s:0.01 cap 1s", 0.999, time.Second},
		// Below the lowest percentile the table runs down to 0 ...
		{"percentiles(p50=10ms,p99=100ms)", 0, 0},
		{"percentiles(p50=10ms,p99=100ms)", 0.25, 5 * ms},
		// ... above the highest it stays there.
		{"percentiles(p50=10ms,p99=100ms)", 0.995, 100 * ms},
		{"percentiles(p50=10ms,p99=100ms)", 1, 100 * ms},
		{"percentiles(min=2ms,p50=10ms,max=1s)", 0, 2 * ms},
		{"percentiles(min=2ms,p50=10ms,max=1s)", 0.25, 6 * ms},
		{"percentiles(min=2ms,p50=10ms,max=1s)", 1, time.Second},
		{"percentiles(p50=10ms,p99.9=1s)", 0.999, time.Second},
		{"percentiles(p50=10ms,p999=1s)", 0.999, time.Second},
		{"percentiles(p50=10ms,p9999=1s)", 0.9999, time.Second},
	}
	for _, tt := range tests {
		l := mustParseLatency(t, tt.spec)
		if got := mustQuantile(t, l, tt.q); !relClose(got, tt.want, 1e-9, 2) {
			t.Errorf("%s: Quantile(%v) = %v, want %v", tt.spec, tt.q, got, tt.want)
		}
	}
	// A latency with only a cap (possible in the object form) delays nothing.
	capOnly := Latency{Cap: Duration(time.Second)}
	if got := mustQuantile(t, capOnly, 0.5); got != 0 {
		t.Errorf("cap-only Quantile(0.5) = %v, want 0", got)
	}
	if _, err := (Latency{}).Quantile(0.5); err == nil {
		t.Errorf("Quantile of an empty latency: no error")
	}
}

// TestCap: every delay is within the cap, Capped is set exactly when the
// cap shortened the draw, and the capped fraction is the analytic tail
// probability.
func TestCap(t *testing.T) {
	const capD = 200 * time.Millisecond
	l := mustParseLatency(t, "lognormal(50ms,400ms) cap 200ms")
	if l.Cap.D() != capD {
		t.Fatalf("Cap = %v, want %v", l.Cap, capD)
	}
	m := Profile{Latency: &l}.MustCompile()
	r := newRand()
	capped := 0
	for i := range nSamples {
		o := m.Sample(r)
		if o.Delay < 0 || o.Delay > capD {
			t.Fatalf("draw %d: delay %v outside [0, %v]", i, o.Delay, capD)
		}
		if o.Capped != (o.Uncapped > o.Delay) {
			t.Fatalf("draw %d: Capped = %v but Uncapped %v, Delay %v", i, o.Capped, o.Uncapped, o.Delay)
		}
		if o.Capped {
			capped++
			if o.Delay != capD {
				t.Fatalf("draw %d: capped delay %v, want the cap %v", i, o.Delay, capD)
			}
		} else if o.Delay != o.Uncapped {
			t.Fatalf("draw %d: uncapped draw changed: Delay %v, Uncapped %v", i, o.Delay, o.Uncapped)
		}
	}
	// P(X > cap) = 1 - Φ(ln(cap/median)/σ), σ = ln(p99/median)/z99.
	sigma := math.Log(400.0/50.0) / zP99
	tail := 1 - stdNormCDF(math.Log(200.0/50.0)/sigma)
	if tail < 0.05 || tail > 0.07 {
		t.Fatalf("reference tail %v, expected ≈ 0.06", tail)
	}
	checkFraction(t, "capped", capped, nSamples, tail)

	// A draw equal to the cap is not "capped".
	for _, tt := range []struct {
		spec   string
		capped bool
		delay  time.Duration
	}{
		{"50ms cap 50ms", false, 50 * time.Millisecond},
		{"50ms cap 10ms", true, 10 * time.Millisecond},
		{"50ms cap 1s", false, 50 * time.Millisecond},
	} {
		l := mustParseLatency(t, tt.spec)
		o := Profile{Latency: &l}.MustCompile().Sample(newRand())
		if o.Capped != tt.capped || o.Delay != tt.delay || o.Uncapped != 50*time.Millisecond {
			t.Errorf("%s: got Delay %v Uncapped %v Capped %v, want Delay %v Capped %v",
				tt.spec, o.Delay, o.Uncapped, o.Capped, tt.delay, tt.capped)
		}
	}
}

// TestHugeDelaysDoNotOverflow: delays at the top of time.Duration's range,
// and lognormal draws beyond it, must not wrap to negative durations.
func TestHugeDelaysDoNotOverflow(t *testing.T) {
	var wrong []string
	for _, spec := range []string{
		"2562047h47m16.854775807s",
		"lognormal(1ms,100h) cap 1s",
		"lognormal(1ms,2562047h)",
		"normal(1ms,1s) cap 10s",
		"percentiles(p50=1ms,p99=2562047h47m16.854775807s)",
	} {
		l := mustParseLatency(t, spec)
		m := Profile{Latency: &l}.MustCompile()
		r := newRand()
		for range 20_000 {
			o := m.Sample(r)
			if o.Delay < 0 || o.Uncapped < 0 || (l.Cap > 0 && o.Delay > l.Cap.D()) {
				wrong = append(wrong, fmt.Sprintf("%s: sampled Delay %v Uncapped %v", spec, o.Delay, o.Uncapped))
				break
			}
		}
		for _, q := range []float64{0, 0.5, 0.999, 1} {
			if d := mustQuantile(t, l, q); d < 0 || (l.Cap > 0 && d > l.Cap.D()) {
				wrong = append(wrong, fmt.Sprintf("%s: Quantile(%v) = %v", spec, q, d))
			}
		}
	}
	if len(wrong) > 0 {
		t.Error("delays beyond what a Duration holds must saturate, never wrap negative or pass the cap: " + strings.Join(wrong, "; "))
	}
}

func TestLatencyIsZero(t *testing.T) {
	tests := []struct {
		l    Latency
		zero bool
	}{
		{Latency{}, true},
		{Latency{Cap: Duration(time.Second)}, false},
		{Latency{Fixed: dur(0)}, false},
		{mustParseLatency(t, "lognormal(50ms,400ms)"), false},
	}
	for _, tt := range tests {
		if got := tt.l.IsZero(); got != tt.zero {
			t.Errorf("%#v.IsZero() = %v, want %v", tt.l, got, tt.zero)
		}
	}
	// A cap alone is valid (the object form can give one) and delays nothing.
	capOnly := Latency{Cap: Duration(time.Second)}
	if errs := capOnly.Validate(); len(errs) > 0 {
		t.Errorf("cap-only latency: %v", errs)
	}
	if o := (Profile{Latency: &capOnly}).MustCompile().Sample(newRand()); o.Delay != 0 || o.Capped {
		t.Errorf("cap-only latency sampled %+v", o)
	}
}
