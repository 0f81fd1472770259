package mockserver

import (
	"strconv"
	"time"

	"github.com/canarylab/canarylab/mockserver/behavior"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// LatencyBuckets are the classic buckets of the request and injected-delay
// histograms: fine around the millisecond to 1 s range where canary
// thresholds live, out to a minute for hangs. The native histogram beside
// them resolves any value to about 5 %.
var LatencyBuckets = []float64{
	0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1,
	0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 5, 7.5, 10, 15, 20, 30, 60,
}

// metrics are the server's Prometheus collectors, on a registry of its own
// so several servers live in one process.
type metrics struct {
	registry        *prometheus.Registry
	constLabels     prometheus.Labels
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	faults          *prometheus.CounterVec
	injectedErrors  *prometheus.CounterVec
	injectedDelay   prometheus.Histogram
	delayCapped     *prometheus.CounterVec
	inFlight        prometheus.Gauge
	rejected        *prometheus.CounterVec
	configApplied   *prometheus.CounterVec
	faultCounters   [behavior.NumFaultKinds]prometheus.Counter
	codeLabels      [600]string
	clientGaveUp    prometheus.Counter
	requestDrivenOK prometheus.Counter
}

func newMetrics(version string) *metrics {
	reg := prometheus.NewRegistry()
	constLabels := prometheus.Labels{"version": version}
	m := &metrics{registry: reg, constLabels: constLabels}

	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "canarylab_mock_requests_total",
		Help:        "Requests served, by route pattern, method and status code sent (0: no response, the connection was reset, closed or hung up; 499: the client gave up during an injected delay).",
		ConstLabels: constLabels,
	}, []string{"route", "method", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:                            "canarylab_mock_request_duration_seconds",
		Help:                            "Time from receiving a request to the end of its answer, injected delay included.",
		ConstLabels:                     constLabels,
		Buckets:                         LatencyBuckets,
		NativeHistogramBucketFactor:     1.1,
		NativeHistogramMaxBucketNumber:  160,
		NativeHistogramMinResetDuration: time.Hour,
	}, []string{"route", "method", "code"})
	m.faults = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "canarylab_mock_injected_faults_total",
		Help:        "Faults injected, by kind: error (an injected status), reset, close, hang, slow_body, truncate.",
		ConstLabels: constLabels,
	}, []string{"kind"})
	m.injectedErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "canarylab_mock_injected_errors_total",
		Help:        "Injected error statuses, by code.",
		ConstLabels: constLabels,
	}, []string{"code"})
	m.injectedDelay = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:                            "canarylab_mock_injected_delay_seconds",
		Help:                            "Injected delays, after the cap.",
		ConstLabels:                     constLabels,
		Buckets:                         LatencyBuckets,
		NativeHistogramBucketFactor:     1.1,
		NativeHistogramMaxBucketNumber:  160,
		NativeHistogramMinResetDuration: time.Hour,
	})
	m.delayCapped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "canarylab_mock_injected_delay_capped_total",
		Help:        "Injected delays shortened by a cap, by source: profile (the latency's cap) or request (requestFaults.maxDelay).",
		ConstLabels: constLabels,
	}, []string{"source"})
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "canarylab_mock_in_flight_requests", Help: "Requests being served.", ConstLabels: constLabels,
	})
	m.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "canarylab_mock_rejected_requests_total",
		Help:        "Requests refused by the server's own limits, by reason: in_flight_limit (answered 503), body_too_large (413), bad_request_fault (400: a request-driven parameter did not parse).",
		ConstLabels: constLabels,
	}, []string{"reason"})
	m.clientGaveUp = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "canarylab_mock_client_gave_up_total", Help: "Requests whose client went away during an injected delay.", ConstLabels: constLabels,
	})
	m.requestDrivenOK = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "canarylab_mock_request_driven_total", Help: "Requests shaped by their own delay/status/fault parameters.", ConstLabels: constLabels,
	})
	m.configApplied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "canarylab_mock_config_updates_total",
		Help:        "Config updates, by source (start, api, file, signal) and result (applied, refused).",
		ConstLabels: constLabels,
	}, []string{"source", "result"})
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "canarylab_mock_info", Help: "Always 1; labels name the version this server plays.", ConstLabels: constLabels,
	})
	info.Set(1)

	for _, c := range []prometheus.Collector{
		m.requests, m.duration, m.faults, m.injectedErrors, m.injectedDelay, m.delayCapped,
		m.inFlight, m.rejected, m.clientGaveUp, m.requestDrivenOK, m.configApplied, info,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		reg.MustRegister(c)
	}
	m.faultCounters[0] = m.faults.WithLabelValues("error")
	for _, k := range behavior.FaultKinds {
		m.faultCounters[k] = m.faults.WithLabelValues(k.String())
	}
	for i := range m.codeLabels {
		m.codeLabels[i] = strconv.Itoa(i)
	}
	for _, r := range []string{"in_flight_limit", "body_too_large", "bad_request_fault"} {
		m.rejected.WithLabelValues(r)
	}
	for _, s := range []string{"profile", "request"} {
		m.delayCapped.WithLabelValues(s)
	}
	return m
}

// registerFuncs adds the gauges read from the server's state at scrape
// time, so serving a request never has to update them.
func (m *metrics) registerFuncs(s *Server) {
	gauge := func(name, help string, fn func() float64) {
		m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: name, Help: help, ConstLabels: m.constLabels,
		}, fn))
	}
	gauge("canarylab_mock_config_generation", "Generation of the config being served; it rises by one with every config applied.",
		func() float64 { return float64(s.Generation()) })
	gauge("canarylab_mock_phase", "Index of the current phase step; -1 when no schedule runs.",
		func() float64 { return float64(s.Phase().Index) })
	gauge("canarylab_mock_override_active", "1 while a temporary fault override is in force.",
		func() float64 { return boolFloat(s.activeOverride(s.clock.Now()) != nil) })
	gauge("canarylab_mock_ready", "1 when /readyz answers 200.",
		func() float64 { return boolFloat(s.ready.Load()) })
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (m *metrics) code(c int) string {
	if c >= 0 && c < len(m.codeLabels) {
		return m.codeLabels[c]
	}
	return strconv.Itoa(c)
}

// observe records one finished request.
func (m *metrics) observe(route, method string, code int, elapsed time.Duration) {
	c := m.code(code)
	m.requests.WithLabelValues(route, method, c).Inc()
	m.duration.WithLabelValues(route, method, c).Observe(elapsed.Seconds())
}

// methodLabel bounds the method label's values.
func methodLabel(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE":
		return m
	}
	return "OTHER"
}

// routeObservers are one route's children of the requests counter and the
// duration histogram for one method and status.
type routeObservers struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// observeRoute is observe for a route's requests: the metric children are
// resolved once per route, method and status, then read from the route.
func (m *metrics) observeRoute(rt *compiledRoute, method string, code int, elapsed time.Duration) {
	key := obsKey{methodLabel(method), code}
	v, ok := rt.obs.Load(key)
	if !ok {
		c := m.code(code)
		v, _ = rt.obs.LoadOrStore(key, &routeObservers{
			requests: m.requests.WithLabelValues(rt.label, key.method, c),
			duration: m.duration.WithLabelValues(rt.label, key.method, c),
		})
	}
	o := v.(*routeObservers)
	o.requests.Inc()
	o.duration.Observe(elapsed.Seconds())
}

// obsKey keys a route's cached metric children.
type obsKey struct {
	method string
	code   int
}
