package loadgen

// Closed-model users send plain http:// requests through fasthttp
// (github.com/valyala/fasthttp), as Locust's FastHttpUser does through
// geventhttpclient: a HostClient per host:port shared by the pool, a
// fasthttp.Request per user and task built once and reused, one
// fasthttp.Response per user, and the request's timeout as a deadline on
// the connection (HostClient.DoDeadline sets the request's timeout and runs
// in the user's goroutine: no goroutine, timer or context per request).
// Anything else (https, an injected client, the open model) goes through
// net/http.
//
// Stopping. fasthttp takes no context: a request runs until it is answered
// or its deadline passes. So
//   - a user whose context ends between requests (its wait, or before the
//     next request) stops at once;
//   - StopAll (the end of a run, Locust's stop) interrupts every request in
//     flight at once: the pool's connections come from its own dialer, and
//     it moves their deadlines to the past (and keeps any deadline fasthttp
//     sets after that in the past) until every user has stopped;
//   - a user stopped alone (a ramp down, SetCounts) finishes its request in
//     flight, which takes at most its timeout (SetCounts does not wait for
//     it; StopAll does), and that request is not recorded: fasthttp says
//     nothing of which connection a request took while it runs, so no one
//     else can interrupt it.

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/canarylab/canarylab/loadgen/stats"
)

// fastTarget is a target compiled for fasthttp: what a user needs to build
// its own fasthttp.Request for it.
type fastTarget struct {
	pool    *fastPool
	method  string
	uri     string
	headers [][2]string
	body    string
}

// fastMaxConns bounds the connections of a pool to one host: more than
// users ever run (a closed-model user keeps one connection).
const fastMaxConns = 1 << 16

// compileFast compiles a target for fasthttp, or returns nil when it needs
// net/http (not plain http).
func compileFast(t *target, pools map[string]*fastPool) *fastTarget {
	u, err := url.Parse(t.url)
	if err != nil || u.Scheme != "http" || u.User != nil {
		return nil
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	p := pools[addr]
	if p == nil {
		p = newFastPool(addr)
		pools[addr] = p
	}
	ft := &fastTarget{pool: p, method: t.method, uri: t.url, body: t.body}
	for k, vs := range t.header {
		// The host is the URL's, and the length the body's (as net/http
		// does).
		if strings.EqualFold(k, "Host") || strings.EqualFold(k, "Content-Length") {
			continue
		}
		for _, v := range vs {
			ft.headers = append(ft.headers, [2]string{k, v})
		}
	}
	return ft
}

// request builds the fasthttp.Request of the target, for one user.
func (ft *fastTarget) request() *fasthttp.Request {
	req := fasthttp.AcquireRequest()
	req.Header.SetMethod(ft.method)
	req.SetRequestURI(ft.uri)
	// A body without a Content-Type goes without one, as with net/http.
	req.Header.SetNoDefaultContentType(true)
	for _, kv := range ft.headers {
		req.Header.Add(kv[0], kv[1])
	}
	if ft.body != "" {
		req.SetBodyString(ft.body)
	}
	return req
}

// fastPool is the HostClient of one host:port and the connections it
// dialled, so that StopAll can interrupt the requests in flight.
type fastPool struct {
	hc *fasthttp.HostClient
	// stopping keeps every connection's deadlines in the past.
	stopping atomic.Bool
	mu       sync.Mutex
	conns    map[*fastConn]struct{}
}

func newFastPool(addr string) *fastPool {
	p := &fastPool{conns: map[*fastConn]struct{}{}}
	p.hc = &fasthttp.HostClient{
		Addr:        addr,
		Name:        "canarylab", // the User-Agent, unless the plan gives one
		DialTimeout: p.dial,
		MaxConns:    fastMaxConns,
		// Idle users (a long wait) keep their connection, as net/http's
		// transport does (fasthttp's default: 10 s).
		MaxIdleConnDuration: 90 * time.Second,
		// Paths as the plan writes them: no cleaning of "..", "//", %xx.
		DisablePathNormalizing: true,
		// Resend only as net/http does: once, an
		// idempotent request, on a connection found closed (fasthttp: up to
		// 5 times on any error of a GET, HEAD or PUT).
		MaxIdemponentCallAttempts: 2,
		RetryIfErr:                retryStale,
	}
	return p
}

// dial is the HostClient's dialer: a TCP connection that the pool tracks,
// within the request's timeout.
func (p *fastPool) dial(addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	fc := &fastConn{Conn: c, pool: p}
	fc.laddr = fastAddr{Addr: c.LocalAddr(), conn: fc}
	p.mu.Lock()
	p.conns[fc] = struct{}{}
	p.mu.Unlock()
	if p.stopping.Load() {
		_ = c.SetDeadline(time.Unix(1, 0))
	}
	return fc, nil
}

// interrupt makes every request in flight on the pool fail at once, and
// every request after it, until resume.
func (p *fastPool) interrupt() {
	p.stopping.Store(true)
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Conn.SetDeadline(time.Unix(1, 0))
	}
	p.mu.Unlock()
}

// resume closes the idle connections (every user has stopped) and lets
// requests go again.
func (p *fastPool) resume() {
	p.hc.CloseIdleConnections()
	p.stopping.Store(false)
}

// fastConn is a connection of a pool. It keeps its deadlines in the past
// while the pool stops; it remembers whether it carried an answer (a
// connection found closed is resent on only if reused) and the first error
// a read of it met: fasthttp reports any error before an answer's first
// byte as a closed connection (io.EOF), a reset by the peer included.
type fastConn struct {
	net.Conn
	pool     *fastPool
	laddr    fastAddr
	answered bool
	readErr  error
}

// fastAddr is the connection's local address, and the connection:
// fasthttp gives it back with the response (Response.LocalAddr), which
// tells which connection a request took.
type fastAddr struct {
	net.Addr
	conn *fastConn
}

func (c *fastConn) LocalAddr() net.Addr { return &c.laddr }

func (c *fastConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.answered = true
	}
	if err != nil && c.readErr == nil {
		c.readErr = err
	}
	return n, err
}

func (c *fastConn) Close() error {
	c.pool.mu.Lock()
	delete(c.pool.conns, c)
	c.pool.mu.Unlock()
	return c.Conn.Close()
}

func (c *fastConn) stopped(t time.Time) time.Time {
	if c.pool.stopping.Load() {
		return time.Unix(1, 0)
	}
	return t
}

func (c *fastConn) SetDeadline(t time.Time) error { return c.Conn.SetDeadline(c.stopped(t)) }
func (c *fastConn) SetReadDeadline(t time.Time) error {
	return c.Conn.SetReadDeadline(c.stopped(t))
}
func (c *fastConn) SetWriteDeadline(t time.Time) error {
	return c.Conn.SetWriteDeadline(c.stopped(t))
}

// retryStale resends an idempotent request once when the keep-alive
// connection it took turned out to be closed: a reused connection (it
// carried an answer before), and no byte of this answer (fasthttp: io.EOF)
// or the request could not be written.
func retryStale(req *fasthttp.Request, attempts int, err error) (resetTimeout, retry bool) {
	if attempts > 1 || isTimeout(err) {
		return false, false
	}
	switch string(req.Header.Method()) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
	default:
		return false, false
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		return false, false
	}
	// The response of the attempt holds the connection it took.
	resp, _ := req.UserValue(fastRespKey{}).(*fasthttp.Response)
	if resp == nil {
		return false, false
	}
	a, ok := resp.LocalAddr().(*fastAddr)
	return false, ok && a.conn.answered
}

// fastRespKey is the key of a user's request's value: the user's
// response.
type fastRespKey struct{}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// fastUser is what one user sends with: its requests, built on first use
// (by target index), and its response.
type fastUser struct {
	reqs []*fasthttp.Request
	resp *fasthttp.Response
}

func (u *fastUser) request(t *target) *fasthttp.Request {
	if u.reqs == nil {
		u.reqs = make([]*fasthttp.Request, t.count)
		u.resp = fasthttp.AcquireResponse()
	}
	req := u.reqs[t.index]
	if req == nil {
		req = t.fast.request()
		req.SetUserValue(fastRespKey{}, u.resp)
		u.reqs[t.index] = req
	}
	return req
}

// release gives the user's requests and response back to fasthttp's pools.
func (u *fastUser) release() {
	for _, r := range u.reqs {
		if r != nil {
			fasthttp.ReleaseRequest(r)
		}
	}
	if u.resp != nil {
		fasthttp.ReleaseResponse(u.resp)
	}
	*u = fastUser{}
}

// doFast is do through fasthttp: it sends one request and records it, and
// reports false when ctx ended before the answer.
func doFast(ctx context.Context, u *fastUser, st *stats.Stats, t *target, start time.Time) bool {
	req := u.request(t)
	resp := u.resp
	err := t.fast.pool.hc.DoDeadline(req, resp, start.Add(t.timeout))
	rt := time.Since(start)
	n := int64(len(resp.Body()))
	switch {
	case err != nil && ctx.Err() != nil:
		return false
	case err != nil:
		st.Failure(t.method, t.name, rt, n, fastReason(err, resp))
	case !t.req.Succeeded(resp.StatusCode()):
		st.Failure(t.method, t.name, rt, n, "HTTP "+strconv.Itoa(resp.StatusCode()))
	default:
		st.Success(t.method, t.name, rt, n)
	}
	return true
}

// fastReason is describeError for fasthttp's errors.
func fastReason(err error, resp *fasthttp.Response) string {
	switch {
	case isTimeout(err):
		return "timeout"
	case errors.Is(err, fasthttp.ErrConnectionClosed) || errors.Is(err, io.EOF):
		// No byte of an answer: what the connection's read met.
		if a, ok := resp.LocalAddr().(*fastAddr); ok && a.conn.readErr != nil {
			if isTimeout(a.conn.readErr) {
				return "timeout"
			}
			return describeError(a.conn.readErr)
		}
		return "EOF"
	}
	return describeError(err)
}
