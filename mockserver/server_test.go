package mockserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/canarylab/canarylab/mockserver/behavior"
	"github.com/canarylab/canarylab/mockserver/strictyaml"
)

func TestDefaultRoute(t *testing.T) {
	srv, _ := newServer(t, "", Options{VersionLabel: "stable"})
	h := srv.Handler()

	rec := do(h, http.MethodGet, "/any/path/at/all?x=1", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", rec.Code)
	}
	wantBody := `{"service":"canarylab-mock","version":"stable"}` + "\n"
	if got := rec.Body.String(); got != wantBody {
		t.Errorf("body = %q, want %q", got, wantBody)
	}
	for name, want := range map[string]string{
		HeaderVersion:    "stable",
		"Server-Timing":  "injected-delay;dur=0",
		"Content-Type":   "application/json",
		"Content-Length": strconv.Itoa(len(wantBody)),
		HeaderInjected:   "",
	} {
		if got := rec.Header().Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}

	head := do(h, http.MethodHead, "/", nil)
	if head.Code != http.StatusOK || head.Body.Len() != 0 {
		t.Errorf("HEAD: status %d, %d body bytes; want 200 and no body", head.Code, head.Body.Len())
	}
	if got := head.Header().Get("Content-Length"); got != strconv.Itoa(len(wantBody)) {
		t.Errorf("HEAD Content-Length = %q, want %d", got, len(wantBody))
	}

	for _, probe := range []string{"/healthz", "/readyz"} {
		rec := do(h, http.MethodGet, probe, nil)
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"ok"`) {
			t.Errorf("GET %s = %d %q, want 200 ok", probe, rec.Code, rec.Body.String())
		}
	}

	c := srv.Counts()
	if c.Requests != 2 || c.Statuses["200"] != 2 {
		t.Errorf("counts: %d requests, statuses %v; want 2 requests (probes are not counted)", c.Requests, c.Statuses)
	}
}

func TestDisableProbes(t *testing.T) {
	srv, _ := newServer(t, "server: {disableProbes: true}", Options{})
	srv.SetReady(false)
	// Without the probe routes, /readyz is an ordinary path of the catch-all.
	rec := do(srv.Handler(), http.MethodGet, "/readyz", nil)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "canarylab-mock") {
		t.Errorf("GET /readyz = %d %q, want the default route's answer", rec.Code, rec.Body.String())
	}
	if rec := doAdmin(srv, http.MethodGet, "/readyz", ""); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("admin /readyz = %d, want 503", rec.Code)
	}
}

func TestRequestParams(t *testing.T) {
	tests := []struct {
		name         string
		target       string
		headers      []string
		wantCode     int
		wantInjected string
		wantTiming   string
		minElapsed   time.Duration
	}{
		{name: "status query", target: "/?status=503", wantCode: 503, wantInjected: "error", wantTiming: "injected-delay;dur=0"},
		{name: "status header", target: "/", headers: []string{HeaderStatus, "502"}, wantCode: 502, wantInjected: "error"},
		{name: "query wins over header", target: "/?status=500", headers: []string{HeaderStatus, "503"}, wantCode: 500, wantInjected: "error"},
		{name: "status never", target: "/?status=503:0", wantCode: 200},
		{name: "delay query", target: "/?delay=20ms", wantCode: 200, wantInjected: "delay", wantTiming: "injected-delay;dur=20", minElapsed: 20 * time.Millisecond},
		{name: "delay header", target: "/", headers: []string{HeaderDelay, "15ms"}, wantCode: 200, wantInjected: "delay", wantTiming: "injected-delay;dur=15", minElapsed: 15 * time.Millisecond},
		{name: "delay distribution", target: "/?delay=uniform(5ms,10ms)", wantCode: 200, wantInjected: "delay", minElapsed: 5 * time.Millisecond},
		{name: "delay and status", target: "/?delay=10ms&status=504", wantCode: 504, wantInjected: "delay,error", wantTiming: "injected-delay;dur=10", minElapsed: 10 * time.Millisecond},
		{name: "fault header slow body", target: "/", headers: []string{HeaderFault, "slowBody(60ms)"}, wantCode: 200, wantInjected: "slow_body", minElapsed: 60 * time.Millisecond},
		{name: "status with slow body", target: "/?status=503&fault=slow_body(50ms)", wantCode: 503, wantInjected: "error,slow_body", minElapsed: 50 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, _ := newServer(t, "", Options{})
			start := time.Now()
			rec := do(srv.Handler(), http.MethodGet, tc.target, nil, tc.headers...)
			elapsed := time.Since(start)
			if rec.Code != tc.wantCode {
				t.Fatalf("status = %d, want %d (body %q)", rec.Code, tc.wantCode, rec.Body.String())
			}
			if got := rec.Header().Get(HeaderInjected); got != tc.wantInjected {
				t.Errorf("%s = %q, want %q", HeaderInjected, got, tc.wantInjected)
			}
			if got := rec.Header().Get(HeaderVersion); got != "v1" {
				t.Errorf("%s = %q, want v1", HeaderVersion, got)
			}
			if tc.wantTiming != "" {
				if got := rec.Header().Get("Server-Timing"); got != tc.wantTiming {
					t.Errorf("Server-Timing = %q, want %q", got, tc.wantTiming)
				}
			}
			if elapsed < tc.minElapsed {
				t.Errorf("took %s, want at least %s", elapsed, tc.minElapsed)
			}
			if tc.wantCode >= 500 {
				var body map[string]any
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body["error"] != "injected" || body["status"] != float64(tc.wantCode) {
					t.Errorf("error body = %q (%v), want an injected-error document", rec.Body.String(), err)
				}
			}
			if got := srv.Counts().RequestDriven; got != 1 {
				t.Errorf("Counts().RequestDriven = %d, want 1", got)
			}
		})
	}
}

func TestRequestStatusMix(t *testing.T) {
	srv, _ := newServer(t, "seed: 3", Options{})
	const n = 400
	got := map[int]int{}
	for range n {
		got[do(srv.Handler(), http.MethodGet, "/?status=503:0.3,500:0.2", nil).Code]++
	}
	checkBinomial(t, "503", got[503], n, 0.3)
	checkBinomial(t, "500", got[500], n, 0.2)
	checkBinomial(t, "200", got[200], n, 0.5)
	if len(got) != 3 {
		t.Errorf("statuses %v, want only 200, 500 and 503", got)
	}
}

func TestBadRequestParams(t *testing.T) {
	tests := []struct {
		target  string
		headers []string
		param   string
	}{
		{target: "/?delay=fast", param: "delay"},
		{target: "/?delay=-5ms", param: "delay"},
		{target: "/?delay=lognormal(50ms)", param: "delay"},
		{target: "/", headers: []string{HeaderDelay, "10"}, param: "delay"},
		{target: "/?status=abc", param: "status"},
		{target: "/?status=503:2", param: "status"},
		{target: "/?status=99", param: "status"},
		{target: "/", headers: []string{HeaderStatus, "teapot"}, param: "status"},
		{target: "/?fault=explode", param: "fault"},
		{target: "/?fault=reset,close", param: "fault"},
		{target: "/?fault=truncate(2)", param: "fault"},
		{target: "/", headers: []string{HeaderFault, "hang(soon)"}, param: "fault"},
	}
	srv, _ := newServer(t, "", Options{})
	for _, tc := range tests {
		rec := do(srv.Handler(), http.MethodGet, tc.target, nil, tc.headers...)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%s %v: status %d, want 400", tc.target, tc.headers, rec.Code)
			continue
		}
		if body := rec.Body.String(); !strings.HasPrefix(body, tc.param+": ") {
			t.Errorf("%s %v: body %q does not name the parameter %q", tc.target, tc.headers, body, tc.param)
		}
		if got := rec.Header().Get(HeaderVersion); got != "v1" {
			t.Errorf("%s: %s = %q", tc.target, HeaderVersion, got)
		}
	}
	c := srv.Counts()
	if got := c.Rejected["bad_request_fault"]; got != uint64(len(tests)) {
		t.Errorf("Counts().Rejected[bad_request_fault] = %d, want %d", got, len(tests))
	}
	if c.Statuses["400"] != uint64(len(tests)) || c.RequestDriven != 0 {
		t.Errorf("counts: statuses %v, requestDriven %d", c.Statuses, c.RequestDriven)
	}
	if got := gather(t, srv).value("canarylab_mock_rejected_requests_total", map[string]string{"reason": "bad_request_fault"}); got != float64(len(tests)) {
		t.Errorf("rejected metric = %v, want %d", got, len(tests))
	}
}

// TestRequestParamTrailingComma: the three lists read a trailing comma
// alike.
func TestRequestParamTrailingComma(t *testing.T) {
	srv, _ := newServer(t, "", Options{})
	for _, tc := range []struct {
		target string
		want   int
	}{
		{"/?status=503:1,", 503},
		{"/?delay=1ms:1,", 200},
	} {
		if rec := do(srv.Handler(), http.MethodGet, tc.target, nil); rec.Code != tc.want {
			t.Errorf("%s = %d %q, want %d", tc.target, rec.Code, rec.Body.String(), tc.want)
		}
	}
	for _, target := range []string{"/?fault=slowBody(10ms):1,", "/?fault=slowBody(10ms),"} {
		if rec := do(srv.Handler(), http.MethodGet, target, nil); rec.Code != 200 {
			regressed(t, fmt.Sprintf("respond.go ParseRequestFaults: the empty entry after a trailing comma in ?fault= becomes \":1\"; %s answers %d %q", target, rec.Code, strings.TrimSpace(rec.Body.String())))
		}
	}
}

func TestRequestFaultsDisabled(t *testing.T) {
	srv, _ := newServer(t, "requestFaults: {disabled: true}", Options{})
	for _, tc := range []struct {
		target  string
		headers []string
	}{
		{target: "/?status=503&delay=nonsense&fault=bogus"},
		{target: "/", headers: []string{HeaderStatus, "500", HeaderDelay, "5s", HeaderFault, "reset"}},
	} {
		start := time.Now()
		rec := do(srv.Handler(), http.MethodGet, tc.target, nil, tc.headers...)
		if rec.Code != http.StatusOK || rec.Header().Get(HeaderInjected) != "" {
			t.Errorf("%s %v: status %d, injected %q; want a plain 200", tc.target, tc.headers, rec.Code, rec.Header().Get(HeaderInjected))
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: took %s, the delay should have been ignored", tc.target, d)
		}
	}
	if c := srv.Counts(); c.RequestDriven != 0 || c.Rejected["bad_request_fault"] != 0 {
		t.Errorf("counts: requestDriven %d, rejected %v; want none", c.RequestDriven, c.Rejected)
	}
}

func TestRequestDelayCappedByMaxDelay(t *testing.T) {
	srv, _ := newServer(t, "requestFaults: {maxDelay: 20ms}", Options{})
	start := time.Now()
	rec := do(srv.Handler(), http.MethodGet, "/?delay=1s", nil)
	if elapsed := time.Since(start); elapsed < 20*time.Millisecond || elapsed > 900*time.Millisecond {
		t.Errorf("took %s, want the delay cut to 20ms", elapsed)
	}
	if want := `injected-delay;dur=20;desc="capped from 1000ms"`; rec.Header().Get("Server-Timing") != want {
		t.Errorf("Server-Timing = %q, want %q", rec.Header().Get("Server-Timing"), want)
	}
	if got := srv.Counts().DelayCapped; got != 1 {
		t.Errorf("Counts().DelayCapped = %d, want 1", got)
	}
	m := gather(t, srv)
	if got := m.value("canarylab_mock_injected_delay_capped_total", map[string]string{"source": "request"}); got != 1 {
		t.Errorf("capped{source=request} = %v, want 1", got)
	}
	if got := m.value("canarylab_mock_injected_delay_capped_total", map[string]string{"source": "profile"}); got != 0 {
		t.Errorf("capped{source=profile} = %v, want 0", got)
	}
}

func TestProfileLatencyCap(t *testing.T) {
	srv, _ := newServer(t, `profile: {latency: "50ms cap 10ms"}`, Options{})
	start := time.Now()
	rec := do(srv.Handler(), http.MethodGet, "/", nil)
	if elapsed := time.Since(start); elapsed < 10*time.Millisecond {
		t.Errorf("took %s, want at least the capped 10ms", elapsed)
	}
	if rec.Code != http.StatusOK || rec.Header().Get(HeaderInjected) != "delay" {
		t.Errorf("status %d, injected %q", rec.Code, rec.Header().Get(HeaderInjected))
	}
	timing := rec.Header().Get("Server-Timing")
	if want := `injected-delay;dur=10;desc="capped from 50ms"`; timing != want {
		t.Errorf("Server-Timing = %q, want %q", timing, want)
	}
	if !strings.Contains(timing, "capped") {
		t.Errorf("Server-Timing %q does not mention the cap", timing)
	}
	c := srv.Counts()
	if c.DelayCapped != 1 || c.Delayed != 1 || math.Abs(c.DelaySeconds-0.010) > 1e-9 {
		t.Errorf("counts: capped %d, delayed %d, delaySeconds %v; want 1, 1, 0.01", c.DelayCapped, c.Delayed, c.DelaySeconds)
	}
	m := gather(t, srv)
	if got := m.value("canarylab_mock_injected_delay_capped_total", map[string]string{"source": "profile", "version": "v1"}); got != 1 {
		t.Errorf("canarylab_mock_injected_delay_capped_total{source=profile} = %v, want 1", got)
	}
	if got := m.value("canarylab_mock_injected_delay_seconds", nil); got != 1 {
		t.Errorf("injected delay histogram count = %v, want 1", got)
	}
}

// faultResult is what a client saw of one request.
type faultResult struct {
	resp    *http.Response
	body    []byte
	readErr error
	err     error
	elapsed time.Duration
}

func getOverTCP(t *testing.T, client *http.Client, url string) faultResult {
	t.Helper()
	start := time.Now()
	resp, err := client.Get(url)
	var r faultResult
	r.resp, r.err = resp, err
	if err == nil {
		r.body, r.readErr = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	r.elapsed = time.Since(start)
	return r
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

func TestConnectionFaults(t *testing.T) {
	noResponse := func(kind string, want func(error) bool) func(t *testing.T, srv *Server, r faultResult) {
		return func(t *testing.T, srv *Server, r faultResult) {
			if r.err == nil {
				t.Fatalf("got a response (%d %q), want the connection to fail", r.resp.StatusCode, r.body)
			}
			if !want(r.err) {
				t.Fatalf("error %v (%T) is not what a %s looks like", r.err, r.err, kind)
			}
			waitFor(t, kind+" counted", time.Second, func() bool {
				c := srv.Counts()
				return c.Faults[kind] == 1 && c.Statuses["0"] == 1
			})
		}
	}
	isReset := func(err error) bool { return errors.Is(err, syscall.ECONNRESET) }
	truncated := func(bodyLen int) func(t *testing.T, srv *Server, r faultResult) {
		return func(t *testing.T, srv *Server, r faultResult) {
			if r.err != nil {
				t.Fatal(r.err)
			}
			if !errors.Is(r.readErr, io.ErrUnexpectedEOF) {
				t.Errorf("reading the body: %v, want io.ErrUnexpectedEOF", r.readErr)
			}
			if r.resp.ContentLength != int64(bodyLen) {
				t.Errorf("Content-Length %d, want the full %d", r.resp.ContentLength, bodyLen)
			}
			if want := bodyLen / 2; len(r.body) != want {
				t.Errorf("got %d body bytes, want %d (half)", len(r.body), want)
			}
			if r.resp.Header.Get(HeaderInjected) != "truncate" {
				t.Errorf("%s = %q", HeaderInjected, r.resp.Header.Get(HeaderInjected))
			}
			waitFor(t, "truncate counted", time.Second, func() bool { return srv.Counts().Faults["truncate"] == 1 })
		}
	}
	slow := func(bodyLen int) func(t *testing.T, srv *Server, r faultResult) {
		return func(t *testing.T, srv *Server, r faultResult) {
			if r.err != nil || r.readErr != nil {
				t.Fatalf("request: %v, body: %v", r.err, r.readErr)
			}
			if len(r.body) != bodyLen {
				t.Errorf("got %d body bytes, want all %d", len(r.body), bodyLen)
			}
			if r.elapsed < 290*time.Millisecond {
				t.Errorf("took %s, want the body spread over 300ms", r.elapsed)
			}
			if r.resp.Header.Get(HeaderInjected) != "slow_body" {
				t.Errorf("%s = %q", HeaderInjected, r.resp.Header.Get(HeaderInjected))
			}
			if srv.Counts().Faults["slow_body"] != 1 {
				t.Errorf("slow_body not counted: %v", srv.Counts().Faults)
			}
		}
	}
	hangClosed := func(t *testing.T, srv *Server, r faultResult) {
		noResponse("hang", isEOF)(t, srv, r)
		if r.elapsed < 200*time.Millisecond {
			t.Errorf("connection closed after %s, want the 200ms hang first", r.elapsed)
		}
	}
	defaultBody := len(`{"service":"canarylab-mock","version":"v1"}` + "\n")

	tests := []struct {
		name    string
		config  string
		path    string
		timeout time.Duration
		check   func(t *testing.T, srv *Server, r faultResult)
	}{
		{name: "reset param", path: "/?fault=reset", check: noResponse("reset", isReset)},
		{name: "reset profile", config: "profile: {faults: {reset: 1}}", path: "/", check: noResponse("reset", isReset)},
		{name: "close param", path: "/?fault=close", check: noResponse("close", isEOF)},
		{name: "close profile short form", config: `profile: {faults: "close:1"}`, path: "/", check: noResponse("close", isEOF)},
		{name: "hang until client timeout", path: "/?fault=hang", timeout: time.Second, check: func(t *testing.T, srv *Server, r faultResult) {
			var ne net.Error
			if !errors.As(r.err, &ne) || !ne.Timeout() {
				t.Fatalf("error %v, want the client's timeout", r.err)
			}
			waitFor(t, "hang counted", time.Second, func() bool { return srv.Counts().Faults["hang"] == 1 })
			// The server notices the client leaving and ends the handler.
			waitFor(t, "hanging handler to end", 2*time.Second, func() bool { return srv.Status().InFlight == 0 })
		}},
		{name: "hang param short", path: "/?fault=hang(200ms)", check: hangClosed},
		{name: "hang profile short", config: "profile: {faults: {hang: {rate: 1, duration: 200ms}}}", path: "/", check: hangClosed},
		{name: "slow body param", path: "/?fault=slowBody(300ms)", check: slow(defaultBody)},
		{name: "slow body profile", config: `
profile: {faults: "slowBody(300ms):1"}
routes: [{path: "/*", bodySize: 2KiB}]`, path: "/x", check: slow(2048)},
		{name: "truncate param", path: "/?fault=truncate(0.5)", check: truncated(defaultBody)},
		{name: "truncate profile", config: `
profile: {faults: {truncate: {rate: 1, fraction: 0.5}}}
routes: [{path: /blob, bodySize: 1000}]`, path: "/blob", check: truncated(1000)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, _ := newServer(t, tc.config, Options{})
			run := startServer(t, srv)
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			tc.check(t, srv, getOverTCP(t, newClient(t, timeout), run.URL()+tc.path))
		})
	}
}

func TestRoutes(t *testing.T) {
	srv, _ := newServer(t, `
routes:
- name: user
  method: GET
  path: /users/:id
  template: 'user {{.Params.id}} on {{.Version}} via {{.Method}} q={{index .Query "q" 0}} h={{.Header.Get "X-Who"}}'
- method: POST
  path: /items
  status: 201
  headers: {x-custom: hello, content-type: application/xml}
  body: <ok/>
- path: /blob
  bodySize: 1KiB
- method: PUT
  path: /echo/:name
  echo: true
- path: /json
  body: '{"a": 1}'
- path: /static/*
  body: static
`, Options{VersionLabel: "canary"})
	h := srv.Handler()

	t.Run("template", func(t *testing.T) {
		rec := do(h, http.MethodGet, "/users/42?q=find", nil, "X-Who", "me")
		if want := "user 42 on canary via GET q=find h=me"; rec.Code != 200 || rec.Body.String() != want {
			t.Errorf("got %d %q, want 200 %q", rec.Code, rec.Body.String(), want)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("Content-Type = %q", ct)
		}
		if rec := do(h, http.MethodPost, "/users/42", nil); rec.Code == 200 {
			t.Errorf("POST to a GET route answered 200")
		}
	})
	t.Run("status headers body", func(t *testing.T) {
		rec := do(h, http.MethodPost, "/items", strings.NewReader("ignored"))
		if rec.Code != 201 || rec.Body.String() != "<ok/>" {
			t.Errorf("got %d %q, want 201 <ok/>", rec.Code, rec.Body.String())
		}
		if got := rec.Header().Get("X-Custom"); got != "hello" {
			t.Errorf("X-Custom = %q", got)
		}
		if got := rec.Header().Get("Content-Type"); got != "application/xml" {
			t.Errorf("Content-Type = %q, want the configured application/xml", got)
		}
	})
	t.Run("bodySize", func(t *testing.T) {
		rec := do(h, http.MethodGet, "/blob", nil)
		if rec.Code != 200 || rec.Body.Len() != 1024 {
			t.Fatalf("got %d with %d bytes, want 200 with 1024", rec.Code, rec.Body.Len())
		}
		if !bytes.Equal(rec.Body.Bytes(), generatedBody(1024)) || rec.Body.Bytes()[1023] != '\n' {
			t.Errorf("generated body is not the stable generated one")
		}
		if got := rec.Header().Get("Content-Type"); got != "application/octet-stream" {
			t.Errorf("Content-Type = %q", got)
		}
	})
	t.Run("echo", func(t *testing.T) {
		rec := do(h, http.MethodPut, "/echo/bob?x=1&x=2", strings.NewReader("payload"), "X-Test", "t")
		if rec.Code != 200 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
		}
		got := decodeJSON[echoedRequest](t, rec)
		if got.Method != "PUT" || got.Path != "/echo/bob" || got.Body != "payload" || got.Version != "canary" ||
			!slices.Equal(got.Query["x"], []string{"1", "2"}) || got.Params["name"] != "bob" ||
			!slices.Equal(got.Headers["X-Test"], []string{"t"}) {
			t.Errorf("echoed %+v", got)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
	})
	t.Run("sniffed json", func(t *testing.T) {
		rec := do(h, http.MethodDelete, "/json", nil)
		if rec.Code != 200 || rec.Body.String() != `{"a": 1}` || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("got %d %q %q", rec.Code, rec.Body.String(), rec.Header().Get("Content-Type"))
		}
	})
	t.Run("wildcard", func(t *testing.T) {
		if rec := do(h, http.MethodGet, "/static/a/b/c.css", nil); rec.Code != 200 || rec.Body.String() != "static" {
			t.Errorf("got %d %q", rec.Code, rec.Body.String())
		}
	})
	t.Run("unrouted", func(t *testing.T) {
		if rec := do(h, http.MethodGet, "/nowhere", nil); rec.Code != http.StatusNotFound {
			t.Errorf("GET /nowhere = %d, want 404 when routes are given", rec.Code)
		}
		if rec := do(h, http.MethodGet, "/healthz", nil); rec.Code != 200 {
			t.Errorf("GET /healthz = %d, the probes stay", rec.Code)
		}
	})
	t.Run("metric route labels", func(t *testing.T) {
		m := gather(t, srv)
		if got := m.value("canarylab_mock_requests_total", map[string]string{"route": "user", "code": "200", "version": "canary"}); got != 1 {
			t.Errorf("requests{route=user} = %v, want 1 (named route)", got)
		}
		if got := m.value("canarylab_mock_requests_total", map[string]string{"route": "/blob"}); got != 1 {
			t.Errorf("requests{route=/blob} = %v, want 1 (the path labels an unnamed route)", got)
		}
	})
}

// TestCustomMethod: the default config answers every path, whatever the
// method; a method outside the standard ones is recorded as OTHER.
func TestCustomMethod(t *testing.T) {
	srv, _ := newServer(t, "", Options{})
	rec := do(srv.Handler(), "BREW", "/", nil)
	if rec.Code != http.StatusOK {
		regressed(t, fmt.Sprintf("state.go buildRouter: echo.Any registers only the standard methods, so a custom method (BREW) gets echo's %d, uncounted, without %s; methodLabel's OTHER is never used", rec.Code, HeaderVersion))
	}
	if got := gather(t, srv).value("canarylab_mock_requests_total", map[string]string{"method": "OTHER", "code": "200"}); got != 1 {
		t.Errorf("requests{method=OTHER} = %v, want 1", got)
	}
}

// TestRouteAnyDoesNotShadowMethod: a route for any method listed after a
// route for one method on the same path must not take the specific one's
// requests.
func TestRouteAnyDoesNotShadowMethod(t *testing.T) {
	srv, _ := newServer(t, `
routes:
- {method: GET, path: /x, body: specific}
- {path: /x, body: any}
`, Options{})
	if rec := do(srv.Handler(), http.MethodPost, "/x", nil); rec.Body.String() != "any" {
		t.Fatalf("POST /x = %q, want any", rec.Body.String())
	}
	if rec := do(srv.Handler(), http.MethodGet, "/x", nil); rec.Body.String() != "specific" {
		regressed(t, "state.go buildRouter: an ANY route registered after a GET route on the same path replaces it (echo.Any re-adds GET); GET /x answered "+strconv.Quote(rec.Body.String()))
	}
}

// TestTemplateDefiningRouteName: a template that Validate accepts must
// compile when the config is applied, whatever the route's name.
func TestTemplateDefiningRouteName(t *testing.T) {
	for _, doc := range []string{
		`routes: [{name: x, path: /a, template: 'main{{define "x"}}other{{end}}'}]`,
		`routes: [{path: /a, template: 'main{{define "body"}}other{{end}}'}]`,
	} {
		_, parseErr := ParseConfig([]byte(doc))
		_, compileErr := (&Server{version: "v1"}).compile(Config{Routes: []Route{mustRoute(t, doc)}})
		if (parseErr == nil) != (compileErr == nil) {
			regressed(t, fmt.Sprintf("config.go Route.validate parses the template as %q but state.go compileRoute parses it under the route's label, so a {{define}} of either name is judged differently: validate: %v; compile: %v", "body", parseErr, compileErr))
		}
	}
}

// mustRoute decodes the first route of doc without validating it.
func mustRoute(t *testing.T, doc string) Route {
	t.Helper()
	var c Config
	if err := strictyaml.Decode([]byte(doc), &c); err != nil || len(c.Routes) == 0 {
		t.Fatalf("decode %q: %v", doc, err)
	}
	return c.Routes[0]
}

func TestRouteBypassAndProfileOverlay(t *testing.T) {
	srv, _ := newServer(t, `
profile: {errors: "503", latency: 5ms}
routes:
- {path: /plain}
- {path: /ok, profile: {errors: {rate: 0}}}
- {path: /fast, profile: {latency: 1ms}}
- {path: /own-health, bypass: true}
`, Options{})
	tests := []struct {
		target       string
		wantCode     int
		wantTiming   string
		wantInjected string
	}{
		{"/plain", 503, "injected-delay;dur=5", "delay,error"},
		{"/ok", 200, "injected-delay;dur=5", "delay"},
		{"/fast", 503, "injected-delay;dur=1", "delay,error"},
		{"/own-health", 200, "injected-delay;dur=0", ""},
		{"/own-health?status=500&delay=1s", 200, "injected-delay;dur=0", ""},
	}
	for _, tc := range tests {
		rec := do(srv.Handler(), http.MethodGet, tc.target, nil)
		if rec.Code != tc.wantCode || rec.Header().Get("Server-Timing") != tc.wantTiming || rec.Header().Get(HeaderInjected) != tc.wantInjected {
			t.Errorf("%s: got %d timing %q injected %q; want %d %q %q", tc.target, rec.Code,
				rec.Header().Get("Server-Timing"), rec.Header().Get(HeaderInjected), tc.wantCode, tc.wantTiming, tc.wantInjected)
		}
	}
}

func TestRules(t *testing.T) {
	srv, _ := newServer(t, `
rules:
- name: canary header
  when: {headers: {x-canary: "y*"}}
  profile: {errors: "502"}
- when: {query: {mode: slow}}
  profile: {errors: "504"}
- when: {methods: [DELETE]}
  profile: {errors: "500"}
- when: {path: "/api/*/admin"}
  profile: {errors: "403"}
- when: {path: "/x/?", headers: {X-Any: "*"}}
  profile: {errors: "418"}
- when: {path: /routed}
  profile: {errors: "409"}
routes:
- {path: /routed, profile: {errors: "501"}}
- {path: /*}
`, Options{})
	tests := []struct {
		method, target string
		headers        []string
		want           int
	}{
		{"GET", "/", nil, 200},
		{"GET", "/", []string{"X-Canary", "yes"}, 502},
		{"GET", "/", []string{"X-Canary", "no"}, 200},
		{"GET", "/?mode=slow", nil, 504},
		{"GET", "/?mode=slower", nil, 200},
		{"DELETE", "/", nil, 500},
		{"DELETE", "/", []string{"X-Canary", "y"}, 502}, // first match wins
		{"GET", "/api/v1/admin", nil, 403},
		{"GET", "/api/v1/x/admin", nil, 403}, // * spans slashes
		{"GET", "/api/admin", nil, 200},
		{"GET", "/x/1", []string{"X-Any", ""}, 418},
		{"GET", "/x/1", nil, 200},                     // the header is missing
		{"GET", "/x/12", []string{"X-Any", "v"}, 200}, // ? is one character
		{"GET", "/routed", nil, 409},                  // a rule lies over the route's profile
	}
	for _, tc := range tests {
		if rec := do(srv.Handler(), tc.method, tc.target, nil, tc.headers...); rec.Code != tc.want {
			t.Errorf("%s %s %v = %d, want %d", tc.method, tc.target, tc.headers, rec.Code, tc.want)
		}
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true},
		{"*", "", true},
		{"*", "anything/at/all", true},
		{"/a/*", "/a/b/c", true},
		{"/a/*/c", "/a/b/x/c", true},
		{"/a/?", "/a/b", true},
		{"/a/?", "/a/bc", false},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYbZ", false},
		{"abc", "abd", false},
		{"**", "x", true},
		{"*x", "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy", false},
	}
	for _, tc := range tests {
		if got := glob(tc.pattern, tc.s); got != tc.want {
			t.Errorf("glob(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

func TestPhases(t *testing.T) {
	t.Run("steps", func(t *testing.T) {
		srv, clock := newServer(t, `
profile: {latency: 2ms}
phases:
  steps:
  - {name: healthy, duration: 10s}
  - {name: broken, duration: 5s, profile: {errors: "503"}}
  - {name: recovered}
`, Options{})
		check := func(wantIndex int, wantName string, wantCode int) {
			t.Helper()
			rec := do(srv.Handler(), http.MethodGet, "/", nil)
			if rec.Code != wantCode {
				t.Errorf("status %d, want %d", rec.Code, wantCode)
			}
			if rec.Header().Get("Server-Timing") != "injected-delay;dur=2" {
				t.Errorf("the base profile's latency is lost: %q", rec.Header().Get("Server-Timing"))
			}
			ps := srv.Phase()
			if !ps.Configured || !ps.Started || ps.Index != wantIndex || ps.Name != wantName {
				t.Errorf("Phase() = %+v, want index %d %q", ps, wantIndex, wantName)
			}
			if got := gather(t, srv).value("canarylab_mock_phase", nil); got != float64(wantIndex) {
				t.Errorf("canarylab_mock_phase = %v, want %d", got, wantIndex)
			}
		}
		check(0, "healthy", 200)
		if ps := srv.Phase(); ps.Remaining != "10s" || ps.Elapsed != "0s" {
			t.Errorf("Phase() at start = %+v", ps)
		}
		clock.Advance(9 * time.Second)
		check(0, "healthy", 200)
		clock.Advance(time.Second)
		check(1, "broken", 503)
		if ps := srv.Phase(); ps.Remaining != "5s" || ps.Profile != "errors=503:1" {
			t.Errorf("Phase() in step 1 = %+v", ps)
		}
		clock.Advance(5 * time.Second)
		check(2, "recovered", 200)
		clock.Advance(time.Hour)
		check(2, "recovered", 200)
		if ps := srv.Phase(); ps.Remaining != "" {
			t.Errorf("the last step lasts forever, but Remaining = %q", ps.Remaining)
		}
	})
	t.Run("repeat", func(t *testing.T) {
		srv, clock := newServer(t, `
phases:
  repeat: true
  steps:
  - {duration: 10s, profile: {errors: "500"}}
  - {duration: 10s, profile: {errors: "503"}}
`, Options{})
		for _, step := range []struct {
			advance time.Duration
			want    int
		}{{0, 500}, {10 * time.Second, 503}, {10 * time.Second, 500}, {15 * time.Second, 503}, {100 * time.Second, 503}, {5 * time.Second, 500}} {
			clock.Advance(step.advance)
			if rec := do(srv.Handler(), http.MethodGet, "/", nil); rec.Code != step.want {
				t.Errorf("after +%s: status %d, want %d (phase %+v)", step.advance, rec.Code, step.want, srv.Phase())
			}
		}
	})
	t.Run("onTrigger", func(t *testing.T) {
		srv, clock := newServer(t, `
phases:
  start: onTrigger
  steps:
  - {duration: 10s, profile: {errors: "503"}}
  - {profile: {errors: "500"}}
`, Options{})
		clock.Advance(time.Hour)
		if rec := do(srv.Handler(), http.MethodGet, "/", nil); rec.Code != 200 {
			t.Errorf("before the trigger: status %d, want 200", rec.Code)
		}
		if ps := srv.Phase(); !ps.Configured || ps.Started || ps.Index != -1 || len(ps.Steps) != 2 {
			t.Errorf("Phase() before the trigger = %+v", ps)
		}
		if err := srv.StartPhases(); err != nil {
			t.Fatal(err)
		}
		if rec := do(srv.Handler(), http.MethodGet, "/", nil); rec.Code != 503 {
			t.Errorf("after StartPhases: status %d, want 503", rec.Code)
		}
		clock.Advance(10 * time.Second)
		if rec := do(srv.Handler(), http.MethodGet, "/", nil); rec.Code != 500 {
			t.Errorf("after 10s: status %d, want 500", rec.Code)
		}
		// Restarting goes back to the first step.
		if rec := doAdmin(srv, http.MethodPost, "/phases/start", ""); rec.Code != 200 {
			t.Fatalf("POST /phases/start = %d %s", rec.Code, rec.Body.String())
		}
		if rec := do(srv.Handler(), http.MethodGet, "/", nil); rec.Code != 503 {
			t.Errorf("after a restart: status %d, want 503", rec.Code)
		}
	})
	t.Run("reapply restarts", func(t *testing.T) {
		doc := `phases: {steps: [{duration: 10s}, {profile: {errors: "503"}}]}`
		srv, clock := newServer(t, doc, Options{})
		clock.Advance(20 * time.Second)
		if rec := do(srv.Handler(), http.MethodGet, "/", nil); rec.Code != 503 {
			t.Fatalf("status %d, want 503", rec.Code)
		}
		if err := srv.Apply(mustParse(t, doc), SourceAPI); err != nil {
			t.Fatal(err)
		}
		if rec := do(srv.Handler(), http.MethodGet, "/", nil); rec.Code != 200 {
			t.Errorf("after Apply: status %d, want 200 (the schedule restarts)", rec.Code)
		}
	})
	t.Run("none", func(t *testing.T) {
		srv, _ := newServer(t, "", Options{})
		if ps := srv.Phase(); ps.Configured || ps.Index != -1 {
			t.Errorf("Phase() = %+v", ps)
		}
		if err := srv.StartPhases(); err == nil {
			t.Error("StartPhases without phases: no error")
		}
	})
}

func TestOverride(t *testing.T) {
	srv, clock := newServer(t, `profile: {latency: 1ms}`, Options{})
	get := func() *httptest.ResponseRecorder { return do(srv.Handler(), http.MethodGet, "/", nil) }
	if err := srv.SetOverride(behavior.Profile{}, 0); err == nil {
		t.Error("SetOverride for 0: no error")
	}
	errs := behavior.Errors{Rate: 1, Codes: map[int]float64{503: 1}}
	if err := srv.SetOverride(behavior.Profile{Errors: &errs}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if rec := get(); rec.Code != 503 || rec.Header().Get("Server-Timing") != "injected-delay;dur=1" {
		t.Errorf("with the override: %d %q, want 503 keeping the profile's latency", rec.Code, rec.Header().Get("Server-Timing"))
	}
	if os := srv.OverrideStatus(); !os.Active || os.Remaining != "30s" || os.Profile.String() != "errors=503:1" {
		t.Errorf("OverrideStatus() = %+v", os)
	}
	clock.Advance(29 * time.Second)
	if rec := get(); rec.Code != 503 {
		t.Errorf("after 29s: %d, want 503", rec.Code)
	}
	if got := gather(t, srv).value("canarylab_mock_override_active", nil); got != 1 {
		t.Errorf("override_active = %v, want 1", got)
	}
	clock.Advance(time.Second)
	if rec := get(); rec.Code != 200 {
		t.Errorf("after 30s: %d, want 200 (expired)", rec.Code)
	}
	if os := srv.OverrideStatus(); os.Active {
		t.Errorf("OverrideStatus() after expiry = %+v", os)
	}
	if got := gather(t, srv).value("canarylab_mock_override_active", nil); got != 0 {
		t.Errorf("override_active = %v, want 0", got)
	}
	if err := srv.SetOverride(behavior.Profile{Errors: &errs}, time.Minute); err != nil {
		t.Fatal(err)
	}
	srv.ClearOverride()
	if rec := get(); rec.Code != 200 {
		t.Errorf("after ClearOverride: %d, want 200", rec.Code)
	}
}

func TestInFlightLimit(t *testing.T) {
	srv, _ := newServer(t, "server: {maxInFlight: 1}", Options{})
	// The first request waits in its injected delay until its client gives
	// up, so the test does not depend on how long the delay is.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := make(chan struct{})
	go func() {
		defer close(first)
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/?delay=300ms", nil)
		srv.Handler().ServeHTTP(httptest.NewRecorder(), req)
	}()
	waitFor(t, "the first request in flight", 2*time.Second, func() bool { return srv.Status().InFlight == 1 })

	rec := do(srv.Handler(), http.MethodGet, "/", nil)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("second request: %d, want 503", rec.Code)
	}
	if got := rec.Header().Get("X-Canarylab-Rejected"); got != "in_flight_limit" {
		t.Errorf("X-Canarylab-Rejected = %q", got)
	}
	if got := rec.Header().Get(HeaderVersion); got != "v1" {
		t.Errorf("%s = %q", HeaderVersion, got)
	}
	cancel()
	<-first
	c := srv.Counts()
	if c.Rejected["in_flight_limit"] != 1 || c.Statuses["503"] != 1 || c.Requests != 2 {
		t.Errorf("counts = %+v", c)
	}
	// Unless the machine stalled for the whole 300ms, the first request's
	// client left during the delay: 499, counted.
	if c.Statuses["499"] == 1 && c.ClientGaveUp != 1 {
		t.Errorf("a 499 without a client giving up: %+v", c)
	}
	m := gather(t, srv)
	if got := m.value("canarylab_mock_rejected_requests_total", map[string]string{"reason": "in_flight_limit"}); got != 1 {
		t.Errorf("rejected{in_flight_limit} = %v, want 1", got)
	}
	if got := m.value("canarylab_mock_in_flight_requests", nil); got != 0 {
		t.Errorf("in_flight gauge = %v, want 0", got)
	}
	// The limit follows the config.
	if err := srv.Apply(mustParse(t, "server: {maxInFlight: 5}"), SourceAPI); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	codes := make([]int, 3)
	for i := range codes {
		wg.Go(func() { codes[i] = do(srv.Handler(), http.MethodGet, "/?delay=50ms", nil).Code })
	}
	wg.Wait()
	for _, c := range codes {
		if c != 200 {
			t.Errorf("with maxInFlight 5, three requests: codes %v", codes)
			break
		}
	}
}

func TestBodyTooLarge(t *testing.T) {
	srv, _ := newServer(t, `
server: {maxBodyBytes: 16}
routes: [{path: /echo, echo: true}]
`, Options{})
	big := strings.Repeat("x", 100)
	rec := do(srv.Handler(), http.MethodPost, "/echo", strings.NewReader(big))
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", rec.Code)
	}
	if got := rec.Header().Get("X-Canarylab-Rejected"); got != "body_too_large" {
		t.Errorf("X-Canarylab-Rejected = %q", got)
	}
	if got := srv.Counts().Rejected["body_too_large"]; got != 1 {
		t.Errorf("Counts().Rejected[body_too_large] = %d, want 1", got)
	}
	if rec := do(srv.Handler(), http.MethodPost, "/echo", strings.NewReader("small")); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"body": "small"`) {
		t.Errorf("small body: %d %q", rec.Code, rec.Body.String())
	}

	// A body without a Content-Length is cut at the limit as it is read.
	req := httptest.NewRequest(http.MethodPost, "/echo", io.MultiReader(strings.NewReader(big)))
	req.ContentLength = -1
	rec = httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		regressed(t, fmt.Sprintf("respond.go respond/routeBody: a chunked body over server.maxBodyBytes read by an echo route answers %d (%q) instead of 413 and is not counted as body_too_large", rec.Code, strings.TrimSpace(rec.Body.String())))
	}
}

// statusSequence sends n sequential requests and returns their statuses.
func statusSequence(h http.Handler, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = do(h, http.MethodGet, "/", nil).Code
	}
	return out
}

func TestDeterminism(t *testing.T) {
	const doc = `profile: {errors: "503:0.3"}`
	a, _ := newServer(t, "seed: 42\n"+doc, Options{})
	b, _ := newServer(t, doc, Options{Seed: seedPtr(42)}) // the option gives the same seed
	c, _ := newServer(t, "seed: 43\n"+doc, Options{})
	sa, sb, sc := statusSequence(a.Handler(), 200), statusSequence(b.Handler(), 200), statusSequence(c.Handler(), 200)
	if !slices.Equal(sa, sb) {
		t.Errorf("same seed, different sequences:\n%v\n%v", sa, sb)
	}
	if slices.Equal(sa, sc) {
		t.Errorf("seeds 42 and 43 gave the same sequence")
	}
	if n := strings.Count(fmt.Sprint(sa), "503"); n == 0 || n == 200 {
		t.Errorf("%d of 200 are 503", n)
	}
	if a.Seed() != 42 || b.Seed() != 42 {
		t.Errorf("Seed() = %d, %d", a.Seed(), b.Seed())
	}
	// Options.Seed wins over the config's seed.
	d, _ := newServer(t, "seed: 7\n"+doc, Options{Seed: seedPtr(42)})
	if d.Seed() != 42 || !slices.Equal(statusSequence(d.Handler(), 200), sa) {
		t.Errorf("Options.Seed did not win over the config's seed (seed %d)", d.Seed())
	}
	// Applying a config restarts the sequence.
	if err := a.Apply(mustParse(t, "seed: 42\n"+doc), SourceAPI); err != nil {
		t.Fatal(err)
	}
	if again := statusSequence(a.Handler(), 50); !slices.Equal(again, sa[:50]) {
		t.Errorf("after Apply the sequence did not restart:\n%v\n%v", again, sa[:50])
	}
	// No seed: one is picked and reported.
	e, _ := newServer(t, doc, Options{})
	f, _ := newServer(t, doc, Options{})
	if e.Seed() == f.Seed() {
		t.Errorf("two servers without a seed both picked %d", e.Seed())
	}
}

// checkBinomial fails when k successes of n are further than 4 standard
// errors from n*p.
func checkBinomial(t *testing.T, what string, k, n int, p float64) {
	t.Helper()
	mean := float64(n) * p
	sd := math.Sqrt(float64(n) * p * (1 - p))
	if math.Abs(float64(k)-mean) > 4*sd {
		t.Errorf("%s: %d of %d, want %.0f ± %.1f (4σ)", what, k, n, mean, 4*sd)
	}
}

func TestErrorMixRates(t *testing.T) {
	srv, _ := newServer(t, `
seed: 7
profile: {errors: "503:0.2,500:0.1,429:1%"}
`, Options{})
	const n = 4000
	got := map[int]int{}
	for _, code := range statusSequence(srv.Handler(), n) {
		got[code]++
	}
	checkBinomial(t, "503", got[503], n, 0.2)
	checkBinomial(t, "500", got[500], n, 0.1)
	checkBinomial(t, "429", got[429], n, 0.01)
	checkBinomial(t, "200", got[200], n, 0.69)
	c := srv.Counts()
	for _, code := range []int{503, 500, 429} {
		if c.InjectedErrors[strconv.Itoa(code)] != uint64(got[code]) || c.Statuses[strconv.Itoa(code)] != uint64(got[code]) {
			t.Errorf("Counts for %d: injected %d, statuses %d; the client saw %d", code,
				c.InjectedErrors[strconv.Itoa(code)], c.Statuses[strconv.Itoa(code)], got[code])
		}
	}
	wantRatio := float64(n-got[200]) / n
	if c.Requests != n || math.Abs(c.ErrorRatio-wantRatio) > 1e-12 {
		t.Errorf("Counts: %d requests, errorRatio %v; want %d, %v", c.Requests, c.ErrorRatio, n, wantRatio)
	}
}

// TestErrorRatioCountsRequestsOnce: a request given both an error status
// and a slow body is one bad request, and the ratio never exceeds 1.
func TestErrorRatioCountsRequestsOnce(t *testing.T) {
	srv, _ := newServer(t, "", Options{})
	do(srv.Handler(), http.MethodGet, "/?status=503&fault=slowBody(10ms)", nil)
	do(srv.Handler(), http.MethodGet, "/", nil)
	c := srv.Counts()
	if c.InjectedErrors["503"] != 1 || c.Faults["slow_body"] != 1 {
		t.Fatalf("counts %+v", c)
	}
	if c.ErrorRatio != 0.5 {
		regressed(t, fmt.Sprintf("counts.go snapshot: ErrorRatio adds injected errors and faults, so a request with both counts twice (ratio %v for 1 bad request of 2; it can exceed 1)", c.ErrorRatio))
	}
}

func TestGracefulShutdown(t *testing.T) {
	t.Run("drains a delayed request", func(t *testing.T) {
		t.Parallel()
		srv, _ := newServer(t, "", Options{})
		run := startServer(t, srv)
		client := newClient(t, 5*time.Second)
		done := make(chan faultResult, 1)
		go func() { done <- getOverTCP(t, client, run.URL()+"/?delay=300ms") }()
		waitFor(t, "the request in flight", 2*time.Second, func() bool { return srv.Status().InFlight == 1 })

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := run.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		r := <-done
		if r.err != nil || r.readErr != nil || r.resp.StatusCode != 200 || !strings.Contains(string(r.body), "canarylab-mock") {
			t.Fatalf("the request in flight did not finish well: %+v", r)
		}
		if srv.Ready() {
			t.Error("still ready after Shutdown")
		}
		for range 2 {
			if err := <-run.Errors(); err != nil {
				t.Errorf("listener error after a clean shutdown: %v", err)
			}
		}
		if _, err := client.Get(run.URL() + "/"); err == nil {
			t.Error("the main listener still accepts after Shutdown")
		}
	})
	t.Run("ends a hang", func(t *testing.T) {
		t.Parallel()
		srv, _ := newServer(t, "", Options{})
		run := startServer(t, srv)
		done := make(chan faultResult, 1)
		go func() { done <- getOverTCP(t, newClient(t, time.Minute), run.URL()+"/?fault=hang(1m)") }()
		waitFor(t, "the hang to begin", 2*time.Second, func() bool { return srv.Counts().Faults["hang"] == 1 })

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		if err := run.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Shutdown took %s with a hang in progress, want it prompt", d)
		}
		select {
		case r := <-done:
			if r.err == nil {
				t.Errorf("the hanging request got a response: %d", r.resp.StatusCode)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("the hanging client was not released")
		}
	})
}

func TestMetricsScrape(t *testing.T) {
	srv, _ := newServer(t, "", Options{VersionLabel: "canary"})
	run := startServer(t, srv)
	client := newClient(t, 5*time.Second)
	send := func(method, path string) {
		req, _ := http.NewRequest(method, run.URL()+path, nil)
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	for range 3 {
		send(http.MethodGet, "/")
	}
	send(http.MethodGet, "/?status=503")
	send(http.MethodGet, "/?status=503")
	send(http.MethodGet, "/?fault=reset")
	send(http.MethodPost, "/")
	waitFor(t, "every request recorded", 2*time.Second, func() bool {
		return gather(t, srv).value("canarylab_mock_requests_total", nil) == 7
	})

	m := scrape(t, run)
	requests := func(method, code string) float64 {
		return m.value("canarylab_mock_requests_total", map[string]string{"route": "/*", "method": method, "code": code, "version": "canary"})
	}
	for _, tc := range []struct {
		name string
		got  float64
		want float64
	}{
		{"requests GET 200", requests("GET", "200"), 3},
		{"requests GET 503", requests("GET", "503"), 2},
		{"requests GET 0", requests("GET", "0"), 1},
		{"requests POST 200", requests("POST", "200"), 1},
		{"faults error", m.value("canarylab_mock_injected_faults_total", map[string]string{"kind": "error", "version": "canary"}), 2},
		{"faults reset", m.value("canarylab_mock_injected_faults_total", map[string]string{"kind": "reset"}), 1},
		{"faults hang", m.value("canarylab_mock_injected_faults_total", map[string]string{"kind": "hang"}), 0},
		{"faults truncate", m.value("canarylab_mock_injected_faults_total", map[string]string{"kind": "truncate"}), 0},
		{"errors 503", m.value("canarylab_mock_injected_errors_total", map[string]string{"code": "503"}), 2},
		{"request driven", m.value("canarylab_mock_request_driven_total", nil), 3},
		{"duration count GET 200", m.value("canarylab_mock_request_duration_seconds", map[string]string{"method": "GET", "code": "200"}), 3},
		{"generation", m.value("canarylab_mock_config_generation", nil), 1},
		{"info", m.value("canarylab_mock_info", map[string]string{"version": "canary"}), 1},
		{"ready", m.value("canarylab_mock_ready", nil), 1},
		{"phase", m.value("canarylab_mock_phase", nil), -1},
		{"config updates", m.value("canarylab_mock_config_updates_total", map[string]string{"source": "start", "result": "applied"}), 1},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if _, ok := m["go_goroutines"]; !ok {
		t.Error("the Go collector's metrics are missing")
	}
}
