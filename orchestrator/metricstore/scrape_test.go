package metricstore

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/promql"
)

// podMetrics is a client_golang registry like the one a canarylab mock
// pod exposes.
type podMetrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  prometheus.Histogram
}

func newPodMetrics() *podMetrics {
	m := &podMetrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total", Help: "Requests by status code.",
		}, []string{"code"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "http_request_duration_seconds", Help: "Request latency.",
			Buckets: []float64{0.1, 0.5, 1},
		}),
	}
	// Exposes its own job and instance labels, which the target's must
	// displace to exported_job and exported_instance.
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "build_info", Help: "Build.", ConstLabels: prometheus.Labels{"instance": "exposed-instance"},
	}, []string{"job"})
	info.WithLabelValues("exposed-job").Set(1)
	m.reg.MustRegister(m.requests, m.latency, info)
	return m
}

func vectorOf(t *testing.T, s *Store, q string, at time.Time) promql.Vector {
	t.Helper()
	v, err := s.QueryVector(context.Background(), q, at)
	if err != nil {
		t.Fatalf("QueryVector(%q): %v", q, err)
	}
	return v
}

func queryValue(t *testing.T, s *Store, q string, at time.Time) float64 {
	t.Helper()
	v, err := s.Query(context.Background(), q, at)
	if err != nil {
		t.Fatalf("Query(%q): %v", q, err)
	}
	return v
}

func TestScrapeClientGolangRegistry(t *testing.T) {
	m := newPodMetrics()
	srv := httptest.NewServer(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	s := openTestStore(t, Options{})
	ctx := context.Background()
	instance := strings.TrimPrefix(srv.URL, "http://")
	target := ScrapeTarget{Job: "podinfo", URL: srv.URL + "/metrics", Labels: map[string]string{
		"pod": "podinfo-7d9c", "__meta_ignored": "x", "empty": "",
	}}

	m.requests.WithLabelValues("200").Add(1000)
	m.requests.WithLabelValues("500").Add(10)
	for range 100 {
		m.latency.Observe(0.2)
	}
	n, err := s.Scrape(ctx, target, t0)
	if err != nil {
		t.Fatal(err)
	}
	// 2 counters + histogram (4 buckets, _sum, _count) + build_info.
	if n != 9 {
		t.Errorf("first scrape appended %d samples, want 9", n)
	}
	m.requests.WithLabelValues("200").Add(50)
	for range 50 {
		m.latency.Observe(0.7)
	}
	if _, err := s.Scrape(ctx, target, t0.Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(5 * time.Second)

	// Window (t0-5s, t0+5s] holds 1000 and 1050, 5 s apart. Prometheus
	// extrapolates to the window start because the gap (5 s) is below
	// 1.1 × the average spacing (the counter's zero point, 100 s back, does
	// not limit it): increase = 50 × (5+5)/5 = 100 over 10 s = 10/s.
	if got := queryValue(t, s, `rate(http_requests_total{code="200"}[10s])`, at); got != 10 {
		t.Errorf("rate = %v, want 10", got)
	}
	if got := queryValue(t, s, `sum(rate(http_requests_total{code="500"}[10s]))`, at); got != 0 {
		t.Errorf("rate of the unchanged 500 counter = %v, want 0", got)
	}
	// The second scrape's 50 observations all landed in (0.5, 1]; rank
	// 0.5 × 50 = 25 of 50 → 0.5 + 0.5 × 25/50 = 0.75.
	if got := queryValue(t, s, `histogram_quantile(0.5, sum(rate(http_request_duration_seconds_bucket[10s])) by (le))`, at); math.Abs(got-0.75) > 1e-9 {
		t.Errorf("median latency = %v, want 0.75", got)
	}

	v := vectorOf(t, s, `http_requests_total{code="200"}`, at)
	if len(v) != 1 {
		t.Fatalf("got %d series, want 1: %v", len(v), v)
	}
	want := map[string]string{"__name__": "http_requests_total", "code": "200", "job": "podinfo", "instance": instance, "pod": "podinfo-7d9c"}
	if got := v[0].Metric.Map(); !mapsEqual(got, want) {
		t.Errorf("labels %v, want %v", got, want)
	}
	v = vectorOf(t, s, `build_info`, at)
	want = map[string]string{"__name__": "build_info", "job": "podinfo", "instance": instance, "pod": "podinfo-7d9c",
		"exported_job": "exposed-job", "exported_instance": "exposed-instance"}
	if len(v) != 1 || !mapsEqual(v[0].Metric.Map(), want) {
		t.Errorf("build_info = %v, want labels %v", v, want)
	}
	v = vectorOf(t, s, `up`, at)
	want = map[string]string{"__name__": "up", "job": "podinfo", "instance": instance, "pod": "podinfo-7d9c"}
	if len(v) != 1 || v[0].F != 1 || !mapsEqual(v[0].Metric.Map(), want) {
		t.Errorf("up = %v, want 1 with labels %v", v, want)
	}
	if got := queryValue(t, s, `scrape_samples_scraped{job="podinfo"}`, at); got != 9 {
		t.Errorf("scrape_samples_scraped = %v, want 9", got)
	}
	if got := queryValue(t, s, `scrape_series_added{job="podinfo"}`, at); got != 0 {
		t.Errorf("scrape_series_added on the second scrape = %v, want 0", got)
	}

	// The target goes away: up drops to 0 and its series go stale at
	// once instead of lingering for the 5m lookback.
	srv.Close()
	down := t0.Add(10 * time.Second)
	if n, err := s.Scrape(ctx, target, down); err == nil || n != 0 {
		t.Errorf("scraping a stopped target = (%d, %v), want an error", n, err)
	}
	if got := queryValue(t, s, `up{job="podinfo"}`, down); got != 0 {
		t.Errorf("up after the target stopped = %v, want 0", got)
	}
	if v := vectorOf(t, s, `http_requests_total`, down); len(v) != 0 {
		t.Errorf("series of a down target are not stale: %v", v)
	}
	if v := vectorOf(t, s, `http_requests_total`, down.Add(-time.Millisecond)); len(v) != 2 {
		t.Errorf("just before going down, %d series, want 2", len(v))
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func TestScrapeSeriesDisappearing(t *testing.T) {
	m := newPodMetrics()
	srv := httptest.NewServer(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	s := openTestStore(t, Options{})
	target := ScrapeTarget{Job: "j", Instance: "i", URL: srv.URL}
	m.requests.WithLabelValues("503").Inc()
	if _, err := s.Scrape(context.Background(), target, t0); err != nil {
		t.Fatal(err)
	}
	m.requests.Reset()
	m.requests.WithLabelValues("200").Inc()
	if _, err := s.Scrape(context.Background(), target, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	v := vectorOf(t, s, `http_requests_total`, t0.Add(time.Second))
	if len(v) != 1 || v[0].Metric.Get("code") != "200" {
		t.Errorf("after code 503 vanished, got %v, want only code 200", v)
	}
	if got := queryValue(t, s, `scrape_series_added`, t0.Add(time.Second)); got != 1 {
		t.Errorf("scrape_series_added = %v, want 1", got)
	}
}

func TestScrapeFormatsAndFailures(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		status      int
		body        string
		wantUp      float64
		wantQuery   string // must then have one series with value wantValue
		wantValue   float64
	}{
		{
			name:        "OpenMetrics text",
			contentType: "application/openmetrics-text; version=1.0.0; charset=utf-8",
			body:        "# TYPE jobs counter\n# HELP jobs Jobs.\njobs_total{kind=\"a\"} 5\n# EOF\n",
			wantUp:      1, wantQuery: `jobs_total{kind="a"}`, wantValue: 5,
		},
		{
			name:        "summary in the text format",
			contentType: "text/plain; version=0.0.4; charset=utf-8",
			body:        "# TYPE rpc summary\nrpc{quantile=\"0.5\"} 0.2\nrpc{quantile=\"0.99\"} 0.9\nrpc_sum 12\nrpc_count 40\n",
			wantUp:      1, wantQuery: `rpc{quantile="0.99"}`, wantValue: 0.9,
		},
		{
			name:        "no Content-Type falls back to the text format",
			contentType: "",
			body:        "plain 3\n",
			wantUp:      1, wantQuery: `plain`, wantValue: 3,
		},
		{
			name:        "exposed timestamps are ignored",
			contentType: "text/plain; version=0.0.4",
			body:        "stamped 4 1000\n",
			wantUp:      1, wantQuery: `stamped`, wantValue: 4,
		},
		{name: "HTTP 500", status: http.StatusInternalServerError, body: "boom", wantUp: 0},
		{name: "parse error", contentType: "text/plain; version=0.0.4", body: "not a { valid line\n", wantUp: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.contentType != "" {
					w.Header().Set("Content-Type", tt.contentType)
				} else {
					w.Header()["Content-Type"] = nil // no sniffing
				}
				if tt.status != 0 {
					w.WriteHeader(tt.status)
				}
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			s := openTestStore(t, Options{})
			_, err := s.Scrape(context.Background(), ScrapeTarget{Job: "j", URL: srv.URL}, t0)
			if (err == nil) != (tt.wantUp == 1) {
				t.Errorf("Scrape error %v with up %v", err, tt.wantUp)
			}
			if got := queryValue(t, s, `up`, t0); got != tt.wantUp {
				t.Errorf("up = %v, want %v", got, tt.wantUp)
			}
			if tt.wantQuery != "" {
				if got := queryValue(t, s, tt.wantQuery, t0); got != tt.wantValue {
					t.Errorf("%s = %v, want %v", tt.wantQuery, got, tt.wantValue)
				}
			}
		})
	}
}

func TestScrapeRefusesNonLoopback(t *testing.T) {
	s := openTestStore(t, Options{})
	for _, u := range []string{
		"http://10.1.2.3:9090/metrics",
		"http://192.168.0.10/metrics",
		"http://example.com/metrics",
		"http://[2001:db8::1]:8080/metrics",
		"http://localhost.example.com/metrics",
		"http://0.0.0.0:8080/metrics",
	} {
		_, err := s.Scrape(context.Background(), ScrapeTarget{Job: "j", URL: u}, t0)
		if !errors.Is(err, ErrNotLoopback) {
			t.Errorf("Scrape(%s): %v, want ErrNotLoopback", u, err)
		}
	}
	if _, err := s.Scrape(context.Background(), ScrapeTarget{Job: "j", URL: "file:///etc/passwd"}, t0); err == nil {
		t.Error("file URL accepted")
	}
	// Nothing was stored for refused targets, not even up.
	if v := vectorOf(t, s, `up`, t0); len(v) != 0 {
		t.Errorf("refused scrapes stored %v", v)
	}
}

func TestScrapeAcceptsLoopbackNames(t *testing.T) {
	m := newPodMetrics()
	srv := httptest.NewServer(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	s := openTestStore(t, Options{})
	for i, host := range []string{"127.0.0.1", "localhost", "LOCALHOST"} {
		target := ScrapeTarget{Job: "j", Instance: host, URL: "http://" + host + ":" + u.Port() + "/metrics"}
		if _, err := s.Scrape(context.Background(), target, t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Errorf("Scrape(%s): %v", target.URL, err)
		}
	}
}

func TestScrapeRefusesRedirectOffLoopback(t *testing.T) {
	srv := httptest.NewServer(http.RedirectHandler("http://203.0.113.9/metrics", http.StatusFound))
	defer srv.Close()
	s := openTestStore(t, Options{})
	_, err := s.Scrape(context.Background(), ScrapeTarget{Job: "j", URL: srv.URL}, t0)
	if !errors.Is(err, ErrNotLoopback) {
		t.Errorf("redirect off loopback: %v, want ErrNotLoopback", err)
	}
	if got := queryValue(t, s, `up`, t0); got != 0 {
		t.Errorf("up = %v, want 0", got)
	}
}

func TestScrapeCanceledOrTimedOut(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers
	}))
	defer srv.Close()
	s := openTestStore(t, Options{})
	target := ScrapeTarget{Job: "j", URL: srv.URL}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Scrape(ctx, target, t0); err == nil {
		t.Error("canceled scrape succeeded")
	}
	if v := vectorOf(t, s, `up`, t0); len(v) != 0 {
		t.Errorf("a canceled scrape stored %v", v)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.Scrape(ctx, target, t0.Add(time.Second)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timed-out scrape: %v, want context.DeadlineExceeded", err)
	}
	if got := queryValue(t, s, `up`, t0.Add(time.Second)); got != 0 {
		t.Errorf("up after a timeout = %v, want 0", got)
	}
}
