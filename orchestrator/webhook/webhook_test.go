package webhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canarylab/canarylab/orchestrator/analysis"
)

// sleeps records the backoff waits a Caller asks for and returns at once,
// so no test waits out retryablehttp's 1 s–30 s backoff.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) got() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

func newCaller(t *testing.T, opts Options) (*Caller, *sleeps) {
	t.Helper()
	s := &sleeps{}
	if opts.Sleep == nil {
		opts.Sleep = s.sleep
	}
	c, err := NewCaller(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c, s
}

var testPayload = Payload{Name: "podinfo", Namespace: "test", Phase: "Progressing", Checksum: "abc"}

func TestCallStatus(t *testing.T) {
	tests := []struct {
		name       string
		codes      []int // per attempt; the last one repeats
		body       string
		retryAfter string
		retries    int
		wantErr    string // "%s" is the hook URL
		attempts   int32
		waits      []time.Duration
	}{
		{name: "200", codes: []int{200}, attempts: 1},
		{name: "201", codes: []int{201}, attempts: 1},
		{name: "202", codes: []int{202}, attempts: 1},
		{name: "203 fails with the body", codes: []int{203}, body: "not quite", wantErr: "not quite", attempts: 1},
		{name: "403 closed gate", codes: []int{403}, body: "Forbidden", wantErr: "Forbidden", attempts: 1},
		{name: "403 is not retried", codes: []int{403}, body: "Forbidden", retries: 2, wantErr: "Forbidden", attempts: 1},
		{name: "500 no retries loses the body", codes: []int{500}, body: "exit status 1",
			wantErr: "POST %s giving up after 1 attempt(s)", attempts: 1},
		{name: "500 retries 2", codes: []int{500}, body: "boom", retries: 2,
			wantErr: "POST %s giving up after 3 attempt(s)", attempts: 3, waits: []time.Duration{time.Second, 2 * time.Second}},
		{name: "500 then 200 recovers", codes: []int{500, 200}, retries: 2, attempts: 2, waits: []time.Duration{time.Second}},
		{name: "501 is not retried", codes: []int{501}, body: "Not Implemented", retries: 2,
			wantErr: "Not Implemented", attempts: 1},
		{name: "429 is retried, Retry-After honoured", codes: []int{429}, retryAfter: "3", retries: 1,
			wantErr: "POST %s giving up after 2 attempt(s)", attempts: 2, waits: []time.Duration{3 * time.Second}},
		{name: "503 retries 1", codes: []int{503}, retries: 1,
			wantErr: "POST %s giving up after 2 attempt(s)", attempts: 2, waits: []time.Duration{time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var attempts atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := int(attempts.Add(1))
				code := tt.codes[min(n, len(tt.codes))-1]
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				w.WriteHeader(code)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			c, s := newCaller(t, Options{})
			hook := analysis.Webhook{Name: "h", URL: srv.URL + "/hook", Retries: tt.retries}

			err := c.Call(context.Background(), hook, testPayload)

			want := tt.wantErr
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, hook.URL)
			}
			if got := errText(err); got != want {
				t.Errorf("error = %q, want %q", got, want)
			}
			if got := attempts.Load(); got != tt.attempts {
				t.Errorf("server saw %d attempts, want %d", got, tt.attempts)
			}
			if got := s.got(); fmt.Sprint(got) != fmt.Sprint(tt.waits) {
				t.Errorf("backoff waits = %v, want %v", got, tt.waits)
			}
		})
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestCallStatusErrorKeepsTheCode(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Forbidden", http.StatusForbidden)
	}))
	defer srv.Close()
	c, _ := newCaller(t, Options{})
	err := c.Call(context.Background(), analysis.Webhook{Name: "h", URL: srv.URL}, testPayload)
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusForbidden || se.Body != "Forbidden\n" {
		t.Fatalf("err = %#v, want *StatusError{403, \"Forbidden\\n\"}", err)
	}
}

func TestCallTransportError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	u := "http://" + addr + "/"
	for _, tt := range []struct {
		retries int
		want    string
		waits   int
	}{
		{0, "POST %[1]s giving up after 1 attempt(s): Post \"%[1]s\": dial tcp %[2]s: connect: connection refused", 0},
		{1, "POST %[1]s giving up after 2 attempt(s): Post \"%[1]s\": dial tcp %[2]s: connect: connection refused", 1},
	} {
		t.Run(fmt.Sprint("retries ", tt.retries), func(t *testing.T) {
			c, s := newCaller(t, Options{})
			err := c.Call(context.Background(), analysis.Webhook{Name: "h", URL: u, Retries: tt.retries}, testPayload)
			if want := fmt.Sprintf(tt.want, u, addr); errText(err) != want {
				t.Errorf("error = %q\nwant    %q", errText(err), want)
			}
			if got := len(s.got()); got != tt.waits {
				t.Errorf("%d backoff waits, want %d", got, tt.waits)
			}
		})
	}
}

func TestCallTimeoutWithHangingServer(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	c, _ := newCaller(t, Options{})
	start := time.Now()
	err := c.Call(context.Background(), analysis.Webhook{Name: "h", URL: srv.URL, Timeout: "50ms"}, testPayload)
	want := fmt.Sprintf("POST %[1]s giving up after 1 attempt(s): Post \"%[1]s\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)", srv.URL)
	if errText(err) != want {
		t.Errorf("error = %q\nwant    %q", errText(err), want)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("took %v; the 50ms timeout was not honoured", el)
	}
}

// roundTripFunc lets a test see each request without a network.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func okResponse(r *http.Request) *http.Response {
	return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("")), Header: http.Header{}, Request: r}
}

// TestTimeouts checks the timeout each call gets from the deadline the
// http.Client puts on the request, without waiting for it.
func TestTimeouts(t *testing.T) {
	tests := []struct {
		name    string
		version string
		event   bool
		timeout string
		want    time.Duration
	}{
		{"hook default", Version144, false, "", 10 * time.Second},
		{"hook len<2 is 10s", Version144, false, "5", 10 * time.Second},
		{"hook 1s", Version144, false, "1s", time.Second},
		{"hook 2m", Version144, false, "2m", 2 * time.Minute},
		{"hook on 1.36 same rule", Version136, false, "1s", time.Second},
		{"event 1.44 default", Version144, true, "", 10 * time.Second},
		{"event 1.44 uses the hook's", Version144, true, "1s", time.Second},
		{"event 1.36 always 5s", Version136, true, "1s", 5 * time.Second},
		{"event 1.36 always 5s (empty)", Version136, true, "", 5 * time.Second},
		{"event 1.36 always 5s (30s)", Version136, true, "30s", 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got time.Duration
			var start time.Time
			c, _ := newCaller(t, Options{Version: tt.version, Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				dl, ok := r.Context().Deadline()
				if !ok {
					t.Error("request has no deadline")
				}
				got = dl.Sub(start)
				return okResponse(r), nil
			})})
			hook := analysis.Webhook{Name: "h", URL: "http://127.0.0.1:1/", Timeout: tt.timeout}
			start = time.Now()
			var err error
			if tt.event {
				err = c.CallEvent(context.Background(), hook, testPayload, "m", "Normal", start)
			} else {
				err = c.Call(context.Background(), hook, testPayload)
			}
			if err != nil {
				t.Fatal(err)
			}
			if got < tt.want || got > tt.want+time.Second {
				t.Errorf("timeout ≈ %v, want %v", got, tt.want)
			}
		})
	}
}

func TestComputedTimeouts(t *testing.T) {
	c144, _ := newCaller(t, Options{})
	c136, _ := newCaller(t, Options{Version: Version136})
	for _, tt := range []struct{ timeout, hook, ev144, ev136 string }{
		{"", "10s", "10s", "5s"},
		{"5", "10s", "5", "5s"}, // Flagger's event path has no len<2 rule
		{"1s", "1s", "1s", "5s"},
		{"90s", "90s", "90s", "5s"},
	} {
		h := analysis.Webhook{Timeout: tt.timeout}
		if got := hookTimeout(h); got != tt.hook {
			t.Errorf("hookTimeout(%q) = %q, want %q", tt.timeout, got, tt.hook)
		}
		if got := c144.eventTimeout(h); got != tt.ev144 {
			t.Errorf("1.44 eventTimeout(%q) = %q, want %q", tt.timeout, got, tt.ev144)
		}
		if got := c136.eventTimeout(h); got != tt.ev136 {
			t.Errorf("1.36 eventTimeout(%q) = %q, want %q", tt.timeout, got, tt.ev136)
		}
	}
}

func TestBadTimeout(t *testing.T) {
	c, _ := newCaller(t, Options{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Error("no request may be sent")
		return okResponse(r), nil
	})})
	err := c.Call(context.Background(), analysis.Webhook{Name: "load", URL: "http://127.0.0.1/", Timeout: "1x"}, testPayload)
	if want := `webhook "load": timeout "1x": time: unknown unit "x" in duration "1x"`; errText(err) != want {
		t.Errorf("error = %q, want %q", errText(err), want)
	}
	err = c.CallEvent(context.Background(), analysis.Webhook{Name: "ev", URL: "http://127.0.0.1/", Timeout: "5"}, testPayload, "m", "Normal", time.Now())
	if want := `webhook "ev": timeout "5": time: missing unit in duration "5"`; errText(err) != want {
		t.Errorf("event error = %q, want %q", errText(err), want)
	}
}

func TestPayloadJSON(t *testing.T) {
	type seen struct{ method, contentType, body string }
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.Header.Get("Content-Type"), string(b)}
	}))
	defer srv.Close()
	c, _ := newCaller(t, Options{})
	ts := time.UnixMilli(1700000000123)
	p := testPayload
	p.Metadata = map[string]string{"ignored": "the hook's metadata replaces it"}

	tests := []struct {
		name string
		call func(hook analysis.Webhook) error
		md   map[string]string
		want string
	}{
		{"hook", func(h analysis.Webhook) error { return c.Call(context.Background(), h, p) },
			map[string]string{"type": "cmd", "cmd": "hey -z 1m"},
			`{"name":"podinfo","namespace":"test","phase":"Progressing","checksum":"abc","metadata":{"cmd":"hey -z 1m","type":"cmd"}}`},
		{"hook without metadata", func(h analysis.Webhook) error { return c.Call(context.Background(), h, p) },
			nil,
			`{"name":"podinfo","namespace":"test","phase":"Progressing","checksum":"abc"}`},
		{"event", func(h analysis.Webhook) error {
			return c.CallEvent(context.Background(), h, p, "Advance podinfo.test canary weight 5", "Normal", ts)
		},
			map[string]string{"eventType": "the hook's, loses", "channel": "#canary"},
			`{"name":"podinfo","namespace":"test","phase":"Progressing","checksum":"abc","metadata":{"channel":"#canary","eventMessage":"Advance podinfo.test canary weight 5","eventType":"Normal","timestamp":"1700000000123"}}`},
		{"event without hook metadata", func(h analysis.Webhook) error {
			return c.CallEvent(context.Background(), h, p, "Halt", "Warning", ts)
		},
			nil,
			`{"name":"podinfo","namespace":"test","phase":"Progressing","checksum":"abc","metadata":{"eventMessage":"Halt","eventType":"Warning","timestamp":"1700000000123"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(analysis.Webhook{Name: "h", URL: srv.URL, Metadata: tt.md}); err != nil {
				t.Fatal(err)
			}
			s := <-got
			if s.method != http.MethodPost || s.contentType != "application/json" {
				t.Errorf("%s with Content-Type %q, want POST application/json", s.method, s.contentType)
			}
			if s.body != tt.want {
				t.Errorf("body\n got %s\nwant %s", s.body, tt.want)
			}
		})
	}
}

func TestLoopbackOnly(t *testing.T) {
	c, _ := newCaller(t, Options{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if !IsLoopback(r.URL) {
			t.Errorf("request sent to %s", r.URL)
		}
		return okResponse(r), nil
	})})
	for _, tt := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:8080/", true},
		{"http://127.1.2.3/", true},
		{"http://localhost:9090/gate/check", true},
		{"http://LOCALHOST/", true},
		{"http://[::1]:9090/", true},
		{"http://example.com/", false},
		{"http://10.0.0.1/", false},
		{"http://[::2]/", false},
		{"http://flagger-loadtester.test/", false}, // the engine rewrites it first
		{"http://localhost.example.com/", false},
		{"/gate/check", false},
	} {
		err := c.Call(context.Background(), analysis.Webhook{Name: "gate", URL: tt.url}, testPayload)
		if tt.ok != (err == nil) {
			t.Errorf("%s: err = %v, want ok=%v", tt.url, err, tt.ok)
		}
		if !tt.ok && (!strings.HasPrefix(errText(err), `webhook "gate": refusing to call `+tt.url+": canarylab calls only loopback hooks") ||
			!strings.Contains(errText(err), "http://flagger-loadtester.<namespace>/gate/check")) {
			t.Errorf("%s: error %q does not explain the rule and the loadtester address", tt.url, errText(err))
		}
	}
}

func TestRedirectOffLoopbackRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://example.com/", http.StatusFound)
	}))
	defer srv.Close()
	c, _ := newCaller(t, Options{})
	err := c.Call(context.Background(), analysis.Webhook{Name: "h", URL: srv.URL}, testPayload)
	if !strings.Contains(errText(err), "refusing redirect to http://example.com/") {
		t.Errorf("error = %v, want the redirect refused", err)
	}
}

func TestRewrite(t *testing.T) {
	const base = "http://127.0.0.1:4000"
	for _, tt := range []struct{ in, want string }{
		{"http://flagger-loadtester.test/", base + "/"},
		{"http://flagger-loadtester.test", base + "/"},
		{"http://flagger-loadtester.test/gate/check", base + "/gate/check"},
		{"http://flagger-loadtester.test.svc.cluster.local:80/rollback/check", base + "/rollback/check"},
		{"http://flagger-loadtester:8080/gate/open?x=1", base + "/gate/open?x=1"},
		{"http://flagger-loadtester/", base + "/"},
		{"http://Flagger-Loadtester.Test/", base + "/"},
		{"https://flagger-loadtester.test/", "https://flagger-loadtester.test/"},
		{"http://flagger-loadtester-x.test/", "http://flagger-loadtester-x.test/"},
		{"http://my-flagger-loadtester.test/", "http://my-flagger-loadtester.test/"},
		{"http://127.0.0.1:9090/gate/check", "http://127.0.0.1:9090/gate/check"},
		{"://bad", "://bad"},
	} {
		if got := Rewrite(tt.in, base); got != tt.want {
			t.Errorf("Rewrite(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := Rewrite(tt.in, base+"/"); got != tt.want {
			t.Errorf("Rewrite(%q) with a trailing-slash base = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCancelDuringBackoff(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, _ := newCaller(t, Options{Sleep: func(ctx context.Context, d time.Duration) error {
		cancel()
		return ctx.Err()
	}})
	err := c.Call(ctx, analysis.Webhook{Name: "h", URL: srv.URL, Retries: 3}, testPayload)
	if !errors.Is(err, context.Canceled) || errText(err) != `webhook "h": context canceled` {
		t.Errorf("error = %v, want the hook named and context.Canceled", err)
	}
}

func TestSleepErrorAborts(t *testing.T) {
	var attempts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	boom := errors.New("clock stopped")
	c, _ := newCaller(t, Options{Sleep: func(context.Context, time.Duration) error { return boom }})
	err := c.Call(context.Background(), analysis.Webhook{Name: "h", URL: srv.URL, Retries: 3}, testPayload)
	if !errors.Is(err, boom) || attempts.Load() != 1 {
		t.Errorf("error = %v after %d attempts, want %v after 1", err, attempts.Load(), boom)
	}
}

func TestDisableTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	srv.StartTLS()
	defer srv.Close()
	for _, tt := range []struct {
		version    string
		disableTLS bool
		ok         bool
	}{
		{Version144, false, false},
		{Version144, true, true},
		{Version136, true, false}, // 1.36 has no disableTLS field
	} {
		c, _ := newCaller(t, Options{Version: tt.version})
		err := c.Call(context.Background(), analysis.Webhook{Name: "h", URL: srv.URL, DisableTLS: tt.disableTLS, Retries: 2}, testPayload)
		if tt.ok != (err == nil) {
			t.Errorf("%s disableTLS=%v: err = %v, want ok=%v", tt.version, tt.disableTLS, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "giving up after 1 attempt(s)") {
			t.Errorf("certificate errors must not be retried: %v", err)
		}
	}
}

func TestNewCallerVersion(t *testing.T) {
	for _, v := range []string{"", "1.44", "1.36"} {
		if _, err := NewCaller(Options{Version: v}); err != nil {
			t.Errorf("version %q: %v", v, err)
		}
	}
	if _, err := NewCaller(Options{Version: "1.40"}); err == nil {
		t.Error("version 1.40 accepted")
	}
}
