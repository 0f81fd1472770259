package sweep

import (
	"math"
	"slices"
	"time"
)

// z95 is the standard normal quantile at 0.975: a two-sided 95 % interval.
const z95 = 1.959963984540054

// Estimate is a proportion and its 95 % Wilson score interval.
type Estimate struct {
	Value float64 `json:"value"`
	Lo    float64 `json:"lo"`
	Hi    float64 `json:"hi"`
}

// Wilson returns the proportion k/n with its 95 % Wilson score interval,
// which, unlike the normal approximation, stays inside [0, 1] and is
// honest at 0/n and n/n. With n = 0 there is no information: 0 in [0, 1].
func Wilson(k, n int) Estimate {
	if n <= 0 {
		return Estimate{Value: 0, Lo: 0, Hi: 1}
	}
	p, nf := float64(k)/float64(n), float64(n)
	z2 := z95 * z95
	denom := 1 + z2/nf
	center := (p + z2/(2*nf)) / denom
	half := z95 * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf)) / denom
	return Estimate{Value: p, Lo: max(0, center-half), Hi: min(1, center+half)}
}

// DurationEstimate is a quantile of durations and its 95 % interval.
type DurationEstimate struct {
	Value time.Duration `json:"value"`
	Lo    time.Duration `json:"lo"`
	Hi    time.Duration `json:"hi"`
}

// Quantile returns the q-quantile of xs (the nearest rank, ⌈q·n⌉-th
// smallest) with a distribution-free 95 % interval between two order
// statistics chosen by the binomial method (see QuantileRanks). xs is
// sorted in place. With no samples it returns zeros.
func Quantile(xs []time.Duration, q float64) DurationEstimate {
	n := len(xs)
	if n == 0 {
		return DurationEstimate{}
	}
	slices.Sort(xs)
	k, lo, hi := QuantileRanks(n, q)
	return DurationEstimate{Value: xs[k-1], Lo: xs[lo-1], Hi: xs[hi-1]}
}

// QuantileRanks returns, for n samples, the 1-based rank of the
// q-quantile's estimate (⌈q·n⌉) and the ranks lo ≤ hi of a 95 %
// confidence interval [x(lo), x(hi)]: the number B of samples below the
// true quantile is Binomial(n, q), so P(x(lo) > quantile) = P(B < lo) and
// P(x(hi) < quantile) = P(B ≥ hi); lo is the highest rank with the first
// at most 2.5 %, hi the lowest with the second at most 2.5 %. When n is
// too small for that (fewer than 6 samples for the median), the ranks are
// clamped to 1 and n and the interval covers less than 95 %.
func QuantileRanks(n int, q float64) (k, lo, hi int) {
	if n <= 0 {
		return 0, 0, 0
	}
	k = min(n, max(1, int(math.Ceil(q*float64(n)-1e-9))))
	const tail = 0.025
	// cdf[i] = P(B ≤ i), from the log pmf for numerical range.
	cdf := make([]float64, n+1)
	lq, l1q := math.Log(q), math.Log1p(-q)
	lgn, _ := math.Lgamma(float64(n) + 1)
	sum := 0.0
	for i := 0; i <= n; i++ {
		var p float64
		switch {
		case q <= 0:
			p = boolf(i == 0)
		case q >= 1:
			p = boolf(i == n)
		default:
			a, _ := math.Lgamma(float64(i) + 1)
			b, _ := math.Lgamma(float64(n-i) + 1)
			p = math.Exp(lgn - a - b + float64(i)*lq + float64(n-i)*l1q)
		}
		sum += p
		cdf[i] = sum
	}
	lo, hi = 1, n
	for j := n; j >= 1; j-- {
		if cdf[j-1] <= tail { // P(B ≤ j-1) = P(B < j)
			lo = j
			break
		}
	}
	for j := 1; j <= n; j++ {
		if 1-cdf[j-1] <= tail { // P(B ≥ j)
			hi = j
			break
		}
	}
	lo, hi = min(lo, k), max(hi, k)
	return k, lo, hi
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
