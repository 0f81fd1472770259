package behavior

import (
	"math"
	"sort"
	"time"
)

// Case is one class of outcomes Sample draws: a fault (or none) and an
// injected status (or none), with its probability. Outcomes of one case
// differ only in their delay, which Sample draws independently of the
// case (and not at all for the faults that give no response: reset,
// close, hang); DelayCDF is its distribution.
type Case struct {
	// P is the probability that Sample draws this case.
	P float64
	// Fault, FaultDuration and FaultFraction are Outcome's.
	Fault         FaultKind
	FaultDuration time.Duration
	FaultFraction float64
	// Status is the injected status, 0 for none.
	Status int
}

// Delayed reports whether the case's outcomes draw a delay: every fault
// but those that never answer.
func (c Case) Delayed() bool {
	switch c.Fault {
	case FaultReset, FaultClose, FaultHang:
		return false
	}
	return true
}

// Cases lists the model's cases with their exact probabilities: Sample
// draws the fault, then (unless it gives no response) the status, from
// separate uniform draws, so a case's probability is the product of its
// fault's and its status'. The probabilities sum to 1 up to rounding;
// cases that cannot happen are left out. The order is fixed: the faults
// in FaultKinds order, then no fault; within each, the statuses in
// ascending order, then none. Simulators draw aggregate counts from it
// instead of one Sample per request.
func (m Model) Cases() []Case {
	statuses := []Case{{P: 1}}
	if m.errors != nil {
		statuses = statuses[:0]
		prev, rest := 0.0, 1.0
		for i, code := range m.errors.codes {
			c := min(m.errors.cum[i], 1)
			if p := c - prev; p > 0 {
				statuses = append(statuses, Case{P: p, Status: code})
			}
			prev, rest = c, 1-c
		}
		if rest > 0 {
			statuses = append(statuses, Case{P: rest})
		}
	}
	var out []Case
	answer := func(f Case) {
		if !f.Delayed() {
			out = append(out, f)
			return
		}
		for _, s := range statuses {
			c := f
			c.P, c.Status = f.P*s.P, s.Status
			if c.P > 0 {
				out = append(out, c)
			}
		}
	}
	none := 1.0
	if m.faults != nil {
		prev := 0.0
		for i, k := range m.faults.kinds {
			c := min(m.faults.cum[i], 1)
			if p := c - prev; p > 0 {
				answer(Case{P: p, Fault: k, FaultDuration: m.faults.duration[i], FaultFraction: m.faults.fraction[i]})
			}
			prev, none = c, 1-c
		}
	}
	if none > 0 {
		answer(Case{P: none})
	}
	return out
}

// DelayCDF is the probability that a drawn Outcome.Delay is at most d:
// the latency distribution's CDF, with the cap applied and the delay
// truncated to whole nanoseconds as Sample does (so Delay <= d exactly
// when the continuous draw is below d+1ns). A model without a latency
// never delays.
func (m Model) DelayCDF(d time.Duration) float64 {
	if d < 0 {
		return 0
	}
	if m.latency == nil || d == math.MaxInt64 {
		return 1
	}
	l := m.latency
	if l.cap > 0 && d >= l.cap {
		return 1
	}
	return l.below(float64(d) + 1)
}

// below is P(x < y) for the uncapped continuous draw x, in nanoseconds:
// the inverse of each shape's sampling transform.
func (m *latencyModel) below(y float64) float64 {
	switch m.shape {
	case shapeUniform:
		if m.b == m.a {
			return step(m.a < y)
		}
		return clamp01((y - m.a) / (m.b - m.a))
	case shapeNormal:
		if m.b == 0 {
			return step(m.a < y)
		}
		// quantile draws p uniformly on [lo, 1) and maps it through the
		// normal's inverse CDF: invert both steps.
		return clamp01((normCDF((y-m.a)/m.b) - m.lo) / (1 - m.lo))
	case shapeLognormal:
		return normCDF((math.Log(y) - m.a) / m.b)
	case shapeMix:
		// quantile(u) is vals[i] for cum[i-1] <= u < cum[i] (the last
		// value also takes what rounding leaves above the last cum).
		p, prev := 0.0, 0.0
		for i, v := range m.vals {
			c := m.cum[i]
			if i == len(m.vals)-1 {
				c = 1
			}
			if v < y {
				p += c - prev
			}
			prev = c
		}
		return clamp01(p)
	case shapePercentiles:
		// quantile is piecewise linear and non-decreasing through pts:
		// P(x < y) is the q where it reaches y.
		pts := m.pts
		i := sort.Search(len(pts), func(i int) bool { return pts[i].v >= y })
		switch {
		case i == 0:
			return 0
		case i == len(pts):
			return 1
		}
		a, b := pts[i-1], pts[i]
		return a.q + (b.q-a.q)*(y-a.v)/(b.v-a.v)
	default: // fixed, and none (no shape, only a cap): a constant
		return step(m.a < y)
	}
}

func step(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func clamp01(p float64) float64 { return max(0, min(1, p)) }
