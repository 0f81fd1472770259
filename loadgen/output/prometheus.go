package output

import (
	"time"

	"github.com/canarylab/canarylab/loadgen/stats"
	"github.com/prometheus/client_golang/prometheus"
)

// latencyBuckets resolve the millisecond to one-second range where canary
// thresholds live, out to a minute.
var latencyBuckets = []float64{
	0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1,
	0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 5, 7.5, 10, 15, 20, 30, 60,
}

// Collector exposes a running test's statistics to Prometheus, computed
// from a snapshot at each scrape so the load path never pays for it.
type Collector struct {
	snapshot func() stats.Snapshot
	gauges   func() map[string]float64

	requests, failures, duration, gauge *prometheus.Desc
}

// NewCollector reads snapshots from snapshot; gauges, if given, adds
// named gauges (users, and the open model's intended, sent, late,
// dropped counts), each as canarylab_load_<name>.
func NewCollector(snapshot func() stats.Snapshot, gauges func() map[string]float64) *Collector {
	labels := []string{"name", "method"}
	return &Collector{
		snapshot: snapshot,
		gauges:   gauges,
		requests: prometheus.NewDesc("canarylab_load_requests_total", "Requests sent, by request name and method (failures included).", labels, nil),
		failures: prometheus.NewDesc("canarylab_load_failures_total", "Requests that failed, by request name and method.", labels, nil),
		duration: prometheus.NewDesc("canarylab_load_request_duration_seconds", "Response times seen by the load generator (from the intended start in the open model).", labels, nil),
	}
}

// Describe sends nothing: the gauges' names depend on the run, so the
// collector is unchecked.
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

// Collect sends the current statistics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	snap := c.snapshot()
	emit := func(e *stats.Entry, name, method string) {
		ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(e.NumRequests), name, method)
		ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(e.NumFailures), name, method)
		buckets := map[float64]uint64{}
		if h := e.Histogram(); h != nil {
			var cum uint64
			bars := h.Distribution()
			bi := 0
			for _, b := range latencyBuckets {
				limit := int64(b * float64(time.Second/time.Microsecond))
				for bi < len(bars) && bars[bi].To <= limit {
					cum += uint64(bars[bi].Count)
					bi++
				}
				buckets[b] = cum
			}
		}
		sum := e.TotalResponseTime / 1000
		ch <- prometheus.MustNewConstHistogram(c.duration, uint64(e.NumRequests-e.NumNoneRequests), sum, buckets, name, method)
	}
	for _, e := range snap.Entries {
		emit(e, e.Name, e.Method)
	}
	if snap.Total != nil {
		emit(snap.Total, stats.AggregatedName, "")
	}
	if c.gauges != nil {
		for name, v := range c.gauges() {
			ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("canarylab_load_"+name, "Load generator state: "+name+".", nil, nil), prometheus.GaugeValue, v)
		}
	}
}
