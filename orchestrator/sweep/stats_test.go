package sweep

import (
	"math"
	"testing"
	"time"
)

func TestWilson(t *testing.T) {
	for _, tc := range []struct {
		k, n          int
		value, lo, hi float64
	}{
		// Reference values: Wilson (1927), as R's prop.test(correct=FALSE)
		// and statsmodels' proportion_confint(method="wilson") give them.
		{45, 100, 0.45, 0.3561, 0.5476},
		{0, 10, 0, 0, 0.2775},
		{10, 10, 1, 0.7225, 1},
		{1, 20, 0.05, 0.0089, 0.2361},
		{500, 1000, 0.5, 0.4691, 0.5309},
		{0, 0, 0, 0, 1},
	} {
		e := Wilson(tc.k, tc.n)
		if math.Abs(e.Value-tc.value) > 1e-9 || math.Abs(e.Lo-tc.lo) > 1e-4 || math.Abs(e.Hi-tc.hi) > 1e-4 {
			t.Errorf("Wilson(%d, %d) = %.4f [%.4f, %.4f], want %.4f [%.4f, %.4f]", tc.k, tc.n, e.Value, e.Lo, e.Hi, tc.value, tc.lo, tc.hi)
		}
	}
}

func TestQuantileRanks(t *testing.T) {
	for _, tc := range []struct {
		n         int
		q         float64
		k, lo, hi int
	}{
		// The classic 95 % interval of the median of 100: x(40), x(61).
		{100, 0.5, 50, 40, 61},
		{100, 0.9, 90, 84, 96},
		{1000, 0.9, 900, 881, 919},
		{20, 0.5, 10, 6, 15},
		// Too few samples for 95 %: clamped to the sample's range.
		{20, 0.9, 18, 15, 20},
		{5, 0.5, 3, 1, 5},
		{1, 0.5, 1, 1, 1},
		{0, 0.5, 0, 0, 0},
	} {
		k, lo, hi := QuantileRanks(tc.n, tc.q)
		if k != tc.k || lo != tc.lo || hi != tc.hi {
			t.Errorf("QuantileRanks(%d, %v) = %d [%d, %d], want %d [%d, %d]", tc.n, tc.q, k, lo, hi, tc.k, tc.lo, tc.hi)
		}
	}
}

func TestQuantile(t *testing.T) {
	xs := make([]time.Duration, 100)
	for i := range xs {
		xs[i] = time.Duration(100-i) * time.Second // reversed: Quantile sorts
	}
	if got, want := Quantile(xs, 0.5), (DurationEstimate{Value: 50 * time.Second, Lo: 40 * time.Second, Hi: 61 * time.Second}); got != want {
		t.Errorf("median %+v, want %+v", got, want)
	}
	if got, want := Quantile(xs, 0.9), (DurationEstimate{Value: 90 * time.Second, Lo: 84 * time.Second, Hi: 96 * time.Second}); got != want {
		t.Errorf("p90 %+v, want %+v", got, want)
	}
	if got := Quantile(nil, 0.5); got != (DurationEstimate{}) {
		t.Errorf("no samples: %+v", got)
	}
}
