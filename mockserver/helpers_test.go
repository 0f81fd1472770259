package mockserver

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// regressed fails a test whose behaviour was once a bug: what describes
// the old bug, so a failure says what came back.
func regressed(t *testing.T, what string) {
	t.Helper()
	t.Error("regression: " + what)
}

// fakeClock is a Clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func seedPtr(v uint64) *uint64 { return &v }

// mustParse parses a YAML config or fails the test.
func mustParse(t testing.TB, doc string) Config {
	t.Helper()
	cfg, err := ParseConfig([]byte(doc))
	if err != nil {
		t.Fatalf("ParseConfig(%q): %v", doc, err)
	}
	return cfg
}

// newServer builds a server from a YAML config. Without a clock in opts it
// gets a fake one (returned), so no test depends on the wall clock by
// accident.
func newServer(t testing.TB, doc string, opts Options) (*Server, *fakeClock) {
	t.Helper()
	var fc *fakeClock
	if opts.Clock == nil {
		fc = newFakeClock()
		opts.Clock = fc
	}
	srv, err := New(mustParse(t, doc), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return srv, fc
}

// startServer listens on loopback and shuts the server down when the test
// ends.
func startServer(t testing.TB, srv *Server) *Running {
	t.Helper()
	run, err := Start(srv, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = run.Shutdown(ctx)
	})
	return run
}

// newClient is an HTTP/1.1 client that opens a fresh connection per request,
// so the transport never retries a request on a reused connection and each
// fault is seen exactly as the server sent it.
func newClient(t testing.TB, timeout time.Duration) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: timeout}
}

// do sends one request through h in process; headers come as name, value
// pairs.
func do(h http.Handler, method, target string, body io.Reader, headers ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, body)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// doAdmin sends a request to the admin API in process.
func doAdmin(srv *Server, method, target, body string, headers ...string) *httptest.ResponseRecorder {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	return do(srv.AdminHandler(), method, target, r, headers...)
}

// decodeJSON decodes a recorder's body or fails the test.
func decodeJSON[T any](t testing.TB, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %q: %v", rec.Body.String(), err)
	}
	return v
}

// sample is one series of a metric: its labels and its value (the sample
// count for a histogram).
type sample struct {
	labels map[string]string
	value  float64
}

// metricFamilies are scraped series by metric name.
type metricFamilies map[string][]sample

// parseMetrics reads the Prometheus text format.
func parseMetrics(t testing.TB, r io.Reader) metricFamilies {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("parse metrics: %v", err)
	}
	out := metricFamilies{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			s := sample{labels: map[string]string{}}
			for _, lp := range m.GetLabel() {
				s.labels[lp.GetName()] = lp.GetValue()
			}
			s.value = m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue() +
				float64(m.GetHistogram().GetSampleCount())
			out[name] = append(out[name], s)
		}
	}
	return out
}

// scrape reads the admin /metrics over HTTP.
func scrape(t testing.TB, run *Running) metricFamilies {
	t.Helper()
	resp, err := http.Get(run.AdminURL() + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: status %d", resp.StatusCode)
	}
	return parseMetrics(t, resp.Body)
}

// gather reads the admin /metrics in process.
func gather(t testing.TB, srv *Server) metricFamilies {
	t.Helper()
	rec := doAdmin(srv, http.MethodGet, "/metrics", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", rec.Code)
	}
	return parseMetrics(t, rec.Body)
}

// value sums the series of name whose labels include all of labels; -1
// when there is no such metric.
func (fams metricFamilies) value(name string, labels map[string]string) float64 {
	samples, ok := fams[name]
	if !ok {
		return -1
	}
	sum := 0.0
	for _, s := range samples {
		match := true
		for k, v := range labels {
			if s.labels[k] != v {
				match = false
				break
			}
		}
		if match {
			sum += s.value
		}
	}
	return sum
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
