package mesh

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMirror: every request is answered by the primary; the canary gets a
// copy of each (Host suffixed -shadow, same headers, body and request id)
// and its sidecar reports them.
func TestMirror(t *testing.T) {
	primary := newBackend(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "primary") })
	canary := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError) // the client must never see this
		_, _ = io.WriteString(w, "canary")
	})
	canary.keep = true
	rt := newRouter(t, testConfig(primary, canary))
	url, client := serveRouter(t, rt)
	if err := rt.SetRoutes(100, 0, true); err != nil {
		t.Fatal(err)
	}
	if _, _, m := rt.GetRoutes(); !m {
		t.Fatal("GetRoutes: not mirrored")
	}

	const n = 40
	for i := range n {
		var res *http.Response
		var err error
		if i%2 == 0 {
			req, _ := http.NewRequest(http.MethodGet, url+"/items?i=1", nil)
			req.Host = "podinfo.test:9898"
			req.Header.Set("X-User", "alice")
			res, err = client.Do(req)
		} else {
			res, err = client.Post(url+"/items", "text/plain", strings.NewReader("payload"))
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		if res.StatusCode != http.StatusOK || string(body) != "primary" {
			t.Fatalf("request %d answered %d %q, want the primary's 200", i, res.StatusCode, body)
		}
	}
	waitFor(t, "the mirrored copies", func() bool { return canary.n.Load() == n })
	waitFor(t, "the copies' telemetry", func() bool { return rt.Counts().Total(canaryName) == n })

	for i, r := range canary.seen() {
		switch {
		case r.body == "":
			if r.host != "podinfo.test-shadow:9898" || r.header.Get("X-User") != "alice" || r.uri != "/items?i=1" {
				t.Errorf("copy %d: host %q, X-User %q, uri %q", i, r.host, r.header.Get("X-User"), r.uri)
			}
		default:
			if !strings.Contains(r.host, "-shadow:") || r.body != "payload" {
				t.Errorf("copy %d: host %q body %q", i, r.host, r.body)
			}
		}
		if r.header.Get("X-Request-Id") == "" || r.header.Get("X-Forwarded-For") == "" {
			t.Errorf("copy %d lacks x-request-id or x-forwarded-for: %v", i, r.header)
		}
	}
	c := rt.Counts()
	if c.Mirrored != n || c.Requests[canaryName]["500"] != n || c.Requests[primaryName]["200"] != n {
		t.Errorf("Counts %+v, want %d mirrored, %d canary 500s, %d primary 200s", c, n, n, n)
	}
	fams := scrape(t, rt)
	if got := requests(fams, lbl("destination_workload", canaryName, "response_code", "500", "reporter", "destination")); got != n {
		t.Errorf("istio_requests_total for the canary = %v, want %d", got, n)
	}

	// Turning the mirror off stops the copies.
	if err := rt.SetRoutes(100, 0, false); err != nil {
		t.Fatal(err)
	}
	get(t, client, url+"/")
	waitMirrors(t, rt)
	if canary.n.Load() != n {
		t.Errorf("the canary got %d requests after the mirror was removed", canary.n.Load()-n)
	}
}

// TestMirrorSameRequestID: the copy carries the original's x-request-id,
// as Envoy's shadow does.
func TestMirrorSameRequestID(t *testing.T) {
	primary, canary := newBackend(t, nil), newBackend(t, nil)
	primary.keep, canary.keep = true, true
	rt := newRouter(t, testConfig(primary, canary))
	_ = rt.SetRoutes(100, 0, true)
	serveDirect(rt, httptest.NewRequest(http.MethodGet, "/", nil))
	waitMirrors(t, rt)
	p, c := primary.seen(), canary.seen()
	if len(p) != 1 || len(c) != 1 {
		t.Fatalf("primary got %d, canary %d", len(p), len(c))
	}
	if id := p[0].header.Get("X-Request-Id"); id == "" || id != c[0].header.Get("X-Request-Id") {
		t.Errorf("request ids %q and %q", id, c[0].header.Get("X-Request-Id"))
	}
}

// TestMirrorWeight: MirrorWeight is the share mirrored.
func TestMirrorWeight(t *testing.T) {
	primary, canary := newBackend(t, nil), newBackend(t, nil)
	cfg := testConfig(primary, canary)
	cfg.MirrorWeight = 25
	rt := newRouter(t, cfg)
	_ = rt.SetRoutes(100, 0, true)
	const n = 2000
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range n / 8 {
				serveDirect(rt, httptest.NewRequest(http.MethodGet, "/", nil))
			}
		})
	}
	wg.Wait()
	waitMirrors(t, rt)
	got := float64(canary.n.Load())
	if mean, sigma := 0.25*n, math.Sqrt(n*0.25*0.75); math.Abs(got-mean) > 4*sigma {
		t.Errorf("mirrored %v of %d at MirrorWeight 25, want %v ± %.0f", got, n, mean, 4*sigma)
	}
	if primary.n.Load() != n {
		t.Errorf("primary got %d, want %d", primary.n.Load(), n)
	}
}

// TestMirrorBodyLimit: a body over the limit reaches the primary whole and
// is not mirrored.
func TestMirrorBodyLimit(t *testing.T) {
	primary, canary := newBackend(t, nil), newBackend(t, nil)
	primary.keep = true
	cfg := testConfig(primary, canary)
	cfg.MirrorBodyLimit = 1000
	rt := newRouter(t, cfg)
	_ = rt.SetRoutes(100, 0, true)

	big := strings.Repeat("x", 5000)
	// Known length over the limit, and unknown length (chunked) over it.
	serveDirect(rt, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(big)))
	chunked := httptest.NewRequest(http.MethodPost, "/", io.MultiReader(strings.NewReader(big)))
	chunked.ContentLength = -1
	serveDirect(rt, chunked)
	serveDirect(rt, httptest.NewRequest(http.MethodPost, "/", strings.NewReader("small")))
	waitMirrors(t, rt)

	if canary.n.Load() != 1 {
		t.Errorf("canary got %d copies, want 1 (the small body)", canary.n.Load())
	}
	for i, r := range primary.seen() {
		if want := []string{big, big, "small"}[i]; r.body != want {
			t.Errorf("primary request %d: body of %d bytes, want %d", i, len(r.body), len(want))
		}
	}
	if c := rt.Counts(); c.Mirrored != 1 || c.MirrorsSkipped != 2 {
		t.Errorf("Mirrored %d, MirrorsSkipped %d, want 1 and 2", c.Mirrored, c.MirrorsSkipped)
	}
}

// TestMirrorNeverBlocks: a canary that hangs neither delays the answers
// nor piles up more copies than MirrorConcurrency.
func TestMirrorNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	primary := newBackend(t, nil)
	canary := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	cfg := testConfig(primary, canary)
	cfg.MirrorConcurrency = 4
	rt := newRouter(t, cfg)
	_ = rt.SetRoutes(100, 0, true)
	start := time.Now()
	for range 20 {
		if rec := serveDirect(rt, httptest.NewRequest(http.MethodGet, "/", nil)); rec.Code != http.StatusOK {
			t.Fatalf("status %d", rec.Code)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("20 requests took %v behind a hanging mirror", d)
	}
	c := rt.Counts()
	if c.Mirrored != 4 || c.MirrorsSkipped != 16 {
		t.Errorf("Mirrored %d, MirrorsSkipped %d, want 4 and 16", c.Mirrored, c.MirrorsSkipped)
	}
	defer close(release)
	// Close gives up on the copies in flight; the canary's sidecar sees
	// them go away.
	done := make(chan struct{})
	go func() { _ = rt.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a hanging canary")
	}
	if got := rt.Counts(); got.Requests[canaryName]["0"] != 4 || got.Flags[canaryName]["DC"] != 4 {
		t.Errorf("canary reported %v %v, want 4 × 0 DC", got.Requests[canaryName], got.Flags[canaryName])
	}
}

func TestShadowHost(t *testing.T) {
	for in, want := range map[string]string{
		"podinfo":           "podinfo-shadow",
		"podinfo.test:9898": "podinfo.test-shadow:9898",
		"[::1]:80":          "[::1]-shadow:80",
		"[::1]":             "[::1]-shadow",
	} {
		if got := shadowHost(in); got != want {
			t.Errorf("shadowHost(%q) = %q, want %q", in, got, want)
		}
	}
}
