// Package mesh is the local engine's stand-in for an Istio VirtualService
// and for the destination sidecars' telemetry.
//
// The local engine starts a primary and a canary mock server on loopback
// ports and puts a Router in front of them. The Router routes as the
// VirtualService Flagger's Istio router writes (pkg/router/istio.go): one
// weighted route primary/canary, optionally mirrored to the canary, or,
// for A/B testing, a match route carrying the weights followed by a
// default route to the primary. Flagger's builtin checks
// (request-success-rate, request-duration) then query the Router's metrics
// through an embedded Prometheus, so the Router reports what Istio's
// destination sidecars report.
//
// # Forwarding
//
// A request goes to its backend as Envoy forwards it: Host, headers, path
// and raw query as received, bodies streamed both ways (every chunk is
// flushed as it comes), the client's address appended to X-Forwarded-For,
// X-Forwarded-Proto set when absent, an x-request-id generated when
// absent. Each request is tried once: Istio's default retry policy (two
// retries on connect failures and 503s, applied by the source sidecar) is
// not emulated, and the Router stops net/http from silently replaying a
// request whose reused connection the backend closed, so a backend sees
// exactly the requests the client sent plus the mirrored copies.
//
// # Mirroring
//
// While mirrored, a request chosen for mirroring (Config.MirrorWeight
// percent, all when 0) is also sent to the canary in the background, as
// Envoy's shadow: the same headers and x-request-id, the Host suffixed
// "-shadow" (before any port), the response read and dropped; the client
// only ever gets the routed response. The shadow's body is buffered: a
// mirrored request's body is read (up to Config.MirrorBodyLimit, 1 MiB by
// default) before either copy is sent, and a bigger body is forwarded but
// not mirrored. At most Config.MirrorConcurrency copies are in flight;
// beyond that a copy is dropped, never waited for. Protocol upgrades are
// not mirrored. Copies are reported by the canary's sidecar like any
// request; Counts tells how many were sent and skipped.
//
// # Telemetry
//
// The Router's registry holds Istio's standard metrics as a destination
// sidecar reports them: the counter istio_requests_total and the histogram
// istio_request_duration_milliseconds (Istio's default buckets, in ms,
// measured from receiving the request to the end of the response body).
// Their labels are Istio's:
//
//	reporter                        "destination"
//	source_workload                 Config.Source, or "unknown"
//	source_workload_namespace       Config.Namespace with a Source, or "unknown"
//	source_app, source_canonical_service  as source_workload
//	source_canonical_revision       "latest" with a Source, or "unknown"
//	source_cluster                  "Kubernetes" with a Source, or "unknown"
//	source_principal, source_version  "unknown"
//	destination_workload            Backend.Workload
//	destination_workload_namespace  Config.Namespace
//	destination_app, destination_canonical_service  Backend.Workload (the pods' app label)
//	destination_canonical_revision  "latest"
//	destination_version             "unknown"
//	destination_principal           "unknown"
//	destination_service             "<service>.<namespace>.svc.cluster.local" (see Config.Service)
//	destination_service_name        <service>
//	destination_service_namespace   Config.Namespace
//	destination_cluster             "Kubernetes"
//	request_protocol                "http"
//	response_code                   the status, "0" when no response was sent
//	grpc_response_status            ""
//	response_flags                  "-", or Envoy's UC, UF, DC (below)
//	connection_security_policy      "unknown"
//
// destination_service names the apex service for both workloads, as the
// requests are addressed to it.
//
// The Router both routes (the source sidecar's job) and reports (the
// destination sidecar's), and reports failures as the destination sidecar
// sees them:
//
//   - a backend that resets or closes the connection before answering:
//     the client gets 503 "upstream connect error or disconnect/reset
//     before headers. reset reason: connection termination", reported
//     "503" "UC";
//   - a backend nobody listens for: 503 "… reset reason: connection
//     failure", reported "503" "UF";
//   - a backend failing after its headers were forwarded (a truncated
//     body): the client's response is cut short, as behind Envoy, and
//     reported with its status and "UC";
//   - a client leaving before the response is complete: "DC", with
//     response_code "0" when no response had started;
//   - Config.Timeout (Istio's route timeout; none by default, so a hanging
//     backend is bounded only by the client) answers the client 504
//     "upstream request timeout" as the source sidecar does, while the
//     destination sidecar only sees its downstream go away: reported "0"
//     "DC" (or the status and "DC" once the response had started).
//
// A Router is safe for concurrent use; SetRoutes swaps an immutable route
// table atomically, so a request in flight finishes on the routes it
// started with. The Router keeps no global state: metrics live on its own
// registry (and on Config.Registry when given).
package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/canarylab/canarylab/orchestrator/analysis"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults.
const (
	// DefaultMirrorBodyLimit is the largest request body mirrored: a
	// mirrored request's body is read before either copy is sent, so that
	// both send the same bytes.
	DefaultMirrorBodyLimit = 1 << 20
	// DefaultMirrorConcurrency bounds the mirrored requests in flight:
	// Envoy's default circuit breaker (max_requests 1024) on the canary
	// cluster. A copy over the bound is not sent, as Envoy's would overflow.
	DefaultMirrorConcurrency = 1024
	// UnknownLabel is Istio's value for a label it cannot know.
	UnknownLabel = "unknown"
)

// Backend is one destination: a workload and the loopback URL it listens
// on.
type Backend struct {
	// Workload is the Deployment name the sidecar reports as
	// destination_workload, e.g. "podinfo-primary" for the primary and
	// "podinfo" for the canary (Flagger's names).
	Workload string
	// URL is http://127.0.0.1:port or http://[::1]:port.
	URL string
}

// Config is a Router's setup for its whole life; the routes change with
// SetRoutes.
type Config struct {
	// Namespace is the Canary's namespace: destination_workload_namespace
	// and the namespace in destination_service.
	Namespace string
	// Primary and Canary are the two destinations.
	Primary, Canary Backend
	// Service is the apex service name (Flagger's spec.service.name or the
	// target name). Empty: Primary.Workload without its "-primary" suffix,
	// or Canary.Workload when Primary.Workload has no such suffix.
	// destination_service is "<Service>.<Namespace>.svc.cluster.local" and
	// destination_service_name is Service for both destinations, as the
	// destination sidecars report requests addressed to the apex host.
	Service string
	// Match is the Canary's analysis.match (A/B testing). Empty: one
	// weighted route. Set: Flagger's two-route layout, where a request that
	// matches any entry goes by the weights and any other request goes to
	// the primary. See the Router's doc for the semantics.
	Match []analysis.HTTPMatchRequest
	// MirrorWeight is Istio's mirrorPercentage when > 0 (the share of
	// requests mirrored while mirroring is on); 0 mirrors every request.
	MirrorWeight int
	// Seed seeds the Router's random source (destination and mirror
	// draws). The same seed gives the same sequence of draws; pick a random
	// one for independent runs.
	Seed uint64
	// Timeout is the route timeout (Istio's HTTPRoute.timeout); 0 means
	// none, as Istio's default: a hanging backend is bounded only by the
	// client.
	Timeout time.Duration
	// Source is the source_workload reported (e.g. "canarylab-load"), in
	// Namespace. Empty: "unknown", as Istio reports a caller outside the
	// mesh.
	Source string
	// MirrorBodyLimit is the largest request body mirrored (0:
	// DefaultMirrorBodyLimit). A bigger body is sent to its destination
	// but not mirrored.
	MirrorBodyLimit int64
	// MirrorConcurrency bounds mirrored requests in flight (0:
	// DefaultMirrorConcurrency).
	MirrorConcurrency int
	// Registry also receives the Router's metrics; nil: the Router's own
	// registry only. MetricsHandler always serves the Router's own
	// registry. Two Routers may share a Registry: the second adopts the
	// first's collectors, as one Prometheus sees every sidecar.
	Registry prometheus.Registerer
	// Logger gets routing changes and upstream failures (debug); nil
	// discards.
	Logger *slog.Logger
	// Transport sends the requests; nil: a keep-alive transport tuned for
	// loopback (no compression, no proxy, large idle pool).
	Transport http.RoundTripper
}

// Router routes requests to the primary or the canary and reports them as
// Istio's destination sidecars would. It is an http.Handler.
//
// Routing is Envoy's weighted-cluster choice: a random draw per request,
// modulo 100, against the primary's weight, from a PCG seeded with
// Config.Seed, so the realised split is binomial around the weights, not a
// fixed pattern.
//
// Match semantics (Istio's HTTPMatchRequest as Envoy evaluates it):
// entries are ORed, the conditions within an entry ANDed. A StringMatch is
// one of exact, prefix or regex (RE2, fully anchored, as Envoy's
// safe_regex); an empty one (and Istio's special regex "*") only checks
// presence. uri is matched on the request path (percent-decoded, without
// the query); ignoreUriCase makes exact and prefix uri matches
// case-insensitive (Envoy ignores it for regex). headers are looked up
// case-insensitively, several values of one header joined with ","
// (Envoy's rule); a missing header never matches a value. withoutHeaders
// inverts a header match as Envoy's invert_match does: it matches a header
// that is present with another value, and an empty withoutHeaders entry
// matches a missing header; a missing header does not match a value
// condition even inverted (Envoy; see istio/istio#50988). method,
// authority (the Host) and scheme ("http") are matched as the pseudo
// headers. queryParams take exact or regex (Istio has no prefix there) and
// match the first occurrence of the parameter, undecoded, as Envoy does.
// The keys uri, scheme, method and authority in headers are ignored, as
// Istio ignores them. Fields a router on one machine cannot see
// (sourceLabels, gateways, port, sourceNamespace) and name/statPrefix are
// ignored.
type Router struct {
	cfg       Config
	log       *slog.Logger
	backends  [2]backend
	match     []condition
	routes    atomic.Pointer[routeTable]
	rngMu     sync.Mutex
	rng       *rand.Rand
	proxy     *httputil.ReverseProxy
	transport http.RoundTripper
	ownTrans  *http.Transport
	tel       *telemetry

	mirrorSem     chan struct{}
	mirrorLimit   int64
	mirrorCtx     context.Context
	mirrorStop    context.CancelFunc
	mirrorMu      sync.Mutex // orders mirrorWG.Add against Close
	closed        bool
	mirrorWG      sync.WaitGroup
	mirrored      atomic.Uint64
	mirrorSkipped atomic.Uint64
	closeOnce     sync.Once
}

// dest indexes the two destinations.
type dest uint8

const (
	toPrimary dest = iota
	toCanary
)

// backend is a validated Backend.
type backend struct {
	Backend
	host string // host:port of the URL
}

// routeTable is one immutable state of the routes.
type routeTable struct {
	primary, canary int
	mirrored        bool
	// mirrorPerMillion is the share mirrored in millionths: Envoy's
	// runtime fraction with denominator MILLION, as Istio sets
	// mirrorPercentage.
	mirrorPerMillion uint64
}

// New validates cfg and returns a Router with the routes primary 100,
// canary 0, not mirrored (Flagger's initial VirtualService).
func New(cfg Config) (*Router, error) {
	if err := checkName("Config.Namespace", cfg.Namespace, 63); err != nil {
		return nil, err
	}
	var backends [2]backend
	for i, b := range []struct {
		field string
		b     Backend
	}{{"Config.Primary", cfg.Primary}, {"Config.Canary", cfg.Canary}} {
		if err := checkName(b.field+".Workload", b.b.Workload, 253); err != nil {
			return nil, err
		}
		host, err := loopbackHost(b.b.URL)
		if err != nil {
			return nil, fmt.Errorf("mesh: %s.URL %q: %w", b.field, b.b.URL, err)
		}
		backends[i] = backend{Backend: b.b, host: host}
	}
	if cfg.Primary.Workload == cfg.Canary.Workload {
		return nil, fmt.Errorf("mesh: Config.Canary.Workload %q: the same as Config.Primary.Workload", cfg.Canary.Workload)
	}
	if cfg.Service == "" {
		if s, ok := strings.CutSuffix(cfg.Primary.Workload, "-primary"); ok && s != "" {
			cfg.Service = s
		} else {
			cfg.Service = cfg.Canary.Workload
		}
	} else if err := checkName("Config.Service", cfg.Service, 63); err != nil {
		return nil, err
	}
	if cfg.MirrorWeight < 0 || cfg.MirrorWeight > 100 {
		return nil, fmt.Errorf("mesh: Config.MirrorWeight %d: must be 0..100 (a percentage; 0 mirrors all)", cfg.MirrorWeight)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("mesh: Config.Timeout %v: must not be negative (0 means none)", cfg.Timeout)
	}
	if cfg.MirrorBodyLimit < 0 {
		return nil, fmt.Errorf("mesh: Config.MirrorBodyLimit %d: must not be negative (0 means %d)", cfg.MirrorBodyLimit, DefaultMirrorBodyLimit)
	}
	if cfg.MirrorConcurrency < 0 {
		return nil, fmt.Errorf("mesh: Config.MirrorConcurrency %d: must not be negative (0 means %d)", cfg.MirrorConcurrency, DefaultMirrorConcurrency)
	}
	match, err := compileMatch(cfg.Match)
	if err != nil {
		return nil, fmt.Errorf("mesh: Config.Match: %w", err)
	}
	tel, err := newTelemetry(cfg, backends)
	if err != nil {
		return nil, err
	}

	rt := &Router{
		cfg:         cfg,
		log:         cfg.Logger,
		backends:    backends,
		match:       match,
		rng:         rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		tel:         tel,
		mirrorLimit: cfg.MirrorBodyLimit,
	}
	if rt.log == nil {
		rt.log = slog.New(slog.DiscardHandler)
	}
	if rt.mirrorLimit == 0 {
		rt.mirrorLimit = DefaultMirrorBodyLimit
	}
	n := cfg.MirrorConcurrency
	if n == 0 {
		n = DefaultMirrorConcurrency
	}
	rt.mirrorSem = make(chan struct{}, n)
	rt.mirrorCtx, rt.mirrorStop = context.WithCancel(context.Background())
	rt.transport = cfg.Transport
	if rt.transport == nil {
		rt.ownTrans = newLoopbackTransport()
		rt.transport = rt.ownTrans
	}
	rt.proxy = &httputil.ReverseProxy{
		Rewrite:        rt.rewrite,
		Transport:      rt.transport,
		FlushInterval:  -1, // stream as Envoy does: every chunk goes out as it comes
		ErrorLog:       slog.NewLogLogger(rt.log.Handler(), slog.LevelDebug),
		BufferPool:     newBufferPool(),
		ErrorHandler:   rt.proxyError,
		ModifyResponse: rt.modifyResponse,
	}
	rt.routes.Store(&routeTable{primary: 100})
	return rt, nil
}

// newLoopbackTransport is the default transport: keep-alive connections
// to loopback backends, enough idle ones that a load test's concurrency
// does not churn connections, bodies passed through untouched.
func newLoopbackTransport() *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second, // Istio's default connectTimeout
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 1024,
		// Shorter than the mock server's 120 s idle timeout, so the router
		// rarely reuses a connection the backend is closing.
		IdleConnTimeout:    90 * time.Second,
		DisableCompression: true, // pass Accept-Encoding and bodies through as sent
		ForceAttemptHTTP2:  false,
	}
}

// SetRoutes sets the weights and the mirror, as Flagger's
// IstioRouter.SetRoutes: weights are integers 0..100 summing to 100, and
// mirrored adds a mirror to the canary (Config.MirrorWeight percent of the
// requests, all when it is 0). With Config.Match (A/B testing) Flagger's
// VirtualService carries no mirror (its A/B layout replaces the mirrored
// route), so mirrored is ignored and GetRoutes reports false. Bad weights
// are refused and the routes in force kept.
func (rt *Router) SetRoutes(primary, canary int, mirrored bool) error {
	if primary < 0 || primary > 100 || canary < 0 || canary > 100 || primary+canary != 100 {
		return fmt.Errorf("mesh: SetRoutes(primary %d, canary %d): weights must be 0..100 and sum to 100", primary, canary)
	}
	t := &routeTable{primary: primary, canary: canary}
	if mirrored && len(rt.match) == 0 {
		t.mirrored = true
		t.mirrorPerMillion = 1_000_000
		if rt.cfg.MirrorWeight > 0 {
			t.mirrorPerMillion = uint64(rt.cfg.MirrorWeight) * 10_000
		}
	}
	rt.routes.Store(t)
	rt.log.Info("routes set", "namespace", rt.cfg.Namespace, "service", rt.cfg.Service,
		"primary", primary, "canary", canary, "mirrored", t.mirrored)
	return nil
}

// GetRoutes returns the routes in force, as Flagger's
// IstioRouter.GetRoutes reads them from the VirtualService.
func (rt *Router) GetRoutes() (primary, canary int, mirrored bool) {
	t := rt.routes.Load()
	return t.primary, t.canary, t.mirrored
}

// Service returns the destination_service the Router reports
// ("<service>.<namespace>.svc.cluster.local").
func (rt *Router) Service() string { return rt.tel.service }

// WaitMirrors waits until no mirrored request is in flight, or ctx is
// done: what a test or a phase change does before reading the canary's
// counts.
func (rt *Router) WaitMirrors(ctx context.Context) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for len(rt.mirrorSem) > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("mesh: waiting for %d mirrored requests: %w", len(rt.mirrorSem), context.Cause(ctx))
		case <-t.C:
		}
	}
	return nil
}

// Close stops mirrored requests in flight, waits for them, and closes the
// idle connections of the Router's own transport. The Router still routes
// afterwards (the engine shuts its server down first); it no longer
// mirrors.
func (rt *Router) Close() error {
	rt.closeOnce.Do(func() {
		rt.mirrorMu.Lock()
		rt.closed = true
		rt.mirrorMu.Unlock()
		rt.mirrorStop()
		rt.mirrorWG.Wait()
		if rt.ownTrans != nil {
			rt.ownTrans.CloseIdleConnections()
		}
	})
	return nil
}

// draw returns the per-request random draws: which destination (Envoy
// picks random % total weight) and whether to mirror (random % 1e6 against
// the mirror fraction). It locks only when a draw can change the outcome.
func (rt *Router) draw(t *routeTable, matched bool) (d dest, mirror bool) {
	needDest := matched && t.primary != 100 && t.canary != 100
	needMirror := t.mirrored && t.mirrorPerMillion < 1_000_000
	var a, b uint64
	if needDest || needMirror {
		rt.rngMu.Lock()
		if needDest {
			a = rt.rng.Uint64()
		}
		if needMirror {
			b = rt.rng.Uint64()
		}
		rt.rngMu.Unlock()
	}
	switch {
	case !matched || t.canary == 0:
		d = toPrimary
	case t.canary == 100:
		d = toCanary
	case a%100 >= uint64(t.primary):
		d = toCanary
	}
	if t.mirrored {
		mirror = !needMirror || b%1_000_000 < t.mirrorPerMillion
	}
	return d, mirror
}

// checkName checks a Kubernetes-style name (lower-case alphanumerics, '-'
// and, past a label's length, '.'), so that the label values and the
// service name are what a cluster would report.
func checkName(field, s string, max int) error {
	if s == "" {
		return fmt.Errorf("mesh: %s: empty", field)
	}
	if len(s) > max {
		return fmt.Errorf("mesh: %s %q: longer than %d characters", field, s, max)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' && max > 63
		if !ok {
			return fmt.Errorf("mesh: %s %q: must be a Kubernetes name (lower-case letters, digits, '-')", field, s)
		}
	}
	if !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return fmt.Errorf("mesh: %s %q: must start and end with a letter or digit", field, s)
	}
	return nil
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// errNotLoopback is the reason every bad backend URL gives.
var errNotLoopback = errors.New("must be an http URL on this machine (127.0.0.1, ::1)")

// loopbackHost checks a backend URL: http, a loopback IP literal with a
// port, nothing else (the Router forwards the request's own path and
// query). It returns host:port.
func loopbackHost(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.User != nil || u.Opaque != "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", errNotLoopback
	}
	ip := net.ParseIP(u.Hostname())
	if ip == nil || !ip.IsLoopback() {
		return "", errNotLoopback
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil || port < 1 || port > 65535 {
		return "", fmt.Errorf("%w: a port is required", errNotLoopback)
	}
	return u.Host, nil
}
