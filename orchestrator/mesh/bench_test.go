package mesh

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
)

// The router's cost per request: compare BenchmarkDirect (client → backend)
// with BenchmarkRouter (client → router → backend) over loopback, in one
// process, so allocs/op of the pair differ by the router's own
// allocations (its handler, its outbound request and the extra connection
// pair).

func benchBackend(b *testing.B) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok")
	}))
	b.Cleanup(srv.Close)
	return srv
}

func benchClient(b *testing.B) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func benchGet(b *testing.B, c *http.Client, url string) {
	res, err := c.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b.Fatalf("status %d", res.StatusCode)
	}
}

// via is what stands between the client and the backend.
type via int

const (
	viaNothing via = iota
	viaRouter
	viaBareProxy // a plain httputil.ReverseProxy: the cost of the hop itself
)

func benchTarget(b *testing.B, v via) string {
	backend := benchBackend(b)
	switch v {
	case viaNothing:
		return backend.URL + "/"
	case viaBareProxy:
		u, _ := url.Parse(backend.URL)
		p := &httputil.ReverseProxy{
			Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(u) },
			Transport: newLoopbackTransport(),
		}
		srv := httptest.NewServer(p)
		b.Cleanup(srv.Close)
		return srv.URL + "/"
	}
	rt, err := New(Config{
		Namespace: testNS,
		Primary:   Backend{Workload: primaryName, URL: backend.URL},
		Canary:    Backend{Workload: canaryName, URL: backend.URL},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rt.Close() })
	if err := rt.SetRoutes(90, 10, false); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(rt)
	b.Cleanup(srv.Close)
	return srv.URL + "/"
}

func benchSerial(b *testing.B, v via) {
	url := benchTarget(b, v)
	c := benchClient(b)
	benchGet(b, c, url)
	b.ReportAllocs()
	for b.Loop() {
		benchGet(b, c, url)
	}
}

func benchParallel(b *testing.B, v via) {
	url := benchTarget(b, v)
	c := benchClient(b)
	b.ReportAllocs()
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			benchGet(b, c, url)
		}
	})
}

// BenchmarkDirect is one client sending to the backend.
func BenchmarkDirect(b *testing.B) { benchSerial(b, viaNothing) }

// BenchmarkRouter is the same through the router at 90/10.
func BenchmarkRouter(b *testing.B) { benchSerial(b, viaRouter) }

// BenchmarkBareProxy is the same through a plain ReverseProxy.
func BenchmarkBareProxy(b *testing.B) { benchSerial(b, viaBareProxy) }

// BenchmarkDirectParallel and BenchmarkRouterParallel are the same with
// 4×GOMAXPROCS concurrent clients (throughput).
func BenchmarkDirectParallel(b *testing.B) { benchParallel(b, viaNothing) }

func BenchmarkRouterParallel(b *testing.B) { benchParallel(b, viaRouter) }
