package mockserver_test

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/canarylab/canarylab/mockserver"
	"github.com/canarylab/canarylab/mockserver/behavior"
	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// requirePeer finds a real peer's binary. Without it the test fails under
// CI (CI=true), where `make test-deps` must have installed it, and is
// skipped on a developer's machine.
func requirePeer(t *testing.T, name, pkg string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("-short: skipping the integration test that needs %s", name)
	}
	path, err := exec.LookPath(name)
	if err != nil {
		msg := fmt.Sprintf("%s not found: install Debian's %s (make test-deps)", name, pkg)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startPrometheus runs a real Prometheus on loopback scraping target every
// second, and stops it when the test ends.
func startPrometheus(t *testing.T, target string) promv1.API {
	t.Helper()
	bin := requirePeer(t, "prometheus", "prometheus")
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
- job_name: mock
  static_configs:
  - targets: [%q]
`, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("prometheus log:\n%s", b)
		}
		logFile.Close()
	})
	url := "http://" + addr
	waitFor(t, 30*time.Second, "prometheus ready", func() bool {
		resp, err := http.Get(url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	client, err := promapi.NewClient(promapi.Config{Address: url})
	if err != nil {
		t.Fatal(err)
	}
	return promv1.NewAPI(client)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// query evaluates an instant query now and returns its one sample.
func query(api promv1.API, q string) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, _, _, err := api.Query(ctx, q, time.Now())
	if err != nil {
		return 0, fmt.Errorf("query %s: %w", q, err)
	}
	vec, ok := v.(model.Vector)
	if !ok || len(vec) != 1 {
		return 0, fmt.Errorf("query %s: want one sample, got %v", q, v)
	}
	return float64(vec[0].Value), nil
}

func queryScalar(t *testing.T, api promv1.API, q string) float64 {
	t.Helper()
	v, err := query(api, q)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestPrometheusSeesConfiguredProfile drives load through a mock server
// configured with 10 % 503s and lognormal(20ms, 250ms) latency, lets a real
// Prometheus scrape it, and checks that PromQL over the scraped metrics
// finds the configured error ratio and p99.
func TestPrometheusSeesConfiguredProfile(t *testing.T) {
	const (
		errRate = 0.1
		median  = 20 * time.Millisecond
		p99     = 250 * time.Millisecond
		workers = 32
		// requests is what the bounds below are computed for; the load
		// runs until it is reached, however busy the machine is.
		requests = 5000
		maxLoad  = 2 * time.Minute
	)
	lat, err := behavior.ParseLatency(fmt.Sprintf("lognormal(%s,%s)", median, p99))
	if err != nil {
		t.Fatal(err)
	}
	errs, err := behavior.ParseErrors(fmt.Sprintf("503:%v", errRate))
	if err != nil {
		t.Fatal(err)
	}
	seed := uint64(1)
	srv, err := mockserver.New(mockserver.Config{
		Seed:    &seed,
		Profile: behavior.Profile{Latency: &lat, Errors: &errs},
	}, mockserver.Options{VersionLabel: "canary"})
	if err != nil {
		t.Fatal(err)
	}
	run, err := mockserver.Start(srv, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = run.Shutdown(ctx)
	})
	api := startPrometheus(t, run.AdminAddr())
	waitFor(t, 20*time.Second, "the first scrape", func() bool {
		up, err := query(api, `up{job="mock"}`)
		return err == nil && up == 1
	})

	var sent, failed atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), maxLoad)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}, Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && sent.Load() < requests {
				resp, err := client.Get(run.URL() + "/api")
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d requests failed at the transport level", failed.Load())
	}
	n := sent.Load()
	if n < requests {
		t.Fatalf("only %d of %d requests within %s", n, requests, maxLoad)
	}

	// Wait until Prometheus has scraped the final counters.
	total := `sum(canarylab_mock_requests_total{job="mock",version="canary"})`
	waitFor(t, 20*time.Second, fmt.Sprintf("prometheus to see all %d requests", n), func() bool {
		got, err := query(api, total)
		return err == nil && int64(got) == n
	})

	// The error ratio, as the share of 5xx among all requests. The bound
	// is 4 binomial standard deviations at the number of requests sent.
	ratio := queryScalar(t, api, `sum(canarylab_mock_requests_total{job="mock",code=~"5.."}) / `+total)
	bound := 4 * math.Sqrt(errRate*(1-errRate)/float64(n))
	if math.Abs(ratio-errRate) > bound {
		t.Errorf("PromQL error ratio %.4f, configured %.2f (bound ±%.4f over %d requests)", ratio, errRate, bound, n)
	}
	realised := srv.Counts().ErrorRatio
	if math.Abs(realised-ratio) > 1e-9 {
		t.Errorf("PromQL error ratio %.6f differs from the server's realised counts %.6f", ratio, realised)
	}
	// The injected-fault counter agrees with the status counter.
	injected := queryScalar(t, api, `sum(canarylab_mock_injected_faults_total{job="mock",kind="error"})`)
	if uint64(injected) != srv.Counts().InjectedErrors["503"] {
		t.Errorf("injected_faults_total{kind=error} = %v, realised 503s = %d", injected, srv.Counts().InjectedErrors["503"])
	}

	// p99 from the classic buckets, as Flagger's request-duration query
	// computes it. Tolerance 15 %: about ±5 % is the sampling spread of a
	// p99 over ~40 requests in the tail at this n, and the rest is linear
	// interpolation inside a bucket (0.2–0.25–0.3 s here).
	q99 := queryScalar(t, api, `histogram_quantile(0.99, sum by (le) (canarylab_mock_request_duration_seconds_bucket{job="mock"}))`)
	if got, want := q99, p99.Seconds(); math.Abs(got-want)/want > 0.15 {
		t.Errorf("PromQL p99 %.4fs, configured %.4fs (tolerance 15%%)", got, want)
	}
	q50 := queryScalar(t, api, `histogram_quantile(0.5, sum by (le) (canarylab_mock_request_duration_seconds_bucket{job="mock"}))`)
	if got, want := q50, median.Seconds(); math.Abs(got-want)/want > 0.15 {
		t.Errorf("PromQL p50 %.4fs, configured %.4fs (tolerance 15%%)", got, want)
	}
	t.Logf("%d requests: PromQL error ratio %.4f (configured %.2f), p50 %.1fms (configured %s), p99 %.1fms (configured %s)",
		n, ratio, errRate, q50*1000, median, q99*1000, p99)
}
