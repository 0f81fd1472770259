package mesh

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Envoy's local replies.
const (
	bodyConnectFailure     = "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
	bodyConnectTermination = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
	bodyTimeout            = "upstream request timeout"
)

// stateKey keys the request's reqState in the outbound request's context,
// where the ReverseProxy's callbacks find it.
type stateKey struct{}

// reqState is one request's bookkeeping. It is also the ResponseWriter the
// proxy writes to, so it sees the status sent and downstream failures.
type reqState struct {
	w          http.ResponseWriter
	dest       dest
	start      time.Time
	clientCtx  context.Context
	timeoutCtx context.Context // nil without Config.Timeout
	cancel     context.CancelFunc

	status         int  // final status sent downstream; 0 before
	upstreamStatus int  // status the backend answered
	writeErr       bool // a write or flush downstream failed
	completed      bool // the proxy returned without panicking
	upstreamErr    error

	reported bool // proxyError chose the code and flags
	code     int
	flags    flag

	body upstreamBody
}

// ServeHTTP routes r: by the weights when r matches Config.Match (or there
// is none), to the primary otherwise; mirrors it when the routes say so;
// and reports it as the destination's sidecar would.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := &reqState{w: w, start: time.Now(), clientCtx: r.Context()}
	t := rt.routes.Load()
	matched := len(rt.match) == 0 || matchAny(rt.match, r)
	var mirror bool
	st.dest, mirror = rt.draw(t, matched)
	if r.Header == nil {
		r.Header = make(http.Header)
	}
	if _, ok := r.Header["X-Request-Id"]; !ok {
		// Envoy's request id, which the mirrored copy shares.
		r.Header["X-Request-Id"] = []string{newRequestID()}
	}
	defer rt.finish(st)
	if mirror {
		rt.mirror(r)
	}
	ctx := context.WithValue(r.Context(), stateKey{}, st)
	if rt.cfg.Timeout > 0 {
		ctx, st.cancel = context.WithTimeout(ctx, rt.cfg.Timeout)
		st.timeoutCtx = ctx
	}
	rt.proxy.ServeHTTP(st, r.WithContext(ctx))
	st.completed = true
}

// finish reports the request; it runs even when the proxy aborts the
// response with http.ErrAbortHandler, which it lets through.
func (rt *Router) finish(st *reqState) {
	code, fl := st.outcome()
	if st.cancel != nil {
		st.cancel()
	}
	rt.tel.observe(st.dest, code, fl, time.Since(st.start))
	if fl != flagNone && !st.reported {
		rt.log.Debug("response cut short", "workload", rt.backends[st.dest].Workload,
			"code", code, "flags", flagNames[fl], "upstreamError", st.upstreamErr)
	}
}

// outcome is the response_code and response_flags the destination sidecar
// reports.
func (st *reqState) outcome() (int, flag) {
	if st.reported {
		return st.code, st.flags
	}
	status := st.status
	if status == 0 {
		status = st.upstreamStatus // a protocol upgrade writes its 101 on the hijacked connection
	}
	if st.completed && st.upstreamErr == nil && !st.writeErr {
		if status == 0 {
			status = http.StatusOK
		}
		return status, flagNone
	}
	switch {
	case st.writeErr || st.clientCtx.Err() != nil || st.timedOut():
		// The client (or, for a route timeout, the source sidecar) went
		// away: Envoy's downstream disconnect.
		return status, flagDC
	case status == 0:
		return http.StatusServiceUnavailable, flagUC
	}
	return status, flagUC
}

func (st *reqState) timedOut() bool {
	return st.timeoutCtx != nil && st.clientCtx.Err() == nil &&
		errors.Is(st.timeoutCtx.Err(), context.DeadlineExceeded)
}

func (st *reqState) report(code int, fl flag) {
	st.reported, st.code, st.flags = true, code, fl
}

// Header, WriteHeader, Write, FlushError and Unwrap make reqState the
// proxy's ResponseWriter.
func (st *reqState) Header() http.Header { return st.w.Header() }

func (st *reqState) WriteHeader(code int) {
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		// An informational response (forwarded from the transport's
		// goroutine) is not the response.
		st.w.WriteHeader(code)
		return
	}
	if st.status == 0 {
		st.status = code
	}
	st.w.WriteHeader(code)
}

func (st *reqState) Write(p []byte) (int, error) {
	if st.status == 0 {
		st.status = http.StatusOK
	}
	n, err := st.w.Write(p)
	if err != nil {
		st.writeErr = true
	}
	return n, err
}

// FlushError flushes the client's connection (the proxy flushes every
// chunk, as Envoy streams).
func (st *reqState) FlushError() error {
	var err error
	switch f := st.w.(type) {
	case interface{ FlushError() error }:
		err = f.FlushError()
	case http.Flusher:
		f.Flush()
	default:
		err = http.NewResponseController(st.w).Flush()
	}
	if err != nil {
		st.writeErr = true
	}
	return err
}

// Unwrap lets http.ResponseController reach the connection (hijacking for
// protocol upgrades).
func (st *reqState) Unwrap() http.ResponseWriter { return st.w }

// upstreamBody records the backend's failure while its body is copied,
// which the proxy does not report (it aborts the response).
type upstreamBody struct {
	rc io.ReadCloser
	st *reqState
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		b.st.upstreamErr = err
	}
	return n, err
}

func (b *upstreamBody) Close() error { return b.rc.Close() }

// rewrite sends the request to the chosen backend as Envoy forwards it:
// the Host, headers, path and query as received, X-Forwarded-For appended.
func (rt *Router) rewrite(pr *httputil.ProxyRequest) {
	st := pr.In.Context().Value(stateKey{}).(*reqState)
	out := pr.Out
	out.URL.Scheme = "http"
	out.URL.Host = rt.backends[st.dest].host
	// The ReverseProxy drops query parameters it cannot parse; Envoy does
	// not.
	out.URL.RawQuery = pr.In.URL.RawQuery
	// The ReverseProxy strips the client's forwarding headers before
	// Rewrite; a sidecar keeps them.
	for _, k := range [...]string{"Forwarded", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		if v, ok := pr.In.Header[k]; ok {
			out.Header[k] = v
		}
	}
	setForwardedFor(out.Header, pr.In)
	if out.Body == nil && replayable(out) {
		makeNonReplayable(out)
	}
}

// modifyResponse notes the backend's status and watches its body.
func (rt *Router) modifyResponse(res *http.Response) error {
	st, _ := res.Request.Context().Value(stateKey{}).(*reqState)
	if st == nil {
		return nil
	}
	st.upstreamStatus = res.StatusCode
	if res.StatusCode != http.StatusSwitchingProtocols && res.Body != nil && res.Body != http.NoBody {
		st.body = upstreamBody{rc: res.Body, st: st}
		res.Body = &st.body
	}
	return nil
}

// proxyError answers a request the backend did not answer, as Envoy's
// local replies do, and decides how the destination sidecar reports it.
func (rt *Router) proxyError(w http.ResponseWriter, _ *http.Request, err error) {
	st := w.(*reqState)
	wl := rt.backends[st.dest].Workload
	switch {
	case st.clientCtx.Err() != nil:
		// Nobody to answer.
		st.report(0, flagDC)
	case st.timedOut():
		writeLocal(w, http.StatusGatewayTimeout, bodyTimeout)
		st.report(0, flagDC)
	case isDialError(err):
		writeLocal(w, http.StatusServiceUnavailable, bodyConnectFailure)
		st.report(http.StatusServiceUnavailable, flagUF)
	default:
		writeLocal(w, http.StatusServiceUnavailable, bodyConnectTermination)
		st.report(http.StatusServiceUnavailable, flagUC)
	}
	rt.log.Debug("upstream failed", "workload", wl, "code", st.code, "flags", flagNames[st.flags], "err", err)
}

func writeLocal(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h["Content-Type"] = []string{"text/plain"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// setForwardedFor appends the client's address to X-Forwarded-For and
// sets X-Forwarded-Proto when the client did not, as Envoy does.
func setForwardedFor(h http.Header, in *http.Request) {
	if ip, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		if prior := in.Header["X-Forwarded-For"]; len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		h["X-Forwarded-For"] = []string{ip}
	}
	if _, ok := h["X-Forwarded-Proto"]; !ok {
		h["X-Forwarded-Proto"] = []string{requestScheme(in)}
	}
}

// makeNonReplayable stops net/http from silently resending a bodiless
// request: its transport replays an idempotent request without a body
// when a reused connection fails before the first response byte, which
// would hide a backend's reset and send the backend a request the client
// sent once. Envoy does not retry (without a retry policy). A non-nil body
// makes the request non-replayable; with TransferEncoding "identity" the
// transport sends it with neither Content-Length nor chunking (see
// http.Request.Write) and without probing the body, so the bytes on the
// wire are those of a request without a body.
func makeNonReplayable(r *http.Request) {
	r.Body = noRetryBody{}
	r.ContentLength = 0
	r.TransferEncoding = identityEncoding
}

var identityEncoding = []string{"identity"}

// noRetryBody is an empty body. WriteTo spares the transport's copy a
// 32 KiB buffer (TCPConn.ReadFrom would allocate one).
type noRetryBody struct{}

func (noRetryBody) Read([]byte) (int, error)         { return 0, io.EOF }
func (noRetryBody) WriteTo(io.Writer) (int64, error) { return 0, nil }
func (noRetryBody) Close() error                     { return nil }

// replayable reports the bodiless requests net/http would replay (see
// http.Request.isReplayable). POST, PUT and PATCH are left alone even with
// an Idempotency-Key, so they keep their "Content-Length: 0".
func replayable(r *http.Request) bool {
	switch r.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		return false
	}
	_, a := r.Header["Idempotency-Key"]
	_, b := r.Header["X-Idempotency-Key"]
	return a || b
}

// newRequestID returns a random UUID (version 4), as Envoy's x-request-id.
func newRequestID() string {
	var b [16]byte
	for i := 0; i < 16; i += 8 {
		v := rand.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

// mirror starts a copy of r to the canary in the background, unless its
// body is over the limit, too many copies are in flight, it asks for a
// protocol upgrade, or the Router is closed. A body within the limit is
// read first so both requests send the same bytes; r's body is replaced by
// a reader of what was read followed by the rest.
func (rt *Router) mirror(r *http.Request) {
	if _, ok := r.Header["Upgrade"]; ok {
		rt.mirrorSkipped.Add(1)
		return
	}
	var body []byte
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		if r.ContentLength > rt.mirrorLimit {
			rt.mirrorSkipped.Add(1)
			return
		}
		buf, err := io.ReadAll(io.LimitReader(r.Body, rt.mirrorLimit+1))
		r.Body = &replayBody{Reader: io.MultiReader(bytes.NewReader(buf), r.Body), c: r.Body}
		if err != nil || int64(len(buf)) > rt.mirrorLimit {
			rt.mirrorSkipped.Add(1)
			return
		}
		body = buf
	}
	select {
	case rt.mirrorSem <- struct{}{}:
	default:
		rt.mirrorSkipped.Add(1)
		return
	}
	rt.mirrorMu.Lock()
	if rt.closed {
		rt.mirrorMu.Unlock()
		<-rt.mirrorSem
		rt.mirrorSkipped.Add(1)
		return
	}
	rt.mirrorWG.Add(1)
	rt.mirrorMu.Unlock()
	m := rt.mirrorRequest(r, body)
	rt.mirrored.Add(1)
	go rt.sendMirror(m)
}

// replayBody is a request body partly read ahead.
type replayBody struct {
	io.Reader
	c io.Closer
}

func (b *replayBody) Close() error { return b.c.Close() }

// mirrorRequest builds the shadow: Envoy's copy of the request with the
// Host suffixed "-shadow" (before any port), sent to the canary.
func (rt *Router) mirrorRequest(r *http.Request, body []byte) *http.Request {
	m := r.Clone(rt.mirrorCtx)
	m.URL.Scheme = "http"
	m.URL.Host = rt.backends[toCanary].host
	m.Host = shadowHost(r.Host)
	m.RequestURI = ""
	m.Close = false
	m.TransferEncoding = nil
	m.Trailer = nil
	m.GetBody = nil
	removeHopByHop(m.Header)
	setForwardedFor(m.Header, r)
	if _, ok := m.Header["User-Agent"]; !ok {
		m.Header["User-Agent"] = []string{""} // not Go's default
	}
	if len(body) > 0 {
		m.Body = io.NopCloser(bytes.NewReader(body))
		m.ContentLength = int64(len(body))
	} else {
		m.Body, m.ContentLength = nil, 0
		if replayable(m) {
			makeNonReplayable(m)
		}
	}
	return m
}

// sendMirror sends a shadow and reports it as the canary's sidecar would;
// its response is read and dropped.
func (rt *Router) sendMirror(m *http.Request) {
	defer func() {
		<-rt.mirrorSem
		rt.mirrorWG.Done()
	}()
	start := time.Now()
	ctx := m.Context()
	if rt.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rt.cfg.Timeout)
		defer cancel()
		m = m.WithContext(ctx)
	}
	code, fl := 0, flagNone
	res, err := rt.transport.RoundTrip(m)
	switch {
	case err != nil && ctx.Err() != nil:
		fl = flagDC
	case err != nil && isDialError(err):
		code, fl = http.StatusServiceUnavailable, flagUF
	case err != nil:
		code, fl = http.StatusServiceUnavailable, flagUC
	default:
		code = res.StatusCode
		if _, err := io.Copy(io.Discard, res.Body); err != nil {
			fl = flagUC
			if ctx.Err() != nil {
				fl = flagDC
			}
		}
		_ = res.Body.Close()
	}
	rt.tel.observe(toCanary, code, fl, time.Since(start))
	if err != nil {
		rt.log.Debug("mirrored request failed", "workload", rt.backends[toCanary].Workload, "err", err)
	}
}

// shadowHost is Envoy's shadow authority: "-shadow" after the host, before
// the port.
func shadowHost(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && i > strings.LastIndexByte(h, ']') {
		return h[:i] + "-shadow" + h[i:]
	}
	return h + "-shadow"
}

// hopHeaders are the hop-by-hop headers a proxy does not forward.
var hopHeaders = [...]string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = strings.TrimSpace(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// bufferPool lends the proxy its 32 KiB copy buffers.
type bufferPool struct{ p *sync.Pool }

const copyBufSize = 32 << 10

func newBufferPool() bufferPool { return bufferPool{p: &sync.Pool{}} }

func (bp bufferPool) Get() []byte {
	if b, ok := bp.p.Get().(*[copyBufSize]byte); ok {
		return b[:]
	}
	return new([copyBufSize]byte)[:]
}

func (bp bufferPool) Put(b []byte) {
	if cap(b) >= copyBufSize {
		bp.p.Put((*[copyBufSize]byte)(b[:copyBufSize]))
	}
}
