package webhook

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/canarylab/canarylab/orchestrator/analysis"
)

// post sends body to the Loadtester over loopback and returns the status
// and body (0 after a transport failure, reported with t.Error so that
// goroutines may call it too).
func post(t *testing.T, srv *httptest.Server, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Error(err)
	}
	return resp.StatusCode, string(b)
}

const (
	podinfoTest = `{"name":"podinfo","namespace":"test","phase":"Progressing"}`
	podinfoProd = `{"name":"podinfo","namespace":"prod"}`
)

// TestLoadtesterEndpoints walks every endpoint in order; gate state
// carries from one step to the next.
func TestLoadtesterEndpoints(t *testing.T) {
	lt := NewLoadtester(nil)
	srv := httptest.NewServer(lt)
	defer srv.Close()
	unsupported := "task type %s is not supported by canarylab's embedded flagger-loadtester, which runs no commands: " +
		"drive traffic with the scenario's load and approve with /gate/check or /rollback/check"

	steps := []struct {
		method, path, body string
		status             int
		resp               string
	}{
		{"GET", "/healthz", "", 200, "OK"},
		{"POST", "/gate/approve", podinfoTest, 200, "OK"},
		{"GET", "/gate/approve", "", 200, "OK"},
		{"POST", "/gate/halt", podinfoTest, 403, "Forbidden"},
		{"POST", "/gate/check", podinfoTest, 403, "Forbidden"},
		{"POST", "/gate/open", podinfoTest, 202, ""},
		{"POST", "/gate/check", podinfoTest, 200, "Approved"},
		{"POST", "/gate/check", podinfoProd, 403, "Forbidden"},     // per name.namespace
		{"POST", "/rollback/check", podinfoTest, 403, "Forbidden"}, // gates and rollbacks are apart
		{"POST", "/gate/close", podinfoTest, 202, ""},
		{"POST", "/gate/check", podinfoTest, 403, "Forbidden"},
		{"POST", "/rollback/open", podinfoTest, 202, ""},
		{"POST", "/rollback/check", podinfoTest, 200, "Approved"},
		{"POST", "/gate/check", podinfoTest, 403, "Forbidden"},
		{"POST", "/rollback/check", podinfoProd, 403, "Forbidden"},
		{"POST", "/rollback/close", podinfoTest, 202, ""},
		{"POST", "/rollback/check", podinfoTest, 403, "Forbidden"},
		{"POST", "/gate/check", "not json", 400, ""},
		{"GET", "/gate/check", "", 400, ""},
		{"POST", "/gate/open", "{", 400, ""},
		{"POST", "/rollback/open", "", 400, ""},
		{"POST", "/", "not json", 400, ""},
		{"POST", "/", podinfoTest, 400, "metadata not found in payload"},
		{"POST", "/", `{"name":"podinfo","namespace":"test","metadata":{}}`, 400, "metadata not found in payload"},
		{"POST", "/", `{"name":"podinfo","namespace":"test","metadata":{"cmd":"hey -z 1m http://podinfo-canary.test:9898/"}}`, 202, ""},
		{"POST", "/", `{"name":"podinfo","namespace":"test","metadata":{"type":"cmd","cmd":"hey"}}`, 202, ""},
		{"POST", "/", `{"name":"podinfo","namespace":"test","metadata":{"type":"cmd"}}`, 400, "cmd not found in metadata"},
		{"POST", "/", `{"name":"podinfo","namespace":"test","metadata":{"type":"bash","cmd":"curl -sd 'test' http://podinfo-canary:9898/token"}}`, 400, fmt.Sprintf(unsupported, "bash")},
		{"POST", "/", `{"name":"podinfo","namespace":"test","metadata":{"type":"helm","cmd":"test run podinfo"}}`, 400, fmt.Sprintf(unsupported, "helm")},
		{"POST", "/", `{"name":"podinfo","namespace":"test","metadata":{"type":"helmv3","cmd":"test podinfo"}}`, 400, fmt.Sprintf(unsupported, "helmv3")},
		{"POST", "/", `{"name":"podinfo","namespace":"test","metadata":{"type":"kubectl","cmd":"get pods"}}`, 400, fmt.Sprintf(unsupported, "kubectl")},
		{"POST", "/", `{"name":"podinfo","namespace":"test","metadata":{"type":"concord","server":"x"}}`, 400, fmt.Sprintf(unsupported, "concord")},
		{"POST", "/", `{"name":"podinfo","namespace":"test","metadata":{"type":"ngrinder"}}`, 400, fmt.Sprintf(unsupported, "ngrinder")},
		{"POST", "/", `{"name":"podinfo","namespace":"test","metadata":{"type":"k6"}}`, 400, "unknown task type k6"},
	}
	for i, s := range steps {
		status, body := post(t, srv, s.method, s.path, s.body)
		if status != s.status || body != s.resp {
			t.Errorf("step %d %s %s %s: %d %q, want %d %q", i, s.method, s.path, s.body, status, body, s.status, s.resp)
		}
	}

	calls := lt.Calls()
	if len(calls) != len(steps) {
		t.Fatalf("%d calls recorded, want %d", len(calls), len(steps))
	}
	for i, c := range calls {
		if c.Path != steps[i].path || c.Status != steps[i].status || c.Time.IsZero() {
			t.Errorf("call %d = %+v, want path %s status %d", i, c, steps[i].path, steps[i].status)
		}
	}
	if c := calls[1]; c.Name != "podinfo" || c.Namespace != "test" || c.Phase != "Progressing" {
		t.Errorf("call 1 = %+v, want podinfo.test Progressing", c)
	}
	if c := calls[7]; c.Name != "podinfo" || c.Namespace != "prod" {
		t.Errorf("call 7 = %+v, want podinfo.prod", c)
	}
}

// warnings counts the warnings logged through it.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var cmd string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "cmd" {
			cmd = a.Value.String()
		}
		return true
	})
	w.msgs = append(w.msgs, cmd+": "+r.Message)
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }

func TestLoadtesterWarnsOncePerCommand(t *testing.T) {
	w := &warnings{}
	lt := NewLoadtester(slog.New(w))
	srv := httptest.NewServer(lt)
	defer srv.Close()
	task := func(ns, cmd string) string {
		return fmt.Sprintf(`{"name":"podinfo","namespace":%q,"metadata":{"type":"cmd","cmd":%q}}`, ns, cmd)
	}
	for _, body := range []string{
		task("test", "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/"),
		task("test", "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/"),
		task("prod", "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/"),
		task("test", "hey -z 1m -q 10 -c 2 -m POST http://podinfo-canary.test:9898/echo"),
	} {
		if status, _ := post(t, srv, "POST", "/", body); status != http.StatusAccepted {
			t.Fatalf("status %d, want 202", status)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	want := []string{
		"hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/: the embedded flagger-loadtester does not execute commands; the scenario's load drives traffic instead",
		"hey -z 1m -q 10 -c 2 -m POST http://podinfo-canary.test:9898/echo: the embedded flagger-loadtester does not execute commands; the scenario's load drives traffic instead",
	}
	if fmt.Sprint(w.msgs) != fmt.Sprint(want) {
		t.Errorf("warnings:\n%s\nwant\n%s", strings.Join(w.msgs, "\n"), strings.Join(want, "\n"))
	}
}

func TestLoadtesterGoMethods(t *testing.T) {
	lt := NewLoadtester(nil)
	srv := httptest.NewServer(lt)
	defer srv.Close()
	check := func(path string) int {
		status, _ := post(t, srv, "POST", path, podinfoTest)
		return status
	}

	lt.OpenGate("podinfo", "test")
	if !lt.GateOpen("podinfo", "test") || lt.GateOpen("podinfo", "prod") || check("/gate/check") != 200 {
		t.Error("OpenGate did not open podinfo.test's gate alone")
	}
	lt.CloseGate("podinfo", "test")
	if lt.GateOpen("podinfo", "test") || check("/gate/check") != 403 {
		t.Error("CloseGate did not close the gate")
	}
	post(t, srv, "POST", "/gate/open", podinfoTest)
	if !lt.GateOpen("podinfo", "test") {
		t.Error("/gate/open not seen by GateOpen")
	}

	lt.OpenRollback("podinfo", "test")
	if !lt.RollbackOpen("podinfo", "test") || check("/rollback/check") != 200 {
		t.Error("OpenRollback did not signal a rollback")
	}
	lt.CloseRollback("podinfo", "test")
	if lt.RollbackOpen("podinfo", "test") || check("/rollback/check") != 403 {
		t.Error("CloseRollback did not close the switch")
	}
}

// TestCallerThroughLoadtester is the local engine's wiring: a hook written
// for a cluster, rewritten to the embedded loadtester, gives Flagger's
// results and error texts.
func TestCallerThroughLoadtester(t *testing.T) {
	lt := NewLoadtester(nil)
	srv := httptest.NewServer(lt)
	defer srv.Close()
	c, _ := newCaller(t, Options{})
	hook := func(typ analysis.HookType, url string, md map[string]string) analysis.Webhook {
		return analysis.Webhook{Type: typ, Name: string(typ), URL: Rewrite(url, srv.URL), Metadata: md}
	}
	p := Payload{Name: "podinfo", Namespace: "test", Phase: "Progressing"}
	call := func(h analysis.Webhook) string { return errText(c.Call(context.Background(), h, p)) }

	gate := hook(analysis.HookConfirmPromotion, "http://flagger-loadtester.test/gate/check", nil)
	if got := call(gate); got != "Forbidden" {
		t.Errorf("closed gate: %q, want Forbidden", got)
	}
	lt.OpenGate("podinfo", "test")
	if got := call(gate); got != "" {
		t.Errorf("open gate: %q", got)
	}
	rb := hook(analysis.HookRollback, "http://flagger-loadtester.test/rollback/check", nil)
	if got := call(rb); got != "Forbidden" {
		t.Errorf("rollback closed: %q, want Forbidden (no rollback)", got)
	}
	load := hook(analysis.HookRollout, "http://flagger-loadtester.test/", map[string]string{"cmd": "hey -z 1m http://podinfo-canary.test:9898/"})
	if got := call(load); got != "" {
		t.Errorf("load task: %q, want it accepted", got)
	}
	bash := hook(analysis.HookPreRollout, "http://flagger-loadtester.test/", map[string]string{"type": "bash", "cmd": "exit 1"})
	if got := call(bash); !strings.HasPrefix(got, "task type bash is not supported") {
		t.Errorf("bash task: %q", got)
	}
	if calls := lt.Calls(); len(calls) != 5 || calls[0].Path != "/gate/check" || calls[0].Phase != "Progressing" {
		t.Errorf("calls = %+v", calls)
	}
}

func TestLoadtesterConcurrent(t *testing.T) {
	lt := NewLoadtester(nil)
	srv := httptest.NewServer(lt)
	defer srv.Close()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			ns := fmt.Sprint("ns", i)
			lt.OpenGate("podinfo", ns)
			post(t, srv, "POST", "/gate/check", fmt.Sprintf(`{"name":"podinfo","namespace":%q}`, ns))
			post(t, srv, "POST", "/rollback/open", fmt.Sprintf(`{"name":"podinfo","namespace":%q}`, ns))
			_ = lt.Calls()
		})
	}
	wg.Wait()
	for i := range 8 {
		ns := fmt.Sprint("ns", i)
		if !lt.GateOpen("podinfo", ns) || !lt.RollbackOpen("podinfo", ns) {
			t.Errorf("podinfo.%s lost an update", ns)
		}
	}
	if n := len(lt.Calls()); n != 16 {
		t.Errorf("%d calls recorded, want 16", n)
	}
}
