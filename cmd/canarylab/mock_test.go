package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestLoadMockConfigLaysFlagsOverFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "mock.yaml")
	if err := os.WriteFile(file, []byte("profile:\n  latency: 10ms\n  errors: \"500:0.5\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		flags   mockFlags
		want    string // Profile.String()
		wantErr string
	}{
		{name: "file only", flags: mockFlags{configPath: file, requestFaults: true}, want: "latency=10ms errors=500:0.5"},
		{name: "flags win", flags: mockFlags{configPath: file, requestFaults: true, errors: "503:0.1"}, want: "latency=10ms errors=503:0.1"},
		{name: "none clears", flags: mockFlags{configPath: file, requestFaults: true, errors: "none"}, want: "latency=10ms"},
		{name: "cap on file latency", flags: mockFlags{configPath: file, requestFaults: true, latencyCap: "5ms"}, want: "latency=10ms cap 5ms errors=500:0.5"},
		{name: "no file", flags: mockFlags{requestFaults: true, latency: "lognormal(50ms,400ms)", faults: "hang(10s):0.01"}, want: "latency=lognormal(50ms,400ms) faults=hang(10s):0.01"},
		{name: "cap without latency", flags: mockFlags{requestFaults: true, latencyCap: "1s"}, wantErr: "--latency-cap needs a latency"},
		{name: "bad errors", flags: mockFlags{requestFaults: true, errors: "503:2"}, wantErr: `--errors "503:2"`},
		{name: "bad latency", flags: mockFlags{requestFaults: true, latency: "lognormal(50ms,10ms)"}, wantErr: "p99"},
		{name: "missing file", flags: mockFlags{configPath: filepath.Join(dir, "nope.yaml")}, wantErr: "nope.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadMockConfig(tt.flags)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Profile.String(); got != tt.want {
				t.Errorf("profile %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEnvironmentSetsFlags(t *testing.T) {
	t.Setenv("CANARYLAB_MOCK_ERRORS", "503:0.25")
	t.Setenv("CANARYLAB_MOCK_VERSION_LABEL", "canary")
	t.Setenv("CANARYLAB_MOCK_REQUEST_FAULTS", "false")
	t.Setenv("CANARYLAB_MOCK_LATENCY", "20ms")
	var out bytes.Buffer
	root := newRootCmd(buildInfo{Version: "test"})
	root.SetOut(&out)
	root.SetArgs([]string{"mock", "--print-config", "--latency", "30ms"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Profile struct {
			Latency struct{ Fixed string }
			Errors  struct {
				Rate  float64
				Codes map[string]float64
			}
		}
		RequestFaults struct{ Disabled bool }
	}
	if err := json.Unmarshal(out.Bytes(), &cfg); err != nil {
		t.Fatalf("%v in %s", err, out.String())
	}
	if cfg.Profile.Errors.Rate != 0.25 || cfg.Profile.Errors.Codes["503"] != 1 {
		t.Errorf("errors from the environment not applied: %s", out.String())
	}
	if cfg.Profile.Latency.Fixed != "30ms" {
		t.Errorf("the flag --latency 30ms should win over the environment's 20ms: %s", out.String())
	}
	if !cfg.RequestFaults.Disabled {
		t.Errorf("CANARYLAB_MOCK_REQUEST_FAULTS=false not applied: %s", out.String())
	}
}

func TestBadEnvironmentIsAUsageError(t *testing.T) {
	t.Setenv("CANARYLAB_MOCK_SEED", "abc")
	root := newRootCmd(buildInfo{Version: "test"})
	root.SetArgs([]string{"mock", "--print-config"})
	root.SetOut(io.Discard)
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), "CANARYLAB_MOCK_SEED") || !strings.Contains(err.Error(), "--seed") {
		t.Fatalf("error %v, want one naming CANARYLAB_MOCK_SEED and --seed", err)
	}
	if _, ok := err.(usageError); !ok {
		t.Errorf("error %T, want usageError (exit code 2)", err)
	}
}

func TestVersionCommand(t *testing.T) {
	var out bytes.Buffer
	root := newRootCmd(buildInfo{Version: "v1.2.3", Commit: "abc123"})
	root.SetOut(&out)
	root.SetArgs([]string{"version"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "canarylab v1.2.3 (commit abc123") {
		t.Errorf("version output %q", out.String())
	}
}

// buildBinary builds canarylab once per test run, into the test's temp dir
// (the Go build cache makes this quick after the first time).
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "canarylab")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func getStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMockProcessReloadsAndShutsDown runs the real binary: it serves the
// file's profile, reloads on SIGHUP and on a file change, refuses a bad
// file while the old config keeps serving, and exits 0 on SIGTERM.
func TestMockProcessReloadsAndShutsDown(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "mock.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file+".tmp", []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".tmp", file); err != nil {
			t.Fatal(err)
		}
	}
	write("profile:\n  errors: \"503\"\n")
	addr, admin := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "mock", "--config", file, "--version-label", "canary")
	cmd.Env = append(os.Environ(), "CANARYLAB_MOCK_LISTEN="+addr, "CANARYLAB_MOCK_ADMIN_LISTEN="+admin)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("mock logs:\n%s", logs.String())
		}
	})

	url := "http://" + addr + "/x"
	waitUntil(t, 10*time.Second, "the mock to serve", func() bool { code, _ := getStatus(t, url); return code != 0 })
	if code, _ := getStatus(t, url); code != 503 {
		t.Fatalf("status %d, want the file's 503", code)
	}

	// A file change is picked up by the watcher.
	write("profile:\n  errors: \"502\"\n")
	waitUntil(t, 10*time.Second, "the file change to apply", func() bool { code, _ := getStatus(t, url); return code == 502 })

	// A bad file is refused; the old config keeps serving.
	write("profile:\n  errors: \"502:7\"\n")
	waitUntil(t, 10*time.Second, "the refusal to be counted", func() bool {
		_, body := getStatus(t, "http://"+admin+"/metrics")
		return strings.Contains(body, `canarylab_mock_config_updates_total{result="refused",source="file",version="canary"} 1`)
	})
	if code, _ := getStatus(t, url); code != 502 {
		t.Fatalf("status %d after a bad file, want the old config's 502", code)
	}

	// SIGHUP reloads too.
	if err := os.WriteFile(file, []byte("profile:\n  errors: \"504\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "SIGHUP to apply", func() bool { code, _ := getStatus(t, url); return code == 504 })

	// SIGTERM drains and exits 0, and nothing listens afterwards.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("mock did not exit within 20s of SIGTERM")
	}
	for _, a := range []string{addr, admin} {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after exit", a)
		}
	}
	if !strings.Contains(logs.String(), "shutting down") {
		t.Errorf("no shutdown line in logs:\n%s", logs.String())
	}
}
