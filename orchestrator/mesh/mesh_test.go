package mesh

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canarylab/canarylab/orchestrator/analysis"
)

func TestNewValidates(t *testing.T) {
	good := Config{
		Namespace: testNS,
		Primary:   Backend{Workload: primaryName, URL: "http://127.0.0.1:8080"},
		Canary:    Backend{Workload: canaryName, URL: "http://[::1]:8081/"},
	}
	tests := []struct {
		name   string
		modify func(*Config)
		want   string // substring of the error; "" means valid
	}{
		{"good", func(*Config) {}, ""},
		{"no namespace", func(c *Config) { c.Namespace = "" }, "Config.Namespace: empty"},
		{"bad namespace", func(c *Config) { c.Namespace = "Test" }, `Config.Namespace "Test"`},
		{"no workload", func(c *Config) { c.Canary.Workload = "" }, "Config.Canary.Workload: empty"},
		{"same workloads", func(c *Config) { c.Canary.Workload = primaryName }, "the same as Config.Primary.Workload"},
		{"not a URL", func(c *Config) { c.Canary.URL = "x" },
			`mesh: Config.Canary.URL "x": must be an http URL on this machine (127.0.0.1, ::1)`},
		{"remote host", func(c *Config) { c.Primary.URL = "http://10.0.0.1:80" }, `Config.Primary.URL "http://10.0.0.1:80"`},
		{"host name", func(c *Config) { c.Primary.URL = "http://localhost:80" }, "Config.Primary.URL"},
		{"https", func(c *Config) { c.Primary.URL = "https://127.0.0.1:80" }, "Config.Primary.URL"},
		{"no port", func(c *Config) { c.Primary.URL = "http://127.0.0.1" }, "a port is required"},
		{"path", func(c *Config) { c.Primary.URL = "http://127.0.0.1:80/api" }, "Config.Primary.URL"},
		{"mirror weight", func(c *Config) { c.MirrorWeight = 101 }, "Config.MirrorWeight 101"},
		{"timeout", func(c *Config) { c.Timeout = -time.Second }, "Config.Timeout -1s"},
		{"bad regex", func(c *Config) {
			c.Match = []analysis.HTTPMatchRequest{{Headers: map[string]analysis.StringMatch{"x-user": {Regex: "("}}}}
		}, `match[0].headers.x-user.regex "("`},
		{"two kinds", func(c *Config) {
			c.Match = []analysis.HTTPMatchRequest{{}, {URI: &analysis.StringMatch{Exact: "/a", Prefix: "/"}}}
		}, "match[1].uri: set one of exact, prefix, regex"},
		{"query prefix", func(c *Config) {
			c.Match = []analysis.HTTPMatchRequest{{QueryParams: map[string]analysis.StringMatch{"v": {Prefix: "a"}}}}
		}, "match[0].queryParams.v.prefix"},
		{"bad header name", func(c *Config) {
			c.Match = []analysis.HTTPMatchRequest{{Headers: map[string]analysis.StringMatch{"x y": {Exact: "a"}}}}
		}, `match[0].headers: "x y" is not a header name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.modify(&cfg)
			rt, err := New(cfg)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				_ = rt.Close()
				return
			}
			if err == nil {
				t.Fatalf("New accepted the config, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "mesh: ") {
				t.Fatalf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestServiceName(t *testing.T) {
	for _, tt := range []struct {
		primary, canary, service, want string
	}{
		{"podinfo-primary", "podinfo", "", "podinfo.test.svc.cluster.local"},
		{"stable", "podinfo", "", "podinfo.test.svc.cluster.local"},
		{"podinfo-primary", "podinfo", "frontend", "frontend.test.svc.cluster.local"},
	} {
		rt, err := New(Config{Namespace: testNS, Service: tt.service,
			Primary: Backend{Workload: tt.primary, URL: "http://127.0.0.1:1"},
			Canary:  Backend{Workload: tt.canary, URL: "http://127.0.0.1:2"}})
		if err != nil {
			t.Fatal(err)
		}
		if got := rt.Service(); got != tt.want {
			t.Errorf("%+v: Service() = %q, want %q", tt, got, tt.want)
		}
	}
}

func TestSetRoutes(t *testing.T) {
	rt, err := New(Config{Namespace: testNS,
		Primary: Backend{Workload: primaryName, URL: "http://127.0.0.1:1"},
		Canary:  Backend{Workload: canaryName, URL: "http://127.0.0.1:2"}})
	if err != nil {
		t.Fatal(err)
	}
	if p, c, m := rt.GetRoutes(); p != 100 || c != 0 || m {
		t.Fatalf("initial routes %d/%d/%v, want 100/0/false", p, c, m)
	}
	if err := rt.SetRoutes(70, 30, true); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][2]int{{90, 20}, {-10, 110}, {101, -1}, {0, 0}, {50, 49}} {
		err := rt.SetRoutes(bad[0], bad[1], false)
		if err == nil {
			t.Fatalf("SetRoutes(%d, %d) accepted", bad[0], bad[1])
		}
		if want := fmt.Sprintf("SetRoutes(primary %d, canary %d)", bad[0], bad[1]); !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name the values (%q)", err, want)
		}
		if p, c, m := rt.GetRoutes(); p != 70 || c != 30 || !m {
			t.Fatalf("after a refused SetRoutes the routes are %d/%d/%v, want 70/30/true kept", p, c, m)
		}
	}
}

// TestWeights sends 20,000 requests at 90/10: the canary's share must be
// within 4 binomial σ of 10 %; at 100/0 and 0/100 nothing may stray.
func TestWeights(t *testing.T) {
	primary, canary := newBackend(t, nil), newBackend(t, nil)
	rt := newRouter(t, testConfig(primary, canary))

	send := func(n int) {
		var wg sync.WaitGroup
		var next atomic.Int64
		for range 16 {
			wg.Go(func() {
				for next.Add(1) <= int64(n) {
					rec := serveDirect(rt, httptest.NewRequest(http.MethodGet, "http://podinfo/", nil))
					if rec.Code != http.StatusOK {
						t.Errorf("status %d", rec.Code)
						return
					}
				}
			})
		}
		wg.Wait()
	}

	const n = 20000
	if err := rt.SetRoutes(90, 10, false); err != nil {
		t.Fatal(err)
	}
	send(n)
	got := float64(canary.n.Load())
	mean, sigma := 0.1*n, math.Sqrt(n*0.1*0.9)
	if math.Abs(got-mean) > 4*sigma {
		t.Errorf("canary got %v of %d at weight 10, want %v ± %.0f (4σ)", got, n, mean, 4*sigma)
	}
	if p := primary.n.Load(); float64(p)+got != n {
		t.Errorf("backends got %d + %v requests, want %d", p, got, n)
	}
	c := rt.Counts()
	if c.Total(canaryName) != uint64(got) || c.Total(primaryName) != uint64(primary.n.Load()) {
		t.Errorf("Counts %v disagree with the backends (%d, %v)", c.Requests, primary.n.Load(), got)
	}

	for _, w := range [][2]int{{100, 0}, {0, 100}} {
		p0, c0 := primary.n.Load(), canary.n.Load()
		if err := rt.SetRoutes(w[0], w[1], false); err != nil {
			t.Fatal(err)
		}
		send(2000)
		dp, dc := primary.n.Load()-p0, canary.n.Load()-c0
		if w[1] == 0 && dc != 0 || w[0] == 0 && dp != 0 {
			t.Errorf("SetRoutes(%d, %d): primary got %d, canary %d", w[0], w[1], dp, dc)
		}
	}
}

// TestSameSeedSameDraws: a seed fixes the sequence of routing draws.
func TestSameSeedSameDraws(t *testing.T) {
	seq := func(seed uint64) string {
		rt, err := New(Config{Namespace: testNS, Seed: seed,
			Primary: Backend{Workload: primaryName, URL: "http://127.0.0.1:1"},
			Canary:  Backend{Workload: canaryName, URL: "http://127.0.0.1:2"}})
		if err != nil {
			t.Fatal(err)
		}
		_ = rt.SetRoutes(50, 50, false)
		var b strings.Builder
		tbl := rt.routes.Load()
		for range 64 {
			d, _ := rt.draw(tbl, true)
			b.WriteByte('0' + byte(d))
		}
		return b.String()
	}
	if a, b := seq(7), seq(7); a != b {
		t.Errorf("seed 7 gave %s then %s", a, b)
	}
	if a, b := seq(7), seq(8); a == b {
		t.Errorf("seeds 7 and 8 gave the same draws %s", a)
	}
}

// TestConcurrentSetRoutes changes the routes while 32 goroutines send
// requests through a real server: every request is answered and counted
// once.
func TestConcurrentSetRoutes(t *testing.T) {
	primary, canary := newBackend(t, nil), newBackend(t, nil)
	rt := newRouter(t, testConfig(primary, canary))
	url, client := serveRouter(t, rt)

	stop := make(chan struct{})
	var flips sync.WaitGroup
	flips.Go(func() {
		weights := [][2]int{{100, 0}, {90, 10}, {50, 50}, {0, 100}, {20, 80}}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			w := weights[i%len(weights)]
			if err := rt.SetRoutes(w[0], w[1], i%3 == 0); err != nil {
				t.Error(err)
				return
			}
			_, _, _ = rt.GetRoutes()
			time.Sleep(100 * time.Microsecond)
		}
	})

	const workers, each = 32, 50
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range workers {
		wg.Go(func() {
			for range each {
				res, err := client.Get(url + "/")
				if err != nil {
					failed.Add(1)
					continue
				}
				_ = res.Body.Close()
				if res.StatusCode != http.StatusOK {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	flips.Wait()
	waitMirrors(t, rt)

	if failed.Load() != 0 {
		t.Fatalf("%d requests failed", failed.Load())
	}
	waitReported(t, rt, uint64(primary.n.Load()+canary.n.Load()))
	c := rt.Counts()
	if got := primary.n.Load() + canary.n.Load() - int64(c.Mirrored); got != workers*each {
		t.Errorf("backends got %d requests (less %d mirrored), want %d", got, c.Mirrored, workers*each)
	}
	if got := c.Total(primaryName) + c.Total(canaryName); got != uint64(primary.n.Load()+canary.n.Load()) {
		t.Errorf("reported %d requests, backends got %d", got, primary.n.Load()+canary.n.Load())
	}
}
