//go:build unix

package locust_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/canarylab/canarylab/loadgen/internal/locusttest"
	"github.com/canarylab/canarylab/loadgen/locust"
	"github.com/canarylab/canarylab/loadgen/plan"
)

func locustfilePlan(t *testing.T) plan.Plan {
	t.Helper()
	p, err := plan.Parse([]byte(`
host: http://127.0.0.1:9
users:
- name: Browser
  weight: 3
  wait: between(100ms, 500ms)
  tasks:
  - {name: home, weight: 5, request: {path: /}}
  - {name: "it's \"quoted\"", weight: 2, request: {path: '/items/42?x=1', name: /items/:id}}
  - name: order
    request:
      method: post
      path: /orders
      headers: {Content-Type: application/json, X-Note: "a'b\\c"}
      body: '{"item": 42, "note": "é"}'
      timeout: 2500ms
      expect: [201, 2xx]
- name: ApiClient
  wait: constantThroughput(5)
  tasks:
  - {request: {path: /api/status, expect: [2xx]}}
- name: Pacer
  weight: 2
  host: http://localhost:8081
  wait: constantPacing(1s)
  tasks:
  - {request: {path: /p}}
- name: Still
  wait: constant(250ms)
  tasks:
  - {request: {path: /s}}
`))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLocustfileText(t *testing.T) {
	src := locust.Locustfile(locustfilePlan(t))
	for _, want := range []string{
		"class Browser(_canarylab_locust.HttpUser):\n    weight = 3\n    host = 'http://127.0.0.1:9'\n    wait_time = _canarylab_locust.between(0.1, 0.5)\n",
		"class ApiClient(_canarylab_locust.HttpUser):\n    weight = 1\n",
		"wait_time = _canarylab_locust.constant_throughput(5)",
		"class Pacer(_canarylab_locust.HttpUser):\n    weight = 2\n    host = 'http://localhost:8081'\n    wait_time = _canarylab_locust.constant_pacing(1)\n",
		"wait_time = _canarylab_locust.constant(0.25)",
		"@_canarylab_locust.task(5)\n    def task_0(self):\n        # home\n        self.client.request('GET', '/', name='/', timeout=30, allow_redirects=False)\n",
		"self.client.request('GET', '/items/42?x=1', name='/items/:id',",
		`headers={'Content-Type': 'application/json', 'X-Note': "a'b\\c"}, data='{"item": 42, "note": "é"}', timeout=2.5, allow_redirects=False, catch_response=True) as response:`,
		"_canarylab_check(response, (201,), (2,))",
	} {
		if !strings.Contains(src, want) {
			t.Errorf("locustfile lacks %q:\n%s", want, src)
		}
	}
}

// Locust itself loads the file and finds the plan's classes by name.
func TestLocustfileLoadsInLocust(t *testing.T) {
	if _, err := os.Stat(locusttest.Bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	p := locustfilePlan(t)
	lf := writeLocustfile(t, p)
	out, err := exec.Command(locusttest.Bin, "-f", lf, "--list").CombinedOutput()
	if err != nil {
		t.Fatalf("locust --list: %v\n%s", err, out)
	}
	var listed []string
	for _, line := range strings.Split(string(out), "\n")[1:] {
		if s := strings.TrimSpace(line); s != "" {
			listed = append(listed, s)
		}
	}
	want := []string{"Browser", "ApiClient", "Pacer", "Still"}
	if strings.Join(listed, ",") != strings.Join(want, ",") {
		t.Errorf("locust lists %q, want %q\n%s", listed, want, out)
	}
	// The weights as Locust computes the task ratio.
	out, err = exec.Command(locusttest.Bin, "-f", lf, "--show-task-ratio-json").CombinedOutput()
	if err != nil {
		t.Fatalf("locust --show-task-ratio-json: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `"Browser": {`) || !strings.Contains(string(out), `"ratio": 0.42857142857142855`) { // 3 of 7
		t.Errorf("task ratios:\n%s", out)
	}
}

// Python users run the generated tasks standalone against the mock
// server: the locustfile is not only importable but runs, with the plan's
// request names and methods.
func TestLocustfileRunsInPython(t *testing.T) {
	locusttest.NeedLocust(t)
	mock := startMock(t)
	p := locustfilePlan(t)
	p.Host = mock.URL()
	for i := range p.Users {
		p.Users[i].Host = ""
	}
	lf := writeLocustfile(t, p)
	csvPrefix := filepath.Join(t.TempDir(), "py")
	cmd := exec.Command(locusttest.Bin, "-f", lf, "--headless", "-u", "10", "-r", "10", "-t", "3s", "--csv", csvPrefix, "--exit-code-on-error", "0")
	cmd.Dir = t.TempDir()
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("locust did not end:\n%s", out)
	}
	if err != nil || strings.Contains(string(out), "Traceback") {
		t.Fatalf("locust: %v\n%s", err, out)
	}
	rows := locusttest.ReadCSV(t, csvPrefix+"_stats.csv")
	seen := map[string]int64{}
	for _, r := range rows {
		seen[r["Type"]+" "+r["Name"]] = atoi(t, r["Request Count"])
		if r["Name"] != "Aggregated" && r["Failure Count"] != "0" {
			t.Errorf("failures in %v", r)
		}
	}
	for _, want := range []string{"GET /", "POST /orders", "GET /api/status", "GET /p", "GET /s"} {
		if seen[want] == 0 {
			t.Errorf("no %s requests in %v", want, seen)
		}
	}
	t.Logf("Python users ran the generated locustfile: %s", strconv.Quote(strings.TrimSpace(rows[len(rows)-1]["Request Count"])))
}
