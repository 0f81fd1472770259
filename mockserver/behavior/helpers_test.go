package behavior

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// nSamples is the number of draws the statistical tests take. 200k keeps
// every test well under a second under -race, and makes the binomial
// standard error of a fraction p at most sqrt(0.25/200k) ≈ 0.0011.
const nSamples = 200_000

// sigmas is how many binomial standard errors a statistical check allows.
// With a fixed seed the tests are deterministic anyway; 4σ (two-sided
// p ≈ 6e-5) keeps them from breaking when an unrelated change shifts the
// random stream (a new draw, a different seed).
const sigmas = 4

// newRand is the fixed-seed source every test uses.
func newRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

func mustParseLatency(t testing.TB, s string) Latency {
	t.Helper()
	l, err := ParseLatency(s)
	if err != nil {
		t.Fatalf("ParseLatency(%q): %v", s, err)
	}
	return l
}

func mustQuantile(t testing.TB, l Latency, q float64) time.Duration {
	t.Helper()
	d, err := l.Quantile(q)
	if err != nil {
		t.Fatalf("%s: Quantile(%v): %v", l, q, err)
	}
	return d
}

// sampleLatency draws n outcomes of a profile holding only l and returns
// the delays, sorted.
func sampleLatency(t testing.TB, l Latency, n int) []time.Duration {
	t.Helper()
	m, err := Profile{Latency: &l}.Compile()
	if err != nil {
		t.Fatalf("%s: Compile: %v", l, err)
	}
	r := newRand()
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = m.Sample(r).Delay
	}
	slices.Sort(out)
	return out
}

// sampleQuantile is the empirical q-quantile of sorted samples: the
// smallest x with at least q·n samples ≤ x (the inverse empirical CDF).
func sampleQuantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

// countBelow is the number of sorted samples strictly below x. For a
// continuous distribution it estimates F(x)·n; strictly below, so that an
// atom at x (a percentile table's flat top) is not counted.
func countBelow(sorted []time.Duration, x time.Duration) int {
	i, _ := slices.BinarySearch(sorted, x)
	return i
}

// binomSE is the standard error of an observed fraction whose true value is
// p, over n trials.
func binomSE(p float64, n int) float64 { return math.Sqrt(p * (1 - p) / float64(n)) }

// orderStatDelta is the half-width, in probability, of the band the sample
// q-quantile lies in: the k-th order statistic (k = q·n) falls below the true
// (q-δ)-quantile only if at least k of n draws land below it, a binomial
// event sigmas standard errors away; likewise above.
func orderStatDelta(q float64, n int) float64 { return sigmas * binomSE(q, n) }

// checkFraction fails unless got/n is within sigmas binomial standard errors
// of p (exactly p when p is 0 or 1).
func checkFraction(t *testing.T, what string, got, n int, p float64) {
	t.Helper()
	f := float64(got) / float64(n)
	tol := sigmas * binomSE(p, n)
	if math.Abs(f-p) > tol {
		t.Errorf("%s: fraction %.5f, want %.5f ± %.5f (%d σ, n=%d)", what, f, p, tol, sigmas, n)
	}
}

// relClose reports whether got is within rel·|want| (plus slack ns) of want.
func relClose(got, want time.Duration, rel float64, slack time.Duration) bool {
	diff := math.Abs(float64(got - want))
	return diff <= rel*math.Abs(float64(want))+float64(slack)
}

// Standard normal quantiles, to 16 digits (independent of the package's
// Erfinv-based normQuantile).
const (
	zP90  = 1.2815515655446004
	zP99  = 2.3263478740408408
	zP999 = 3.090232306167813
)

// stdNormCDF is Φ.
func stdNormCDF(x float64) float64 { return 0.5 * math.Erfc(-x/math.Sqrt2) }

// lognormalAt is the quantile at standard-normal score z of the lognormal
// with the given median and 99th percentile.
func lognormalAt(median, p99 time.Duration, z float64) time.Duration {
	sigma := math.Log(float64(p99)/float64(median)) / zP99
	return time.Duration(float64(median) * math.Exp(sigma*z))
}

// truncNormalQuantile is the q-quantile of normal(mean, sd) conditioned on
// being ≥ 0, found by bisection on its CDF
// F(x) = (Φ((x-mean)/sd) - Φ(-mean/sd)) / (1 - Φ(-mean/sd)),
// so it shares no code with the package's closed form.
func truncNormalQuantile(mean, sd time.Duration, q float64) time.Duration {
	m, s := float64(mean), float64(sd)
	lo := stdNormCDF(-m / s)
	cdf := func(x float64) float64 { return (stdNormCDF((x-m)/s) - lo) / (1 - lo) }
	a, b := 0.0, m+20*s
	for range 200 {
		mid := (a + b) / 2
		if cdf(mid) < q {
			a = mid
		} else {
			b = mid
		}
	}
	return time.Duration((a + b) / 2)
}
