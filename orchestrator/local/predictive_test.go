package local

import (
	"math"
	"testing"
)

// The statistics of TestCalibration (which runs without the race
// detector only); here so that their test runs in every mode.

// predictive is the probability of x promotions in n runs, x = 0..n,
// given k of N promoted in the sim: beta-binomial with p ~ Beta(k+½,
// N-k+½), the sim estimate's uncertainty included.
func predictive(k, N, n int) []float64 {
	a, b := float64(k)+0.5, float64(N-k)+0.5
	pmf := make([]float64, n+1)
	for x := range pmf {
		pmf[x] = math.Exp(lchoose(n, x) + lbeta(float64(x)+a, float64(n-x)+b) - lbeta(a, b))
	}
	return pmf
}

// predictiveRegion is the central 95 % region lo..hi of predictive(k, N,
// n): at most 2.5 % below lo and at most 2.5 % above hi.
func predictiveRegion(k, N, n int) (lo, hi int) {
	return centralRegion(predictive(k, N, n))
}

func centralRegion(pmf []float64) (lo, hi int) {
	const tail = 0.025
	c := 0.0
	for lo = 0; lo < len(pmf)-1; lo++ {
		if c += pmf[lo]; c > tail {
			break
		}
	}
	c = 0
	for hi = len(pmf) - 1; hi > 0; hi-- {
		if c += pmf[hi]; c > tail {
			break
		}
	}
	return lo, hi
}

// twoStage is the probability that the two-stage rule passes when the
// embedded engine's true P(promote) is p: the first batch of n inside
// its region, or else the pooled 2n inside theirs.
func twoStage(k, N, n int, p float64) float64 {
	p = min(1-1e-12, max(1e-12, p)) // the logs below stay finite
	lo1, hi1 := predictiveRegion(k, N, n)
	lo2, hi2 := predictiveRegion(k, N, 2*n)
	pmf := make([]float64, n+1)
	for x := range pmf {
		pmf[x] = math.Exp(lchoose(n, x) + float64(x)*math.Log(p) + float64(n-x)*math.Log1p(-p))
	}
	pass := 0.0
	for x1, p1 := range pmf {
		if lo1 <= x1 && x1 <= hi1 {
			pass += p1
			continue
		}
		for x2, p2 := range pmf {
			if lo2 <= x1+x2 && x1+x2 <= hi2 {
				pass += p1 * p2
			}
		}
	}
	return pass
}

func lchoose(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c
}

func lbeta(a, b float64) float64 {
	x, _ := math.Lgamma(a)
	y, _ := math.Lgamma(b)
	z, _ := math.Lgamma(a + b)
	return x + y - z
}

// The predictive regions, against an independent computation (Python,
// math.lgamma, the same beta-binomial).
func TestPredictiveRegion(t *testing.T) {
	for _, c := range []struct{ k, N, n, lo, hi int }{
		{2000, 4000, 60, 22, 38},
		{2000, 4000, 90, 36, 54},
		{2000, 4000, 180, 77, 103},
		{2120, 4000, 75, 31, 48},
		{1000, 4000, 90, 15, 31},
		{40, 4000, 90, 0, 3},
		{0, 4000, 90, 0, 0},
		{4000, 4000, 90, 90, 90},
	} {
		if lo, hi := predictiveRegion(c.k, c.N, c.n); lo != c.lo || hi != c.hi {
			t.Errorf("predictiveRegion(%d, %d, %d) = %d..%d, want %d..%d", c.k, c.N, c.n, lo, hi, c.lo, c.hi)
		}
	}
}

// The two-stage rule's pass probabilities, against the same independent
// computation: under calibration it fails 1.5 % of the time here, and a
// 15-point mismatch passes 19 % of the time, a 20-point one 3 %.
func TestTwoStage(t *testing.T) {
	for _, c := range []struct {
		p, want float64
	}{
		{0.5, 0.9855},
		{0.35, 0.1901},
		{0.65, 0.1901},
		{0.3, 0.0275},
	} {
		if got := twoStage(2000, 4000, 90, c.p); math.Abs(got-c.want) > 0.0001 {
			t.Errorf("twoStage(2000, 4000, 90, %v) = %.4f, want %.4f", c.p, got, c.want)
		}
	}
}
