package mesh

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const (
	testNS      = "test"
	primaryName = "podinfo-primary"
	canaryName  = "podinfo"
)

// backend is a loopback test server that counts what it got.
type testBackend struct {
	*httptest.Server
	n     atomic.Int64
	mu    sync.Mutex
	reqs  []seenRequest
	keep  bool // record every request
	reply http.HandlerFunc
}

type seenRequest struct {
	host   string
	header http.Header
	body   string
	uri    string
}

// newBackend starts a backend answering with reply (nil: 200 "ok").
func newBackend(t testing.TB, reply http.HandlerFunc) *testBackend {
	t.Helper()
	b := &testBackend{reply: reply}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.n.Add(1)
		if b.keep {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			b.mu.Lock()
			b.reqs = append(b.reqs, seenRequest{host: r.Host, header: r.Header.Clone(), body: string(body), uri: r.RequestURI})
			b.mu.Unlock()
		}
		if b.reply != nil {
			b.reply(w, r)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *testBackend) seen() []seenRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]seenRequest(nil), b.reqs...)
}

// dropConn takes the connection from net/http and closes it, with an RST
// when reset is set: the mock server's reset and close faults.
func dropConn(w http.ResponseWriter, reset bool) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok && reset {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

func testConfig(primary, canary *testBackend) Config {
	return Config{
		Namespace: testNS,
		Primary:   Backend{Workload: primaryName, URL: primary.URL},
		Canary:    Backend{Workload: canaryName, URL: canary.URL},
		Seed:      1,
	}
}

func newRouter(t testing.TB, cfg Config) *Router {
	t.Helper()
	rt, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	return rt
}

// serveRouter puts rt on a loopback server and returns its URL and a
// client for it.
func serveRouter(t testing.TB, rt *Router) (string, *http.Client) {
	t.Helper()
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return srv.URL, &http.Client{Transport: tr}
}

// get sends a GET with headers through the client and returns the status
// and body.
func get(t testing.TB, c *http.Client, url string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	body, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	return res.StatusCode, string(body)
}

// serveDirect runs one request through rt's ServeHTTP, without a client
// connection.
func serveDirect(rt *Router, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	rt.ServeHTTP(rec, req)
	return rec
}

// waitFor polls cond for up to 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sample is one series of a scraped family.
type sample struct {
	labels  map[string]string
	counter float64
	count   uint64             // histogram sample count
	buckets map[float64]uint64 // histogram cumulative counts by upper bound
}

// waitReported waits until rt has reported n requests in all: a client
// can read the whole response before the router's handler returns.
func waitReported(t testing.TB, rt *Router, n uint64) {
	t.Helper()
	waitFor(t, "the reports", func() bool {
		c := rt.Counts()
		return c.Total(primaryName)+c.Total(canaryName) >= n
	})
}

// waitMirrors waits for rt's mirrored requests in flight.
func waitMirrors(t testing.TB, rt *Router) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rt.WaitMirrors(ctx); err != nil {
		t.Fatal(err)
	}
}

// scrape reads the Router's exposition through MetricsHandler, by family.
func scrape(t testing.TB, rt *Router) map[string][]sample {
	t.Helper()
	srv := httptest.NewServer(rt.MetricsHandler())
	defer srv.Close()
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer res.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	out := map[string][]sample{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			s := sample{labels: map[string]string{}, counter: m.GetCounter().GetValue(), buckets: map[float64]uint64{}}
			for _, lp := range m.GetLabel() {
				s.labels[lp.GetName()] = lp.GetValue()
			}
			if h := m.GetHistogram(); h != nil {
				s.count = h.GetSampleCount()
				for _, b := range h.GetBucket() {
					s.buckets[b.GetUpperBound()] = b.GetCumulativeCount()
				}
			}
			out[name] = append(out[name], s)
		}
	}
	return out
}

// find returns the series of family name whose labels include want.
func find(fams map[string][]sample, name string, want map[string]string) []sample {
	var out []sample
next:
	for _, s := range fams[name] {
		for k, v := range want {
			if s.labels[k] != v {
				continue next
			}
		}
		out = append(out, s)
	}
	return out
}

// requests sums istio_requests_total over the series matching want.
func requests(fams map[string][]sample, want map[string]string) float64 {
	var v float64
	for _, s := range find(fams, MetricRequests, want) {
		v += s.counter
	}
	return v
}

func lbl(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}
