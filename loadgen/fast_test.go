package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canarylab/canarylab/loadgen/plan"
	"github.com/canarylab/canarylab/loadgen/stats"
	"github.com/canarylab/canarylab/mockserver/behavior"
)

// fastTargetFor compiles one request for fasthttp, as NewUsers does, and
// returns it with its pool.
func fastTargetFor(t *testing.T, base string, r plan.Request) (*target, *fastPool) {
	t.Helper()
	p := plan.Plan{Users: []plan.UserClass{{Name: "U", Tasks: []plan.Task{{Request: r}}}}}
	classes, _, err := compileClasses(p, base)
	if err != nil {
		t.Fatal(err)
	}
	pools := map[string]*fastPool{}
	tg := &classes["U"].targets[0]
	tg.fast = compileFast(tg, pools)
	if tg.fast == nil {
		t.Fatal("not compiled for fasthttp")
	}
	t.Cleanup(tg.fast.pool.resume)
	return tg, tg.fast.pool
}

// outcome is what a few requests left in the statistics.
type outcome struct {
	requests, failures, length int64
	errors                     string
}

func outcomeOf(st *stats.Stats) outcome {
	s := st.Cumulative()
	var errs []string
	for _, e := range s.Errors {
		errs = append(errs, fmt.Sprintf("%s x%d", e.Error, e.Occurrences))
	}
	sort.Strings(errs)
	return outcome{s.Total.NumRequests, s.Total.NumFailures, s.Total.TotalContentLength, strings.Join(errs, ", ")}
}

// rawServer answers each request read from a connection with serve's
// bytes (nil: close the connection; reset: reset it).
func rawServer(t *testing.T, serve func(c net.Conn) bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						if line == "\r\n" {
							break
						}
					}
					if !serve(c) {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestFastMatchesNetHTTP sends each request three times through fasthttp
// and through net/http (do), and wants the same statistics of both:
// statuses and expected statuses, lengths, bodies and headers sent,
// connection faults.
func TestFastMatchesNetHTTP(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/len", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello") })
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		var code int
		fmt.Sscan(r.PathValue("code"), &code)
		w.WriteHeader(code)
		fmt.Fprint(w, "status")
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 3; i++ {
			fmt.Fprint(w, strings.Repeat("x", 3000))
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/close", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		fmt.Fprint(w, "bye")
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/len", http.StatusFound) })
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(201)
		// The length of the answer tells what the server got.
		fmt.Fprintf(w, "%s %s q=%s test=%q type=%q length=%q host=%q %s",
			r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("X-Test"), r.Header["Content-Type"],
			r.Header["Content-Length"], r.Host, body)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		_, _ = w.Write([]byte(strings.Repeat("y", 100000)))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	reset := rawServer(t, func(c net.Conn) bool { c.(*net.TCPConn).SetLinger(0); return false })
	closed := rawServer(t, func(net.Conn) bool { return false })
	truncated := rawServer(t, func(c net.Conn) bool {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
		return false
	})
	noLength := rawServer(t, func(c net.Conn) bool {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\nuntil the end")
		return false
	})
	refused := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		return "http://" + ln.Addr().String()
	}()
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer hang.Close()

	host := strings.TrimPrefix(srv.URL, "http://")
	echo := func(s string) int64 { return 3 * int64(len(strings.ReplaceAll(s, "HOST", host))) }
	status := func(s ...string) []plan.Status {
		var out []plan.Status
		for _, x := range s {
			st, err := plan.ParseStatus(x)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, st)
		}
		return out
	}
	tests := []struct {
		name string
		base string
		req  plan.Request
		want outcome // three requests
		// netLength is net/http's length where it differs.
		netLength int64
	}{
		{"200", srv.URL, plan.Request{Path: "/len"}, outcome{3, 0, 15, ""}, 0},
		{"404", srv.URL, plan.Request{Path: "/missing"}, outcome{3, 3, 57, "HTTP 404 x3"}, 0},
		{"503", srv.URL, plan.Request{Path: "/status/503"}, outcome{3, 3, 18, "HTTP 503 x3"}, 0},
		{"399 is a success", srv.URL, plan.Request{Path: "/status/399"}, outcome{3, 0, 18, ""}, 0},
		{"redirect not followed", srv.URL, plan.Request{Path: "/redirect"}, outcome{3, 0, 3 * int64(len("<a href=\"/len\">Found</a>.\n\n")), ""}, 0},
		{"expected 418", srv.URL, plan.Request{Path: "/status/418", Expect: status("418")}, outcome{3, 0, 18, ""}, 0},
		{"expected 2xx, got 302", srv.URL, plan.Request{Path: "/redirect", Expect: status("2xx")}, outcome{3, 3, 3 * int64(len("<a href=\"/len\">Found</a>.\n\n")), "HTTP 302 x3"}, 0},
		{"expected 201 or 4xx, got 404", srv.URL, plan.Request{Path: "/missing", Expect: status("201", "4xx")}, outcome{3, 0, 57, ""}, 0},
		{"expected 201, got 200", srv.URL, plan.Request{Path: "/len", Expect: status("201")}, outcome{3, 3, 15, "HTTP 200 x3"}, 0},
		{"204", srv.URL, plan.Request{Path: "/nocontent"}, outcome{3, 0, 0, ""}, 0},
		{"chunked", srv.URL, plan.Request{Path: "/chunked"}, outcome{3, 0, 27000, ""}, 0},
		{"connection: close", srv.URL, plan.Request{Path: "/close"}, outcome{3, 0, 9, ""}, 0},
		{"HEAD", srv.URL, plan.Request{Method: "HEAD", Path: "/big"}, outcome{3, 0, 0, ""}, 0},
		{"big", srv.URL, plan.Request{Path: "/big"}, outcome{3, 0, 300000, ""}, 0},
		{"POST body and headers", srv.URL, plan.Request{Method: "POST", Path: "/echo?q=1", Body: `{"a":1}`,
			Headers: map[string]string{"X-Test": "yes", "Content-Type": "application/json", "Host": "ignored", "Content-Length": "99"}},
			outcome{3, 0, echo(`POST /echo q=q=1 test="yes" type=["application/json"] length=["7"] host="HOST" {"a":1}`), ""}, 0},
		{"POST, no body", srv.URL, plan.Request{Method: "POST", Path: "/echo"},
			outcome{3, 0, echo(`POST /echo q= test="" type=[] length=["0"] host="HOST" `), ""}, 0},
		{"PUT body, no type", srv.URL, plan.Request{Method: "PUT", Path: "/echo", Body: "x"},
			outcome{3, 0, echo(`PUT /echo q= test="" type=[] length=["1"] host="HOST" x`), ""}, 0},
		// fasthttp sends "Content-Length: 0" with every method but GET and
		// HEAD; net/http only with POST, PUT, PATCH.
		{"DELETE", srv.URL, plan.Request{Method: "DELETE", Path: "/echo"},
			outcome{3, 0, echo(`DELETE /echo q= test="" type=[] length=["0"] host="HOST" `), ""},
			echo(`DELETE /echo q= test="" type=[] length=[] host="HOST" `)},
		{"timeout", hang.URL, plan.Request{Path: "/", Timeout: behavior.Duration(100 * time.Millisecond)}, outcome{3, 3, 0, "timeout x3"}, 0},
		{"connection refused", refused, plan.Request{Path: "/"}, outcome{3, 3, 0, "connection refused x3"}, 0},
		{"reset", reset, plan.Request{Path: "/"}, outcome{3, 3, 0, "connection reset by peer x3"}, 0},
		{"closed, no answer", closed, plan.Request{Path: "/"}, outcome{3, 3, 0, "EOF x3"}, 0},
		{"no length: until close", noLength, plan.Request{Path: "/"}, outcome{3, 0, 39, ""}, 0},
		{"truncated body", truncated, plan.Request{Path: "/"}, outcome{3, 3, 30, "unexpected EOF x3"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg, _ := fastTargetFor(t, tt.base, tt.req)
			if tt.req.Timeout != 0 {
				tg.timeout = tt.req.Timeout.D()
			}
			fastSt, netSt := stats.New(nil), stats.New(nil)
			var fu fastUser
			defer fu.release()
			client := NewClient(16)
			defer client.CloseIdleConnections()
			for i := 0; i < 3; i++ { // the second and third reuse the connection
				start := time.Now()
				if !doFast(context.Background(), &fu, fastSt, tg, start) {
					t.Fatal("fasthttp: not recorded")
				}
				if d := time.Since(start); tt.req.Timeout != 0 && (d < tg.timeout || d > tg.timeout+time.Second) {
					t.Errorf("fasthttp: timed out after %v, want %v", d, tg.timeout)
				}
				if !do(context.Background(), client, netSt, tg, time.Now()) {
					t.Fatal("net/http: not recorded")
				}
			}
			fast, net := outcomeOf(fastSt), outcomeOf(netSt)
			if tt.netLength != 0 {
				if net.length != tt.netLength {
					t.Errorf("net/http: length %d, want %d", net.length, tt.netLength)
				}
				net.length = fast.length
			}
			if fast != net {
				t.Errorf("fasthttp %+v, net/http %+v", fast, net)
			}
			if fast != tt.want {
				t.Errorf("fasthttp %+v, want %+v", fast, tt.want)
			}
		})
	}
}

func TestFastUserAgent(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.UserAgent())
	}))
	defer srv.Close()
	for _, tt := range []struct {
		headers map[string]string
		want    string
	}{
		{nil, "canarylab"},
		{map[string]string{"User-Agent": "mine/1"}, "mine/1"},
	} {
		tg, _ := fastTargetFor(t, srv.URL, plan.Request{Path: "/", Headers: tt.headers})
		var fu fastUser
		st := stats.New(nil)
		doFast(context.Background(), &fu, st, tg, time.Now())
		if got := string(fu.resp.Body()); got != tt.want {
			t.Errorf("headers %v: User-Agent %q, want %q", tt.headers, got, tt.want)
		}
		fu.release()
	}
}

// TestFastStaleConnection: a server that closes each connection after an
// answer without saying so; the idle connection is found dead on the next
// request, which is resent once on a fresh one, and not more.
func TestFastStaleConnection(t *testing.T) {
	var conns atomic.Int64
	base := rawServer(t, func(c net.Conn) bool {
		conns.Add(1)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return false
	})
	tg, _ := fastTargetFor(t, base, plan.Request{Path: "/"})
	st := stats.New(nil)
	var fu fastUser
	defer fu.release()
	for i := 0; i < 5; i++ {
		doFast(context.Background(), &fu, st, tg, time.Now())
		time.Sleep(20 * time.Millisecond)
	}
	if o := outcomeOf(st); o != (outcome{5, 0, 10, ""}) {
		t.Errorf("%+v", o)
	}
	if got := conns.Load(); got != 5 {
		t.Errorf("%d answers for 5 requests on a server that closes each connection", got)
	}

	// A POST is not resent.
	tg, _ = fastTargetFor(t, base, plan.Request{Method: "POST", Path: "/"})
	st = stats.New(nil)
	var fu2 fastUser
	defer fu2.release()
	for i := 0; i < 2; i++ {
		doFast(context.Background(), &fu2, st, tg, time.Now())
		time.Sleep(20 * time.Millisecond)
	}
	if o := outcomeOf(st); o.requests != 2 || o.failures != 1 || o.errors != "EOF x1" {
		t.Errorf("POST on a stale connection: %+v, want the second failed (EOF)", o)
	}
}

// TestFastStopping: what stops a request in flight through fasthttp. A
// user's context alone does not (fasthttp takes none): the request runs
// to its timeout and, the user being stopped, is not recorded. StopAll
// interrupts it at once.
func TestFastStopping(t *testing.T) {
	release := make(chan struct{})
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	tg, _ := fastTargetFor(t, srv.URL, plan.Request{Path: "/"})
	tg.timeout = 300 * time.Millisecond
	st := stats.New(nil)
	var fu fastUser
	defer fu.release()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	if doFast(ctx, &fu, st, tg, start) {
		t.Error("a request of a stopped user was recorded")
	}
	if d := time.Since(start); d < tg.timeout || d > tg.timeout+time.Second {
		t.Errorf("a stopped user's request ended after %v, want its timeout (%v)", d, tg.timeout)
	}

	p := mustPlan(t, `users: [{name: U, tasks: [{request: {path: /, timeout: 1m}}]}]`)
	users, err := NewUsers(p, st, Options{Host: srv.URL, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	before := hits.Load()
	if err := users.SetCounts(context.Background(), map[string]int{"U": 3}, ""); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "3 requests in flight", func() bool { return hits.Load() >= before+3 })
	start = time.Now()
	users.StopAll()
	if d := time.Since(start); d > time.Second {
		t.Errorf("StopAll took %v with requests in flight", d)
	}
	if n := st.Cumulative().Total.NumRequests; n != 0 {
		t.Errorf("%d requests recorded, want none (all were interrupted)", n)
	}

	// The pool works again after StopAll (a Locust worker's next test).
	if err := users.SetCounts(context.Background(), map[string]int{"U": 1}, ""); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "an answered request", func() bool {
		select {
		case release <- struct{}{}:
		default:
		}
		return st.Cumulative().Total.NumRequests > 0
	})
	users.StopAll()
	if s := st.Cumulative(); s.Total.NumFailures != 0 {
		t.Errorf("after StopAll and a new start: %+v", outcomeOf(st))
	}
}
