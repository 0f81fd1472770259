package mockserver_test

// Benchmarks of the mock server's hot path, in process.
//
//	go test -run='^$' -bench=. -benchmem ./mockserver/
//
// Two harnesses, each with a bare net/http baseline that writes the same
// body and headers, so the mock's own cost is the difference:
//
//   - Recorder: the handler alone, called with an httptest.ResponseRecorder
//     (the recorder's own allocations are in both the baseline and the mock).
//   - Loopback: a real HTTP/1.1 keep-alive round trip on 127.0.0.1, client
//     included, with the same http.Server settings the mock command uses.
//
// The load-generator comparison against other servers is bench/mockserver.sh.

import (
	"github.com/canarylab/canarylab/bench/bare"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/canarylab/canarylab/mockserver"
	"github.com/canarylab/canarylab/mockserver/behavior"
)

func benchNewMock(b *testing.B, cfg mockserver.Config) http.Handler {
	b.Helper()
	seed := uint64(1)
	s, err := mockserver.New(cfg, mockserver.Options{Seed: &seed})
	if err != nil {
		b.Fatal(err)
	}
	return s.Handler()
}

func benchErrorsConfig(b *testing.B) mockserver.Config {
	b.Helper()
	e, err := behavior.ParseErrors("503:0.1")
	if err != nil {
		b.Fatal(err)
	}
	return mockserver.Config{Profile: behavior.Profile{Errors: &e}}
}

// benchRulesConfig has several routes and rules, the request under test matching
// the second route and only the last rule (so every rule is tried), whose
// profile injects 503s at 10 % and no delay.
func benchRulesConfig(b *testing.B) mockserver.Config {
	b.Helper()
	e, err := behavior.ParseErrors("503:0.1")
	if err != nil {
		b.Fatal(err)
	}
	// The first two rules do not match the request under test; their
	// delays are never served.
	slow, err := behavior.ParseLatency("20ms")
	if err != nil {
		b.Fatal(err)
	}
	delayed := behavior.Profile{Latency: &slow}
	return mockserver.Config{
		Routes: []mockserver.Route{
			{Path: "/healthz", Bypass: true},
			{Path: "/api/users/:id", Method: "GET", Name: "user",
				Headers: map[string]string{"Cache-Control": "no-store"},
				Body:    `{"id":1,"name":"ada"}` + "\n"},
			{Path: "/api/orders/*", Name: "orders", BodySize: 512},
			{Path: "/*", Name: "other"},
		},
		Rules: []mockserver.Rule{
			{Name: "beta-header", When: mockserver.Match{Headers: map[string]string{"X-Beta": "1"}}, Profile: delayed},
			{Name: "slow-orders", When: mockserver.Match{Path: "/api/orders/*"}, Profile: delayed},
			{Name: "users", When: mockserver.Match{Methods: []string{"GET"}, Path: "/api/users/*"}, Profile: behavior.Profile{Errors: &e}},
		},
	}
}

// benchRecorder calls h once per iteration with a fresh recorder.
func benchRecorder(b *testing.B, h http.Handler, target string) {
	b.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK && w.Code != http.StatusServiceUnavailable {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// benchRecorderParallel is benchRecorder on every P, to show contention on
// the server's shared state (random source, counters, metrics).
func benchRecorderParallel(b *testing.B, h http.Handler, target string) {
	b.Helper()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
		}
	})
}

func BenchmarkBaselineRecorder(b *testing.B) {
	benchRecorder(b, bare.Handler(), "/")
}

func BenchmarkMockRecorderNoFaults(b *testing.B) {
	h := benchNewMock(b, mockserver.Config{})
	benchSameAnswer(b, h, bare.Handler())
	benchRecorder(b, h, "/")
}

// benchSameAnswer checks that the baseline still writes what the mock
// writes by default, so that the two stay comparable.
func benchSameAnswer(b *testing.B, mock, baseline http.Handler) {
	b.Helper()
	serve := func(h http.Handler) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
		return w
	}
	m, bl := serve(mock), serve(baseline)
	if m.Code != bl.Code || m.Body.String() != bl.Body.String() {
		b.Fatalf("mock answers %d %q, baseline %d %q", m.Code, m.Body, bl.Code, bl.Body)
	}
	for k := range bl.Header() {
		if m.Header().Get(k) != bl.Header().Get(k) {
			b.Fatalf("header %s: mock %q, baseline %q", k, m.Header().Get(k), bl.Header().Get(k))
		}
	}
	if len(m.Header()) != len(bl.Header()) {
		b.Fatalf("mock headers %v, baseline headers %v", m.Header(), bl.Header())
	}
}

func BenchmarkMockRecorderErrors(b *testing.B) {
	benchRecorder(b, benchNewMock(b, benchErrorsConfig(b)), "/")
}

func BenchmarkMockRecorderRulesRoutes(b *testing.B) {
	benchRecorder(b, benchNewMock(b, benchRulesConfig(b)), "/api/users/42")
}

// A query string that holds no request-driven parameter: the common case
// of real traffic replayed against the mock.
func BenchmarkMockRecorderQuery(b *testing.B) {
	benchRecorder(b, benchNewMock(b, mockserver.Config{}), "/search?q=canary&page=2&sort=asc")
}

func BenchmarkBaselineRecorderParallel(b *testing.B) {
	benchRecorderParallel(b, bare.Handler(), "/")
}

func BenchmarkMockRecorderNoFaultsParallel(b *testing.B) {
	benchRecorderParallel(b, benchNewMock(b, mockserver.Config{}), "/")
}

// benchStartLoopback serves h on 127.0.0.1 with the mock command's server
// settings and returns its URL and a keep-alive client.
func benchStartLoopback(b *testing.B, h http.Handler) (string, *http.Client) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: mockserver.DefaultReadHeaderTimeout,
		IdleTimeout:       mockserver.DefaultIdleTimeout,
	}
	go func() { _ = srv.Serve(ln) }()
	tr := &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64, DisableCompression: true}
	b.Cleanup(func() {
		tr.CloseIdleConnections()
		_ = srv.Close()
	})
	return "http://" + ln.Addr().String(), &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// benchLoopback runs keep-alive GETs from GOMAXPROCS client goroutines.
func benchLoopback(b *testing.B, h http.Handler, path string) {
	b.Helper()
	base, client := benchStartLoopback(b, h)
	url := base + path
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
	})
}

func BenchmarkBaselineLoopback(b *testing.B) {
	benchLoopback(b, bare.Handler(), "/")
}

func BenchmarkMockLoopbackNoFaults(b *testing.B) {
	benchLoopback(b, benchNewMock(b, mockserver.Config{}), "/")
}

func BenchmarkMockLoopbackErrors(b *testing.B) {
	benchLoopback(b, benchNewMock(b, benchErrorsConfig(b)), "/")
}

func BenchmarkMockLoopbackRulesRoutes(b *testing.B) {
	benchLoopback(b, benchNewMock(b, benchRulesConfig(b)), "/api/users/42")
}
