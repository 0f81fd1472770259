package sim

import (
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/canarylab/canarylab/mockserver"
	"github.com/canarylab/canarylab/orchestrator/mesh"
)

// The two workloads, by index.
const (
	primaryW = 0
	canaryW  = 1
)

// series is one exposed series and its current value.
type series struct {
	lbls labels.Labels
	v    float64
	// read: some query can select it. Others are counted (cheaply) but
	// never written: they cannot change a result.
	read bool
}

// codeSeries are the series one workload's answers with one code feed:
// built once, then only counted. They exist for Prometheus from the first
// answer with the code on, as an exporter's do.
type codeSeries struct {
	requests, mockRequests *series
	istio, mock            *histogram
	active                 bool
}

// read reports whether any of its series is read.
func (cs *codeSeries) read() bool {
	return cs.requests.read || cs.istio.read() || (cs.mock != nil && (cs.mockRequests.read || cs.mock.read()))
}

// histogram is a histogram's series: per-bucket counts (made cumulative
// when scraped), the count and the sum.
type histogram struct {
	bounds  []float64
	buckets []*series // one per bound, then +Inf
	counts  []float64
	count   *series
	sum     *series
	// le[i] is the longest latency, in whole nanoseconds, that the bucket
	// of bounds[i] counts, as observe converts it (see threshold).
	le []int64
}

// read reports whether a query reads a bucket or the count; the sum is
// the caller's concern (see world.exact).
func (h *histogram) read() bool {
	if h.count.read {
		return true
	}
	for _, b := range h.buckets {
		if b.read {
			return true
		}
	}
	return false
}

func (h *histogram) observe(v float64) {
	h.counts[sort.SearchFloat64s(h.bounds, v)]++
	h.count.v++
	h.sum.v += v
}

// add counts n observations in bucket i, without their sum.
func (h *histogram) add(i int, n float64) {
	h.counts[i] += n
	h.count.v += n
}

// flush makes the bucket series cumulative, as exposition has them.
func (h *histogram) flush() {
	c := 0.0
	for i, n := range h.counts {
		c += n
		h.buckets[i].v = c
	}
}

// codeSeries returns workload wl's series for code, made on first use;
// they are written from activate on.
func (w *world) codeSeries(wl int, code int) *codeSeries {
	if cs := w.byCode[wl][code]; cs != nil {
		return cs
	}
	cs := w.shape.codeSeries(w.ns, w.target, wl, code).clone()
	w.byCode[wl][code] = cs
	return cs
}

// codeKey names a codeSeries template.
type codeKey struct {
	ns, target string
	wl, code   int
}

// codeSeries returns the template of a workload's series for a code:
// their labels, which of them a query reads, the buckets' edges. Every
// run of the scenario shares it, read-only, through clone: labelling
// and matching two dozen series was a twentieth of a run.
func (sh *shape) codeSeries(ns, target string, wl, code int) *codeSeries {
	k := codeKey{ns, target, wl, code}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if cs := sh.codes[k]; cs != nil {
		return cs
	}
	workload := target
	if wl == primaryW {
		workload += "-primary"
	}
	rc := strconv.Itoa(code)
	base := []string{"reporter", "destination", "destination_workload", workload, "destination_workload_namespace", ns, "response_code", rc}
	pod := target + "-5d8f7b9c46-q7w4z"
	if workload != target {
		pod = target + "-primary-7b9f5c6d48-x2k9p"
	}
	mock := []string{"namespace", ns, "pod", pod, "route", "/*", "method", "GET", "code", rc}
	cs := &codeSeries{
		requests: sh.newSeries(append([]string{"__name__", "istio_requests_total"}, base...)),
		istio:    sh.newHistogram("istio_request_duration_milliseconds", base, mesh.DurationBuckets(), msOf),
	}
	// The mock servers' own series only when a query may read them: they
	// would double what a scrape writes.
	if sh.mayRead(mockNames...) {
		cs.mockRequests = sh.newSeries(append([]string{"__name__", "canarylab_mock_requests_total"}, mock...))
		cs.mock = sh.newHistogram("canarylab_mock_request_duration_seconds", mock, mockserver.LatencyBuckets, secondsOf)
	}
	if sh.codes == nil {
		sh.codes = map[codeKey]*codeSeries{}
	}
	sh.codes[k] = cs
	return cs
}

// clone is a copy of the template cs with its own values; labels, read
// flags and edges stay shared.
func (cs *codeSeries) clone() *codeSeries {
	c := &codeSeries{requests: cs.requests.clone(), istio: cs.istio.clone()}
	if cs.mock != nil {
		c.mockRequests, c.mock = cs.mockRequests.clone(), cs.mock.clone()
	}
	return c
}

func (s *series) clone() *series { return &series{lbls: s.lbls, read: s.read} }

func (h *histogram) clone() *histogram {
	c := &histogram{bounds: h.bounds, le: h.le, counts: make([]float64, len(h.counts)),
		buckets: make([]*series, len(h.buckets)), count: h.count.clone(), sum: h.sum.clone()}
	for i, b := range h.buckets {
		c.buckets[i] = b.clone()
	}
	return c
}

var mockNames = []string{"canarylab_mock_requests_total", "canarylab_mock_request_duration_seconds_bucket",
	"canarylab_mock_request_duration_seconds_count", "canarylab_mock_request_duration_seconds_sum"}

// activate makes the series exist for the scrapes from now on.
func (w *world) activate(cs *codeSeries) {
	cs.active = true
	n := len(w.all)
	for _, s := range []*series{cs.requests, cs.mockRequests} {
		if s != nil && s.read {
			w.all = append(w.all, s)
		}
	}
	for _, h := range []*histogram{cs.istio, cs.mock} {
		if h == nil {
			continue
		}
		if h.read() {
			w.hists = append(w.hists, h)
		}
		for _, s := range h.buckets {
			if s.read {
				w.all = append(w.all, s)
			}
		}
		for _, s := range []*series{h.count, h.sum} {
			if s.read {
				w.all = append(w.all, s)
			}
		}
	}
	// A series a query reads appears: sparse scraping must write its
	// windows densely (see needed).
	w.fresh = w.fresh || len(w.all) > n
}

func (sh *shape) newSeries(kv []string) *series {
	l := labels.FromStrings(kv...)
	return &series{lbls: l, read: sh.reads(l)}
}

func (sh *shape) newHistogram(name string, base []string, bounds []float64, conv func(int64) float64) *histogram {
	h := &histogram{bounds: bounds, counts: make([]float64, len(bounds)+1), le: make([]int64, len(bounds))}
	for i, b := range bounds {
		h.buckets = append(h.buckets, sh.newSeries(append([]string{"__name__", name + "_bucket", "le", strconv.FormatFloat(b, 'g', -1, 64)}, base...)))
		h.le[i] = threshold(b, conv)
	}
	h.buckets = append(h.buckets, sh.newSeries(append([]string{"__name__", name + "_bucket", "le", "+Inf"}, base...)))
	h.count = sh.newSeries(append([]string{"__name__", name + "_count"}, base...))
	h.sum = sh.newSeries(append([]string{"__name__", name + "_sum"}, base...))
	return h
}

// msOf and secondsOf are how the sidecar's and the mock server's
// histograms convert a latency in nanoseconds.
func msOf(ns int64) float64      { return float64(ns) / 1e6 }
func secondsOf(ns int64) float64 { return time.Duration(ns).Seconds() }

// threshold is the longest latency, in whole nanoseconds, that conv puts
// at or below bound: observe counts a latency in the first bucket whose
// bound is at least conv(latency), so this is where the bucket ends, with
// conv's rounding, exactly.
func threshold(bound float64, conv func(int64) float64) int64 {
	n := int64(bound * 1e9 / conv(1e9))
	for conv(n+1) <= bound {
		n++
	}
	for conv(n) > bound {
		n--
	}
	return n
}
