package mesh

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/canarylab/canarylab/orchestrator/analysis"
	"github.com/prometheus/client_golang/prometheus"
)

// TestTelemetryExposition: after known traffic the exposition has exactly
// those counts, with Istio's labels as the destination sidecar sets them.
func TestTelemetryExposition(t *testing.T) {
	primary := newBackend(t, nil)
	canary := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Fail") != "" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	cfg := testConfig(primary, canary)
	cfg.Source = "canarylab-load"
	cfg.Match = []analysis.HTTPMatchRequest{{Headers: map[string]analysis.StringMatch{"x-canary": {Exact: "1"}}}}
	rt := newRouter(t, cfg)
	url, client := serveRouter(t, rt)
	if err := rt.SetRoutes(0, 100, false); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if code, _ := get(t, client, url+"/"); code != 200 {
			t.Fatalf("primary answered %d", code)
		}
	}
	for i := range 30 {
		h := []string{"X-Canary", "1"}
		if i%3 == 0 {
			h = append(h, "X-Fail", "1")
		}
		get(t, client, url+"/", h...)
	}

	waitReported(t, rt, 130)
	fams := scrape(t, rt)
	want := []struct {
		workload, code string
		n              float64
	}{{primaryName, "200", 100}, {canaryName, "200", 20}, {canaryName, "500", 10}}
	for _, b := range DurationBuckets() {
		if _, ok := find(fams, MetricDuration, nil)[0].buckets[b]; !ok {
			t.Errorf("no bucket le=%v", b)
		}
	}
	if got := len(fams[MetricRequests]); got != len(want) {
		t.Errorf("%d istio_requests_total series, want %d: %+v", got, len(want), fams[MetricRequests])
	}
	for _, w := range want {
		full := map[string]string{
			"reporter":                       "destination",
			"source_workload":                "canarylab-load",
			"source_workload_namespace":      testNS,
			"source_principal":               "unknown",
			"source_app":                     "canarylab-load",
			"source_version":                 "unknown",
			"source_canonical_service":       "canarylab-load",
			"source_canonical_revision":      "latest",
			"source_cluster":                 "Kubernetes",
			"destination_workload":           w.workload,
			"destination_workload_namespace": testNS,
			"destination_principal":          "unknown",
			"destination_app":                w.workload,
			"destination_version":            "unknown",
			"destination_service":            "podinfo.test.svc.cluster.local",
			"destination_service_name":       "podinfo",
			"destination_service_namespace":  testNS,
			"destination_canonical_service":  w.workload,
			"destination_canonical_revision": "latest",
			"destination_cluster":            "Kubernetes",
			"request_protocol":               "http",
			"response_code":                  w.code,
			"grpc_response_status":           "",
			"response_flags":                 "-",
			"connection_security_policy":     "unknown",
		}
		got := find(fams, MetricRequests, lbl("destination_workload", w.workload, "response_code", w.code))
		if len(got) != 1 {
			t.Errorf("%s %s: %d series", w.workload, w.code, len(got))
			continue
		}
		if got[0].counter != w.n {
			t.Errorf("%s %s: istio_requests_total = %v, want %v", w.workload, w.code, got[0].counter, w.n)
		}
		for k, v := range full {
			if gv, ok := got[0].labels[k]; (!ok && v != "") || gv != v {
				t.Errorf("%s %s: label %s = %q, want %q", w.workload, w.code, k, gv, v)
			}
		}
		if len(got[0].labels) != len(labelNames) && len(got[0].labels) != len(labelNames)-1 {
			t.Errorf("labels %v, want %d", got[0].labels, len(labelNames))
		}
		h := find(fams, MetricDuration, lbl("destination_workload", w.workload, "response_code", w.code))
		if len(h) != 1 || float64(h[0].count) != w.n || len(h[0].buckets) != len(DurationBuckets())+1 {
			t.Errorf("%s %s: histogram %+v, want %v samples in Istio's buckets", w.workload, w.code, h, w.n)
		}
	}
	// Flagger's request-success-rate for the canary: 20 of 30 succeed.
	ok := requests(fams, lbl("destination_workload", canaryName, "response_code", "200"))
	all := requests(fams, lbl("destination_workload", canaryName))
	if rate := ok / all * 100; rate < 66.6 || rate > 66.7 {
		t.Errorf("success rate %.2f %%, want 66.67", rate)
	}
	c := rt.Counts()
	if c.Requests[primaryName]["200"] != 100 || c.Requests[canaryName]["200"] != 20 || c.Requests[canaryName]["500"] != 10 {
		t.Errorf("Counts %v", c.Requests)
	}
}

// TestUnknownSource: without Config.Source the source labels are Istio's
// "unknown".
func TestUnknownSource(t *testing.T) {
	primary, canary := newBackend(t, nil), newBackend(t, nil)
	rt := newRouter(t, testConfig(primary, canary))
	serveDirect(rt, httptest.NewRequest(http.MethodGet, "/", nil))
	s := find(scrape(t, rt), MetricRequests, nil)
	if len(s) != 1 {
		t.Fatalf("%d series", len(s))
	}
	for _, k := range []string{"source_workload", "source_workload_namespace", "source_app", "source_canonical_revision", "source_cluster"} {
		if s[0].labels[k] != "unknown" {
			t.Errorf("%s = %q, want unknown", k, s[0].labels[k])
		}
	}
}

// TestUpstreamFailures: Envoy's answers and reports for each way a backend
// or a client can fail.
func TestUpstreamFailures(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()

	tests := []struct {
		name      string
		reply     http.HandlerFunc
		backend   string // overrides the canary URL
		timeout   time.Duration
		clientTTL time.Duration
		status    int    // the client's; 0: the client gets no response (error)
		body      string // the client's
		code      string // reported
		flags     string
	}{
		{name: "reset", reply: func(w http.ResponseWriter, r *http.Request) { dropConn(w, true) },
			status: 503, body: bodyConnectTermination, code: "503", flags: "UC"},
		{name: "close", reply: func(w http.ResponseWriter, r *http.Request) { dropConn(w, false) },
			status: 503, body: bodyConnectTermination, code: "503", flags: "UC"},
		{name: "down", backend: downURL,
			status: 503, body: bodyConnectFailure, code: "503", flags: "UF"},
		{name: "truncate", reply: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "0123456789")
			_ = http.NewResponseController(w).Flush()
			dropConn(w, false)
		}, status: 0, code: "200", flags: "UC"},
		{name: "client leaves", reply: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			clientTTL: 50 * time.Millisecond, status: 0, code: "0", flags: "DC"},
		{name: "route timeout", reply: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			timeout: 50 * time.Millisecond, status: 504, body: bodyTimeout, code: "0", flags: "DC"},
		{name: "backend 503 is not a failure of the router", reply: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusServiceUnavailable)
		}, status: 503, code: "503", flags: "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			primary := newBackend(t, nil)
			canary := newBackend(t, tt.reply)
			cfg := testConfig(primary, canary)
			if tt.backend != "" {
				cfg.Canary.URL = tt.backend
			}
			cfg.Timeout = tt.timeout
			rt := newRouter(t, cfg)
			_ = rt.SetRoutes(0, 100, false)
			url, client := serveRouter(t, rt)

			ctx := context.Background()
			if tt.clientTTL > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.clientTTL)
				defer cancel()
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
			res, err := client.Do(req)
			status, body := 0, ""
			if err == nil {
				b, rerr := io.ReadAll(res.Body)
				_ = res.Body.Close()
				if rerr == nil {
					status, body = res.StatusCode, string(b)
				}
			}
			if status != tt.status || (tt.body != "" && body != tt.body) {
				t.Errorf("client got %d %q (err %v), want %d %q", status, body, err, tt.status, tt.body)
			}
			waitFor(t, "the report", func() bool { return rt.Counts().Total(canaryName) == 1 })
			c := rt.Counts()
			if c.Requests[canaryName][tt.code] != 1 {
				t.Errorf("reported %v, want code %s", c.Requests[canaryName], tt.code)
			}
			s := find(scrape(t, rt), MetricRequests, lbl("destination_workload", canaryName))
			if len(s) != 1 || s[0].labels["response_code"] != tt.code || s[0].labels["response_flags"] != tt.flags || s[0].counter != 1 {
				t.Errorf("exposition %+v, want one request %s %s", s, tt.code, tt.flags)
			}
		})
	}
}

// TestTruncatedWithoutServer: through ServeHTTP alone (no server, so the
// proxy does not abort with a panic) a truncated body is still reported UC.
func TestTruncatedWithoutServer(t *testing.T) {
	primary := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, "0123456789")
		_ = http.NewResponseController(w).Flush()
		dropConn(w, true)
	})
	rt := newRouter(t, testConfig(primary, newBackend(t, nil)))
	serveDirect(rt, httptest.NewRequest(http.MethodGet, "/", nil))
	if f := rt.Counts().Flags[primaryName]["UC"]; f != 1 {
		t.Errorf("flags %v, want one UC", rt.Counts().Flags)
	}
}

// TestNoHiddenRetry: a backend closing a reused keep-alive connection
// before answering gets a 503 UC, not a silent retry by net/http: the
// backend sees each request once, as behind Envoy.
func TestNoHiddenRetry(t *testing.T) {
	var served int
	primary := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		served++ // one connection at a time: requests are sequential
		if served%2 == 0 {
			dropConn(w, false) // the second request on each connection
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	rt := newRouter(t, testConfig(primary, newBackend(t, nil)))
	url, client := serveRouter(t, rt)
	const n = 20
	var ok, failed int
	for range n {
		code, _ := get(t, client, url+"/")
		switch code {
		case 200:
			ok++
		case 503:
			failed++
		}
	}
	if primary.n.Load() != n || ok != n/2 || failed != n/2 {
		t.Errorf("backend saw %d requests for %d sent; %d ok, %d 503", primary.n.Load(), n, ok, failed)
	}
	if f := rt.Counts().Flags[primaryName]["UC"]; f != n/2 {
		t.Errorf("%d UC reported, want %d", f, n/2)
	}
}

// TestDurationBucket: a backend taking 15 ms lands in le=25, not le=10
// (10 ms of slack for a loaded machine).
func TestDurationBucket(t *testing.T) {
	primary := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(15 * time.Millisecond)
		_, _ = io.WriteString(w, "slow")
	})
	rt := newRouter(t, testConfig(primary, newBackend(t, nil)))
	url, client := serveRouter(t, rt)
	get(t, client, url+"/")
	waitReported(t, rt, 1)
	h := find(scrape(t, rt), MetricDuration, lbl("destination_workload", primaryName))
	if len(h) != 1 {
		t.Fatalf("%d histogram series", len(h))
	}
	b := h[0].buckets
	if b[10] != 0 || b[25] != 1 || h[0].count != 1 {
		t.Errorf("buckets le=10: %d, le=25: %d (count %d); want 0, 1", b[10], b[25], h[0].count)
	}
}

// TestSharedRegistry: two Routers on one registry share its collectors,
// as one Prometheus sees every sidecar.
func TestSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	var routers []*Router
	for i := range 2 {
		p, c := newBackend(t, nil), newBackend(t, nil)
		cfg := testConfig(p, c)
		cfg.Namespace = "ns" + strconv.Itoa(i)
		cfg.Registry = reg
		routers = append(routers, newRouter(t, cfg))
	}
	for _, rt := range routers {
		serveDirect(rt, httptest.NewRequest(http.MethodGet, "/", nil))
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == MetricRequests && len(mf.GetMetric()) != 2 {
			t.Errorf("%d series in the shared registry, want 2", len(mf.GetMetric()))
		}
	}
	// A registry holding another metric of that name is refused.
	bad := prometheus.NewRegistry()
	bad.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: MetricRequests, Help: "x"}))
	cfg := testConfig(newBackend(t, nil), newBackend(t, nil))
	cfg.Registry = bad
	if _, err := New(cfg); err == nil {
		t.Error("New accepted a registry with a conflicting istio_requests_total")
	} else if !strings.Contains(err.Error(), "Config.Registry") {
		t.Errorf("error %q does not name Config.Registry", err)
	}
}

// TestForwarding: the backend gets the request as the client sent it, as
// behind Envoy: Host, headers, raw query, body; X-Forwarded-For appended;
// a GET still without a body on the wire.
func TestForwarding(t *testing.T) {
	primary := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", "1")
		w.Header().Set("Content-Encoding", "gzip") // passed through untouched
		_, _ = io.WriteString(w, "body")
	})
	primary.keep = true
	rt := newRouter(t, testConfig(primary, newBackend(t, nil)))
	url, client := serveRouter(t, rt)

	req, _ := http.NewRequest(http.MethodGet, url+"/path/a%2Fb?x=1;y=2&z", nil)
	req.Host = "podinfo.test:9898"
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Custom", "v")
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("X-Request-Id", "client-id")
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if string(body) != "body" || res.Header.Get("X-Backend") != "1" || res.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("client got %q %v", body, res.Header)
	}
	res, err = client.Post(url+"/p", "text/plain", strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()

	seen := primary.seen()
	if len(seen) != 2 {
		t.Fatalf("backend got %d requests", len(seen))
	}
	g := seen[0]
	want := map[string]string{
		"X-Forwarded-For":   "203.0.113.7, 127.0.0.1",
		"X-Forwarded-Proto": "https",
		"X-Custom":          "v",
		"Accept-Encoding":   "gzip",
		"X-Request-Id":      "client-id",
		"Content-Length":    "",
		"Transfer-Encoding": "",
	}
	for k, v := range want {
		if got := g.header.Get(k); got != v {
			t.Errorf("backend header %s = %q, want %q", k, got, v)
		}
	}
	if g.host != "podinfo.test:9898" || g.uri != "/path/a%2Fb?x=1;y=2&z" {
		t.Errorf("backend got host %q uri %q", g.host, g.uri)
	}
	if p := seen[1]; p.header.Get("Content-Length") != "0" || p.header.Get("X-Request-Id") == "" {
		t.Errorf("an empty POST arrived with Content-Length %q, X-Request-Id %q",
			p.header.Get("Content-Length"), p.header.Get("X-Request-Id"))
	}
}

// TestStreaming: a response is passed on chunk by chunk, not buffered.
func TestStreaming(t *testing.T) {
	next := make(chan struct{})
	primary := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "first\n")
		_ = http.NewResponseController(w).Flush()
		<-next
		_, _ = io.WriteString(w, "second\n")
	})
	rt := newRouter(t, testConfig(primary, newBackend(t, nil)))
	url, client := serveRouter(t, rt)
	res, err := client.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(res.Body, buf); err != nil || string(buf) != "first\n" {
		t.Fatalf("first chunk %q, %v", buf, err)
	}
	close(next)
	rest, _ := io.ReadAll(res.Body)
	if string(rest) != "second\n" {
		t.Errorf("rest %q", rest)
	}
}
