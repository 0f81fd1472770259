//go:build unix

package boomercompat_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canarylab/canarylab/loadgen/boomercompat"
	"github.com/canarylab/canarylab/loadgen/internal/locusttest"
)

// The example, a boomer program whose task code is unchanged, joins a
// real Locust 2 master: the master sees the class, spawns its users on
// it, and its CSV counts exactly the requests the target served.
func TestExampleJoinsARealLocustMaster(t *testing.T) {
	locusttest.NeedLocust(t)
	var served, failed atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if served.Add(1)%10 == 0 {
			failed.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "hello")
	}))
	defer target.Close()

	bin := filepath.Join(t.TempDir(), "example")
	build := exec.Command("go", "build", "-o", bin, "./example")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./example: %v\n%s", err, out)
	}
	dir := t.TempDir()
	locustfile := filepath.Join(dir, "dummy.py")
	if err := os.WriteFile(locustfile, []byte(boomercompat.Locustfile("")), 0o644); err != nil {
		t.Fatal(err)
	}
	port := locusttest.FreePort(t)
	csvPrefix := filepath.Join(dir, "run")
	master := locusttest.StartMaster(t, "master", "-f", locustfile, "--master", "--master-bind-host", "127.0.0.1",
		"--master-bind-port", strconv.Itoa(port), "--headless", "--expect-workers", "1",
		"-u", "4", "-r", "4", "-t", "6s", "--csv", csvPrefix, "--exit-code-on-error", "0")

	worker := exec.Command(bin, "--master-host", "127.0.0.1", "--master-port", strconv.Itoa(port), "--url", target.URL+"/")
	workerLog := &locusttest.LogBuffer{}
	worker.Stdout, worker.Stderr = workerLog, workerLog
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- worker.Wait() }()
	defer func() {
		_ = worker.Process.Kill()
		if t.Failed() {
			t.Logf("example's log:\n%s", workerLog.String())
		}
	}()

	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the example exited with %v, want 0 after the master's quit", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the example did not exit with the master's quit")
	}
	if code := master.ExitCode(t, 30*time.Second); code != 0 {
		t.Errorf("master exit code %d, want 0", code)
	}
	master.CheckLog(t)
	master.WaitLog(t, time.Second, "All users spawned: {\"Dummy\": 4}")

	rows := locusttest.ReadCSV(t, csvPrefix+"_stats.csv")
	var get map[string]string
	for _, r := range rows {
		if r["Type"] == "http" && r["Name"] == "get" {
			get = r
		}
	}
	if get == nil {
		t.Fatalf("master CSV has no http get row: %v", rows)
	}
	if n := served.Load(); n < 100 || get["Request Count"] != strconv.FormatInt(n, 10) || get["Failure Count"] != strconv.FormatInt(failed.Load(), 10) {
		t.Errorf("master counted %s requests, %s failures; the target served %d, %d of them 503", get["Request Count"], get["Failure Count"], n, failed.Load())
	}
}
