package mesh

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metric names, as Istio's standard metrics.
const (
	MetricRequests = "istio_requests_total"
	MetricDuration = "istio_request_duration_milliseconds"
)

// DurationBuckets are Istio's default buckets for
// istio_request_duration_milliseconds, in ms.
func DurationBuckets() []float64 {
	return []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
		60000, 300000, 600000, 1800000, 3600000}
}

// flag is an Envoy response flag the destination sidecar can report.
type flag uint8

const (
	flagNone flag = iota // "-"
	flagUC               // upstream connection termination
	flagUF               // upstream connection failure
	flagDC               // downstream connection termination
	numFlags
)

var flagNames = [numFlags]string{"-", "UC", "UF", "DC"}

// labelNames are Istio's standard labels on both metrics. The two that
// vary per request come last but one and last but three.
var labelNames = []string{
	"reporter",
	"source_workload", "source_workload_namespace", "source_principal", "source_app",
	"source_version", "source_canonical_service", "source_canonical_revision", "source_cluster",
	"destination_workload", "destination_workload_namespace", "destination_principal",
	"destination_app", "destination_version", "destination_service", "destination_service_name",
	"destination_service_namespace", "destination_canonical_service",
	"destination_canonical_revision", "destination_cluster",
	"request_protocol", "response_code", "grpc_response_status", "response_flags",
	"connection_security_policy",
}

const (
	codeLabel  = 21 // index of response_code in labelNames
	flagsLabel = 23 // index of response_flags
	maxCode    = 600
)

// series is one label set's counter and histogram, cached so a request
// costs no label hashing, with the Router's own count for Counts.
type series struct {
	count prometheus.Counter
	dur   prometheus.Observer
	n     atomic.Uint64
}

type otherKey struct {
	d    dest
	code int
	fl   flag
}

// telemetry is the destination sidecars' view of the traffic.
type telemetry struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	reg       *prometheus.Registry
	service   string
	workloads [2]string
	labels    [2][]string // label values; response_code and response_flags filled per series
	slots     [2][numFlags][maxCode]atomic.Pointer[series]
	mu        sync.Mutex
	other     map[otherKey]*series // codes outside 0..599
}

func newTelemetry(cfg Config, backends [2]backend) (*telemetry, error) {
	t := &telemetry{
		service: cfg.Service + "." + cfg.Namespace + ".svc.cluster.local",
		reg:     prometheus.NewRegistry(),
		other:   map[otherKey]*series{},
	}
	t.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricRequests,
		Help: "Requests reported by the destination sidecars (canarylab mesh router, Istio's standard metric).",
	}, labelNames)
	t.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    MetricDuration,
		Help:    "Request durations in ms, from receiving the request to the end of the response (canarylab mesh router, Istio's standard metric).",
		Buckets: DurationBuckets(),
	}, labelNames)
	if cfg.Registry != nil {
		var err error
		if t.requests, err = adopt(cfg.Registry, MetricRequests, t.requests); err != nil {
			return nil, err
		}
		if t.duration, err = adopt(cfg.Registry, MetricDuration, t.duration); err != nil {
			return nil, err
		}
	}
	if err := t.reg.Register(t.requests); err != nil {
		return nil, fmt.Errorf("mesh: register %s: %w", MetricRequests, err)
	}
	if err := t.reg.Register(t.duration); err != nil {
		return nil, fmt.Errorf("mesh: register %s: %w", MetricDuration, err)
	}

	src, srcNS, srcRev, srcCluster := UnknownLabel, UnknownLabel, UnknownLabel, UnknownLabel
	if cfg.Source != "" {
		src, srcNS, srcRev, srcCluster = cfg.Source, cfg.Namespace, "latest", "Kubernetes"
	}
	for i, b := range backends {
		t.workloads[i] = b.Workload
		t.labels[i] = []string{
			"destination",
			src, srcNS, UnknownLabel, src, UnknownLabel, src, srcRev, srcCluster,
			b.Workload, cfg.Namespace, UnknownLabel,
			b.Workload, UnknownLabel, t.service, cfg.Service,
			cfg.Namespace, b.Workload,
			"latest", "Kubernetes",
			"http", "", "", "",
			UnknownLabel,
		}
	}
	return t, nil
}

// adopt registers c, or returns the collector already registered under the
// same description (another Router on the same registry).
func adopt[C prometheus.Collector](reg prometheus.Registerer, name string, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("mesh: Config.Registry: register %s: %w", name, err)
}

// observe reports one request.
func (t *telemetry) observe(d dest, code int, fl flag, dur time.Duration) {
	s := t.get(d, code, fl)
	s.count.Inc()
	s.dur.Observe(float64(dur) / float64(time.Millisecond))
	s.n.Add(1)
}

func (t *telemetry) get(d dest, code int, fl flag) *series {
	if code >= 0 && code < maxCode {
		p := &t.slots[d][fl][code]
		if s := p.Load(); s != nil {
			return s
		}
		if s := t.newSeries(d, code, fl); p.CompareAndSwap(nil, s) {
			return s
		}
		return p.Load()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	k := otherKey{d, code, fl}
	s := t.other[k]
	if s == nil {
		s = t.newSeries(d, code, fl)
		t.other[k] = s
	}
	return s
}

func (t *telemetry) newSeries(d dest, code int, fl flag) *series {
	v := slices.Clone(t.labels[d])
	v[codeLabel] = strconv.Itoa(code)
	v[flagsLabel] = flagNames[fl]
	return &series{count: t.requests.WithLabelValues(v...), dur: t.duration.WithLabelValues(v...)}
}

// MetricsHandler serves the Router's registry in the Prometheus exposition
// formats, for the engine's embedded Prometheus to scrape.
func (rt *Router) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(rt.tel.reg, promhttp.HandlerOpts{})
}

// Counts are the requests the Router reported since it started: what a
// test or the live view checks against the backends' own counts.
type Counts struct {
	// Requests counts requests by destination workload and response_code
	// ("0": the client left before a response). Both workloads are
	// present. Mirrored copies count for the canary.
	Requests map[string]map[string]uint64 `json:"requests"`
	// Flags counts requests reported with a response flag other than "-",
	// by destination workload and flag.
	Flags map[string]map[string]uint64 `json:"flags"`
	// Mirrored counts copies sent to the canary; MirrorsSkipped the
	// requests chosen for mirroring that were not copied (body over the
	// limit or unreadable, too many copies in flight, a protocol upgrade,
	// or the Router closed).
	Mirrored       uint64 `json:"mirrored"`
	MirrorsSkipped uint64 `json:"mirrorsSkipped"`
}

// Total is the number of requests reported for workload.
func (c Counts) Total(workload string) uint64 {
	var n uint64
	for _, v := range c.Requests[workload] {
		n += v
	}
	return n
}

// Counts returns the realised counts.
func (rt *Router) Counts() Counts {
	t := rt.tel
	c := Counts{
		Requests:       map[string]map[string]uint64{},
		Flags:          map[string]map[string]uint64{},
		Mirrored:       rt.mirrored.Load(),
		MirrorsSkipped: rt.mirrorSkipped.Load(),
	}
	add := func(d dest, code int, fl flag, n uint64) {
		if n == 0 {
			return
		}
		c.Requests[t.workloads[d]][strconv.Itoa(code)] += n
		if fl != flagNone {
			c.Flags[t.workloads[d]][flagNames[fl]] += n
		}
	}
	for d := range t.slots {
		c.Requests[t.workloads[d]] = map[string]uint64{}
		c.Flags[t.workloads[d]] = map[string]uint64{}
		for fl := range t.slots[d] {
			for code := range t.slots[d][fl] {
				if s := t.slots[d][fl][code].Load(); s != nil {
					add(dest(d), code, flag(fl), s.n.Load())
				}
			}
		}
	}
	t.mu.Lock()
	for k, s := range t.other {
		add(k.d, k.code, k.fl, s.n.Load())
	}
	t.mu.Unlock()
	return c
}
