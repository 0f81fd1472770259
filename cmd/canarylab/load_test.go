package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/canarylab/canarylab/mockserver"
	"github.com/canarylab/canarylab/mockserver/behavior"
)

func startTestMock(t *testing.T, p behavior.Profile) string {
	t.Helper()
	srv, err := mockserver.New(mockserver.Config{Profile: p}, mockserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	run, err := mockserver.Start(srv, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = run.Shutdown(ctx)
	})
	return run.URL()
}

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRootCmd(buildInfo{Version: "test"})
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestLoadStandaloneWritesReportsAndChecksThresholds(t *testing.T) {
	errs, err := behavior.ParseErrors("503:0.5")
	if err != nil {
		t.Fatal(err)
	}
	url := startTestMock(t, behavior.Profile{Errors: &errs})
	dir := t.TempDir()
	jsonPath, csvPrefix := filepath.Join(dir, "out.json"), filepath.Join(dir, "run")
	out, err := runCLI(t, "load", "--host", url, "--users", "4", "--duration", "500ms", "--quiet",
		"--threshold", "errors<10%", "--threshold", "p99<5s", "--json", jsonPath, "--csv", csvPrefix)
	var te thresholdError
	if !errors.As(err, &te) || te.broken != 1 {
		t.Fatalf("error %v, want one broken threshold (errors<10%% with 50%% 503s)\n%s", err, out)
	}
	for _, want := range []string{"Aggregated", "threshold FAIL errors<10%", "threshold ok   p99<5s", "HTTP 503"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	var sum struct {
		Model string
		Total struct {
			Requests, Failures int64
		}
		Passed bool
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Model != "closed" || sum.Total.Requests == 0 || sum.Passed {
		t.Errorf("summary %+v", sum)
	}
	csvStats, err := os.ReadFile(csvPrefix + "_stats.csv")
	if err != nil || !strings.Contains(string(csvStats), ",Aggregated,") {
		t.Errorf("stats.csv: %v %q", err, csvStats)
	}
}

func TestLoadOpenModel(t *testing.T) {
	url := startTestMock(t, behavior.Profile{})
	jsonPath := filepath.Join(t.TempDir(), "open.json")
	out, err := runCLI(t, "load", "--host", url, "--rate", "100", "--duration", "500ms", "--quiet", "--json", jsonPath)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var sum struct {
		Model string
		Open  struct{ Intended, Sent, Dropped int64 }
	}
	b, _ := os.ReadFile(jsonPath)
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Model != "open" || sum.Open.Intended < 49 || sum.Open.Sent != sum.Open.Intended || sum.Open.Dropped != 0 {
		t.Errorf("open summary %+v", sum)
	}
}

func TestLoadUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"load", "--host", "http://127.0.0.1:1", "--users", "1"},
		{"load", "--host", "http://127.0.0.1:1", "--rate", "5"},
		{"load", "--host", "http://127.0.0.1:1", "--rate", "5", "--users", "2", "--duration", "1s"},
		{"load", "--host", "http://example.com", "--users", "1", "--duration", "1s"},
		{"load", "--host", "http://127.0.0.1:1", "--users", "1", "--duration", "1s", "--threshold", "p99<fast"},
		{"load", "--host", "http://127.0.0.1:1", "--stage", "1m"},
	} {
		_, err := runCLI(t, args...)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: error %v, want a usage error (exit 2)", args, err)
		}
	}
}

// TestLoadJoinsARealLocustMaster runs `canarylab load --master` against
// Debian's Locust 2.12.1 master (headless, 3 s) and checks that the
// master's CSV totals are the worker's own.
func TestLoadJoinsARealLocustMaster(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs a Locust master")
	}
	bin, err := exec.LookPath("locust")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("locust not found: install Debian's python3-locust (make test-deps)")
		}
		t.Skip("locust not found: install Debian's python3-locust")
	}
	url := startTestMock(t, behavior.Profile{})
	dir := t.TempDir()
	lf, err := runCLI(t, "load", "--print-locustfile")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "locustfile.py"), []byte(lf), 0o644); err != nil {
		t.Fatal(err)
	}
	port := strings.TrimPrefix(freeAddr(t), "127.0.0.1:")
	master := exec.Command(bin, "-f", "locustfile.py", "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
		"--headless", "--expect-workers", "1", "-u", "4", "-r", "4", "-t", "3s", "--csv", "m",
		"--web-host", "127.0.0.1", "--web-port", strings.TrimPrefix(freeAddr(t), "127.0.0.1:"))
	master.Dir = dir
	var mlog bytes.Buffer
	master.Stdout, master.Stderr = &mlog, &mlog
	master.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := master.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = master.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-master.Process.Pid, syscall.SIGKILL)
		<-exited
		if t.Failed() {
			t.Logf("master log:\n%s", mlog.String())
		}
	})
	jsonPath := filepath.Join(dir, "w.json")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root := newRootCmd(buildInfo{Version: "test"})
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"load", "--master", "127.0.0.1:" + port, "--host", url, "--json", jsonPath, "--log-level", "warn"})
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("worker: %v\n%s", err, out.String())
	}
	select {
	case <-exited: // the master writes its last CSV rows as it exits
	case <-time.After(20 * time.Second):
		t.Fatal("the master did not exit within 20s of its run")
	}
	var sum struct {
		Total struct{ Requests, Failures int64 }
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	csvStats, err := os.ReadFile(filepath.Join(dir, "m_stats.csv"))
	if err != nil {
		t.Fatal(err)
	}
	var agg []string
	for _, line := range strings.Split(string(csvStats), "\n") {
		if strings.HasPrefix(line, ",Aggregated,") {
			agg = strings.Split(strings.TrimSpace(line), ",")
		}
	}
	if len(agg) < 4 || sum.Total.Requests == 0 {
		t.Fatalf("master CSV %q, worker %+v", csvStats, sum.Total)
	}
	if agg[2] != strconv.FormatInt(sum.Total.Requests, 10) || agg[3] != strconv.FormatInt(sum.Total.Failures, 10) {
		t.Errorf("master counted %s requests / %s failures, the worker %d / %d", agg[2], agg[3], sum.Total.Requests, sum.Total.Failures)
	}
}
