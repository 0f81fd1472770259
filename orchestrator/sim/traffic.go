package sim

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/canarylab/canarylab/mockserver/behavior"
)

// Drawing the traffic of a scrape interval.
//
// Requests arrive as a Poisson process of the load's rate; each is routed
// to the canary or the primary (and maybe mirrored) independently, and
// each answer is an independent draw from its workload's model. What the
// series record of an answer is only which cell it falls in: its
// workload, its code, the Istio histogram's bucket and the mock server's
// bucket of its latency. So the counts are all the sim needs, and their
// joint distribution is known exactly:
//
//   - Splitting (marking) a Poisson process of mean λ by independent
//     marks of probabilities p_i gives independent Poisson counts of means
//     λ·p_i. The mark of a request is its route and its answer's cell, so
//     the count of each (route, cell) is an independent Poisson of mean
//     λ·P(route)·P(cell): one draw per cell instead of one per request.
//   - P(cell) is exact: Model.Cases gives each fault × status case's
//     probability and Model.DelayCDF the delay's distribution (cap and
//     whole nanoseconds included), and a latency falls in a histogram's
//     bucket i exactly when it is at most the bucket's last nanosecond
//     (histogram.le, found with the very conversion observe applies), so
//     a cell's probability is P(case)·(F(edge_k) − F(edge_k−1)) between
//     consecutive edges of both histograms.
//   - Mirrored requests are the primary's own requests, so their count is
//     not independent of the primary's: the primary-routed count N is
//     drawn first (every cell, read or not), then the mirrored M ~
//     Binomial(N, mirror share) one request at a time, and their canary
//     answers are a multinomial draw over the canary's cells, one at a
//     time. Exact too, and rare (blue/green mirroring).
//
// The Poisson draws themselves are exact (inversion below a mean of 10,
// Hörmann's PTRS rejection above). Cells no query can read are not drawn
// at all: independent counts, so leaving some out changes nothing about
// the others.
//
// What this cannot give is a latency's exact value, which only the
// histograms' _sum series keep: when a query may read one, the sim draws
// every request as the mock server does (world.exact, trafficEach).

// A cell is a class of answers that feed the same series: one
// workload's answers with one code whose latency falls in the same Istio
// bucket and the same mock bucket.
type cell struct {
	p       float64 // probability that an answer lands here
	mu, emu float64 // the mean count for table.lambda, and exp(-mu)
	cs      *codeSeries
	istio   int // bucket index in cs.istio
	mock    int // bucket index in cs.mock (when there is one)
}

// table is the cells of one workload answering with one model; rest is
// the probability of the answers no query reads.
type table struct {
	cells []cell
	rest  cell
	// cum is the cells' cumulative probabilities, then rest's: for
	// drawing one answer at a time.
	cum    []float64
	lambda float64
}

type tableKey struct {
	wl int
	m  behavior.Model
}

// table returns workload wl's cells under model m, built once per run.
func (w *world) table(wl int, m behavior.Model) *table {
	k := tableKey{wl, m}
	if t := w.tables[k]; t != nil {
		return t
	}
	t := &table{lambda: -1}
	for _, c := range m.Cases() {
		code := 200
		switch {
		case !c.Delayed():
			code = 503
		case c.Status != 0:
			code = c.Status
		}
		cs := w.codeSeries(wl, code)
		if !cs.read() {
			t.rest.p += c.P
			continue
		}
		prev := 0.0
		for _, e := range edges(cs) {
			f := latencyCDF(m, c, e)
			if p := c.P * (f - prev); p > 0 {
				t.cells = append(t.cells, cell{p: p, cs: cs, istio: bucketOf(cs.istio, e), mock: bucketOf(cs.mock, e)})
			}
			prev = f
		}
	}
	acc := 0.0
	for _, c := range t.cells {
		acc += c.p
		t.cum = append(t.cum, acc)
	}
	t.cum = append(t.cum, acc+t.rest.p)
	w.tables[k] = t
	return t
}

// edges are the last nanoseconds of the read histograms' buckets, merged
// and ascending, then MaxInt64 for the +Inf buckets.
func edges(cs *codeSeries) []int64 {
	var e []int64
	if cs.istio.read() {
		e = append(e, cs.istio.le...)
	}
	if cs.mock != nil && cs.mock.read() {
		e = append(e, cs.mock.le...)
	}
	slices.Sort(e)
	return append(slices.Compact(e), math.MaxInt64)
}

// bucketOf is the bucket of h that latencies up to edge e (and above the
// previous edge) fall in.
func bucketOf(h *histogram, e int64) int {
	if h == nil {
		return -1
	}
	return sort.Search(len(h.le), func(i int) bool { return h.le[i] >= e })
}

// latencyCDF is P(latency <= d) for an answer of case c, latency as
// serve computes it: nothing for a reset or close, the hang's duration,
// the delay plus the slow body's duration, or the delay.
func latencyCDF(m behavior.Model, c behavior.Case, d int64) float64 {
	if d == math.MaxInt64 {
		return 1
	}
	switch c.Fault {
	case behavior.FaultReset, behavior.FaultClose:
		return 1
	case behavior.FaultHang:
		return step(int64(c.FaultDuration) <= d)
	case behavior.FaultSlowBody:
		return m.DelayCDF(time.Duration(d) - c.FaultDuration)
	}
	return m.DelayCDF(time.Duration(d))
}

func step(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// prepare sets the cells' means for a stream of mean lambda; the
// exponentials are computed again only when the mean changes (the
// weights, at a tick).
func (t *table) prepare(lambda float64) {
	if lambda == t.lambda {
		return
	}
	t.lambda = lambda
	for i := range t.cells {
		t.cells[i].setMean(lambda)
	}
	t.rest.setMean(lambda)
}

func (c *cell) setMean(lambda float64) {
	c.mu = lambda * c.p
	c.emu = math.Exp(-c.mu)
}

// trafficCells draws the answers of the next d by cells (see above).
func (w *world) trafficCells(d time.Duration) {
	lambda := w.rate * d.Seconds()
	if lambda <= 0 {
		return
	}
	pc := float64(w.canaryW) / 100
	if len(w.s.Analysis.Match) > 0 && w.s.Analysis.Iterations > 0 {
		// A/B: matching requests follow the route's weights, others go
		// to the primary.
		pc *= w.matched
	}
	if pc > 0 {
		w.draw(w.table(canaryW, w.canary), lambda*pc, false)
	}
	if pc >= 1 {
		return
	}
	mirror := w.mirrored
	n := w.draw(w.table(primaryW, w.primary), lambda*(1-pc), mirror)
	if !mirror {
		return
	}
	m := n
	if w.mirrorWeight > 0 {
		m = 0
		for range n {
			if w.r.IntN(100) < w.mirrorWeight {
				m++
			}
		}
	}
	t := w.table(canaryW, w.canary)
	total := t.cum[len(t.cum)-1]
	for range m {
		u := w.r.Float64() * total
		if i := sort.Search(len(t.cum), func(i int) bool { return t.cum[i] > u }); i < len(t.cells) {
			w.count(&t.cells[i], 1)
		}
	}
}

// draw draws the counts of t's cells for a Poisson stream of mean lambda
// and returns how many answers it drew, those of rest included when
// withRest (else they are not drawn).
func (w *world) draw(t *table, lambda float64, withRest bool) int {
	t.prepare(lambda)
	n := 0
	for i := range t.cells {
		c := &t.cells[i]
		if k := poisson(w.r, c.mu, c.emu); k > 0 {
			n += k
			w.count(c, k)
		}
	}
	if withRest {
		n += poisson(w.r, t.rest.mu, t.rest.emu)
	}
	return n
}

// count counts k answers of a cell.
func (w *world) count(c *cell, k int) {
	cs := c.cs
	if !cs.active {
		w.activate(cs)
	}
	n := float64(k)
	cs.requests.v += n
	cs.istio.add(c.istio, n)
	if cs.mock != nil {
		cs.mockRequests.v += n
		cs.mock.add(c.mock, n)
	}
}

// trafficEach draws the requests of the next d one by one, as the mock
// server serves them: for runs whose queries may read a latency sum.
func (w *world) trafficEach(d time.Duration) {
	n := poisson(w.r, w.rate*d.Seconds(), math.NaN())
	for range n {
		toCanary := false
		switch {
		case len(w.s.Analysis.Match) > 0 && w.s.Analysis.Iterations > 0:
			toCanary = w.r.Float64() < w.matched && w.r.IntN(100) < w.canaryW
		default:
			toCanary = w.r.IntN(100) < w.canaryW
		}
		if toCanary {
			w.serve(canaryW, w.canary)
		} else {
			w.serve(primaryW, w.primary)
			if w.mirrored && (w.mirrorWeight <= 0 || w.r.IntN(100) < w.mirrorWeight) {
				w.serve(canaryW, w.canary)
			}
		}
	}
}

// serve counts one request served by a workload.
func (w *world) serve(workload int, m behavior.Model) {
	o := m.Sample(w.r)
	code, latency := 200, o.Delay
	switch o.Fault {
	case behavior.FaultReset, behavior.FaultClose:
		code, latency = 503, 0
	case behavior.FaultHang:
		code, latency = 503, o.FaultDuration
	case behavior.FaultSlowBody:
		latency += o.FaultDuration
	}
	if o.Status != 0 && code == 200 {
		code = o.Status
	}
	cs := w.codeSeries(workload, code)
	if !cs.active {
		w.activate(cs)
	}
	cs.requests.v++
	cs.istio.observe(msOf(int64(latency)))
	if cs.mock != nil {
		cs.mockRequests.v++
		cs.mock.observe(secondsOf(int64(latency)))
	}
}

// poisson draws a Poisson count of mean mu, exactly. emu is exp(-mu) when
// the caller has it (NaN otherwise); it is only used below a mean of 10.
func poisson(r *rand.Rand, mu, emu float64) int {
	switch {
	case mu <= 0:
		return 0
	case mu >= 10:
		return ptrs(r, mu)
	}
	if math.IsNaN(emu) {
		emu = math.Exp(-mu)
	}
	// Inversion: the count is the least k with u < F(k).
	u := r.Float64()
	k, p, f := 0, emu, emu
	for u >= f && p > 0 {
		k++
		p *= mu / float64(k)
		f += p
	}
	return k
}

// ptrs is Hörmann's transformed rejection with squeeze ("The transformed
// rejection method for generating Poisson random variables", 1993), as
// numpy draws Poisson counts of mean 10 and more: exact, in about 1.1
// pairs of uniforms a draw.
func ptrs(r *rand.Rand, mu float64) int {
	slam, loglam := math.Sqrt(mu), math.Log(mu)
	b := 0.931 + 2.53*slam
	a := -0.059 + 0.02483*b
	invalpha := 1.1239 + 1.1328/(b-3.4)
	vr := 0.9277 - 3.6224/(b-2)
	for {
		u := r.Float64() - 0.5
		v := r.Float64()
		us := 0.5 - math.Abs(u)
		if us <= 0 {
			continue // u = -0.5: the transform's pole
		}
		k := math.Floor((2*a/us+b)*u + mu + 0.43)
		if us >= 0.07 && v <= vr {
			return int(k)
		}
		if k < 0 || (us < 0.013 && v > us) {
			continue
		}
		lg, _ := math.Lgamma(k + 1)
		if math.Log(v)+math.Log(invalpha)-math.Log(a/(us*us)+b) <= -mu+k*loglam-lg {
			return int(k)
		}
	}
}
