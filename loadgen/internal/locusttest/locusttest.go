//go:build unix

// Package locusttest runs Debian's real Locust master for tests of
// canarylab's Locust workers.
package locusttest

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bin is Debian's Locust (package python3-locust); it runs with the
// system Python, which has Locust's modules.
const Bin = "/usr/bin/locust"

// NeedLocust skips a test that needs Bin when it is missing or under
// -short; on CI (CI=true) a missing Locust fails the test instead.
func NeedLocust(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real Locust master; skipped with -short")
	}
	if _, err := os.Stat(Bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required on CI (Debian package python3-locust): %v", Bin, err)
		}
		t.Skipf("%s is not installed (Debian package python3-locust)", Bin)
	}
}

// Master is a real Locust master in its own process group.
type Master struct {
	// Log is the master's stdout and stderr.
	Log  *LogBuffer
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StartMaster starts Bin with args in a temporary directory; the test's
// cleanup kills it and, when the test failed or LOCUST_TEST_LOG is set,
// logs its output under name.
func StartMaster(t testing.TB, name string, args ...string) *Master {
	t.Helper()
	m := &Master{Log: &LogBuffer{}, done: make(chan struct{})}
	m.cmd = exec.Command(Bin, args...)
	m.cmd.Dir = t.TempDir()
	m.cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1")
	m.cmd.Stdout, m.cmd.Stderr = m.Log, m.Log
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		m.err = m.cmd.Wait()
		close(m.done)
	}()
	t.Cleanup(func() {
		m.Kill()
		if t.Failed() || os.Getenv("LOCUST_TEST_LOG") != "" {
			t.Logf("%s log:\n%s", name, m.Log.String())
		}
	})
	return m
}

// Kill SIGKILLs the master's process group and waits for it.
func (m *Master) Kill() {
	_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
	<-m.done
}

// WaitLog waits until the master's log contains substr.
func (m *Master) WaitLog(t testing.TB, timeout time.Duration, substr string) {
	t.Helper()
	WaitUntil(t, timeout, fmt.Sprintf("master log %q", substr), func() bool { return strings.Contains(m.Log.String(), substr) })
}

// ExitCode waits for the master to exit by itself and returns its status.
func (m *Master) ExitCode(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-m.done:
	case <-time.After(timeout):
		t.Fatalf("master did not exit within %s", timeout)
	}
	if m.err == nil {
		return 0
	}
	if ee, ok := m.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatalf("master: %v", m.err)
	return -1
}

// CheckLog fails on the signs of a master that choked on a worker's
// message.
func (m *Master) CheckLog(t testing.TB) {
	t.Helper()
	for _, bad := range []string{"Traceback", "Unhandled exception", "Uncaught exception", "KeyError",
		"old (pre 2.0) worker", "Unknown message type", "running a different version", "Discarded report"} {
		if strings.Contains(m.Log.String(), bad) {
			t.Errorf("master log contains %q", bad)
		}
	}
}

// ReadCSV returns the rows of a Locust CSV file as maps by column.
func ReadCSV(t testing.TB, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(rows) == 0 {
		t.Fatalf("%s is empty", path)
	}
	var out []map[string]string
	for _, r := range rows[1:] {
		m := map[string]string{}
		for i, col := range rows[0] {
			if i < len(r) {
				m[col] = r[i]
			}
		}
		out = append(out, m)
	}
	return out
}

// LogBuffer collects log lines for assertions; safe for concurrent use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Count returns how many lines contain substr.
func (b *LogBuffer) Count(substr string) int {
	n := 0
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}

// WaitUntil polls cond every 5 ms and fails the test after timeout.
func WaitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// FreePort returns a loopback TCP port that was free a moment ago, for a
// master's --master-bind-port.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
