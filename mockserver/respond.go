package mockserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/canarylab/canarylab/mockserver/behavior"
	"github.com/labstack/echo/v4"
)

// Names of the request-driven parameters, as query parameters and headers.
const (
	ParamDelay  = "delay"
	ParamStatus = "status"
	ParamFault  = "fault"

	HeaderDelay  = "X-Canarylab-Delay"
	HeaderStatus = "X-Canarylab-Status"
	HeaderFault  = "X-Canarylab-Fault"

	// HeaderVersion carries the server's version label on every answer.
	HeaderVersion = "X-Canarylab-Version"
	// HeaderInjected lists what was injected into an answer
	// (delay, error, slow_body, truncate), when anything was.
	HeaderInjected = "X-Canarylab-Injected"
)

func (s *Server) routeHandler(st *state, rt *compiledRoute) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		r := c.Request()
		code := s.respond(c, st, rt)
		elapsed := time.Since(start)
		cnt := s.counts.Load()
		cnt.requests.Add(1)
		cnt.status(code)
		s.metrics.observeRoute(rt, r.Method, code, elapsed)
		if s.opts.AccessLog {
			s.log.Info("request", "method", r.Method, "path", r.URL.Path, "route", rt.label, "code", code, "duration", elapsed)
		}
		return nil
	}
}

// respond answers one request as its behaviour says and returns the status
// to record (0 when no response was sent).
func (s *Server) respond(c echo.Context, st *state, rt *compiledRoute) int {
	r, w := c.Request(), c.Response()
	cnt := s.counts.Load()
	var o behavior.Outcome
	capSource := "profile"
	if !rt.bypass {
		m := s.modelFor(st, rt, r)
		if st.reqFaults {
			rm, ok, err := requestModel(r, st.maxReqDelay)
			if err != nil {
				cnt.rejected[rejectBadFault].Add(1)
				s.metrics.rejected.WithLabelValues(rejectNames[rejectBadFault]).Inc()
				w.Header().Set(HeaderVersion, s.version)
				http.Error(w, err.Error(), http.StatusBadRequest)
				return http.StatusBadRequest
			}
			if ok {
				cnt.requestDriven.Add(1)
				s.metrics.requestDrivenOK.Inc()
				m = rm.Over(m)
				if rm.LatencySource() != "" {
					capSource = "request"
				}
			}
		}
		if !m.IsZero() {
			o = s.rng.sample(m)
		}
	}
	switch o.Fault {
	case behavior.FaultReset, behavior.FaultClose, behavior.FaultHang:
		s.countFault(cnt, o.Fault)
		cnt.bad.Add(1)
		s.dropConnection(w, r, o)
		return 0
	}
	var injected []string
	if o.Delay > 0 || o.Capped {
		cnt.delayed.Add(1)
		cnt.delayNanos.Add(int64(o.Delay))
		s.metrics.injectedDelay.Observe(o.Delay.Seconds())
		if o.Capped {
			s.countCapped(cnt, capSource)
		}
		injected = append(injected, "delay")
		if !sleep(r, o.Delay) {
			cnt.clientGaveUp.Add(1)
			s.metrics.clientGaveUp.Inc()
			return 499
		}
	}
	status := rt.status
	if o.Status != 0 {
		status = o.Status
		cnt.injected[status].Add(1)
		s.metrics.faultCounters[0].Inc()
		s.metrics.injectedErrors.WithLabelValues(s.metrics.code(status)).Inc()
		injected = append(injected, "error")
	}
	if o.Fault != behavior.FaultNone {
		s.countFault(cnt, o.Fault)
		injected = append(injected, o.Fault.String())
	}
	if o.Status != 0 || o.Fault != behavior.FaultNone {
		cnt.bad.Add(1)
	}

	h := w.Header()
	h.Set(HeaderVersion, s.version)
	h.Set("Server-Timing", serverTiming(o))
	if len(injected) > 0 {
		h.Set(HeaderInjected, strings.Join(injected, ","))
	}
	for _, kv := range rt.headers {
		h.Set(kv[0], kv[1])
	}
	var body []byte
	if o.Status != 0 {
		body = s.errorBody(status)
		h.Set(echo.HeaderContentType, "application/json")
	} else {
		var err error
		if body, err = s.routeBody(c, rt); err != nil {
			if tooLarge := new(http.MaxBytesError); errors.As(err, &tooLarge) {
				cnt.rejected[rejectBodyTooLarge].Add(1)
				s.metrics.rejected.WithLabelValues(rejectNames[rejectBodyTooLarge]).Inc()
				http.Error(w, fmt.Sprintf("request body larger than %d bytes", tooLarge.Limit), http.StatusRequestEntityTooLarge)
				return http.StatusRequestEntityTooLarge
			}
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return http.StatusInternalServerError
		}
		if rt.contentType != "" {
			h.Set(echo.HeaderContentType, rt.contentType)
		}
	}
	h.Set(echo.HeaderContentLength, strconv.Itoa(len(body)))
	switch o.Fault {
	case behavior.FaultSlowBody:
		w.WriteHeader(status)
		s.dribble(w, r, body, o.FaultDuration)
	case behavior.FaultTruncate:
		w.WriteHeader(status)
		n := int(float64(len(body)) * o.FaultFraction)
		_, _ = w.Write(body[:n])
		_ = http.NewResponseController(w).Flush()
		abort(w)
	default:
		w.WriteHeader(status)
		if r.Method != http.MethodHead {
			_, _ = w.Write(body)
		}
	}
	return status
}

func (s *Server) countFault(cnt *counters, k behavior.FaultKind) {
	cnt.faults[k].Add(1)
	s.metrics.faultCounters[k].Inc()
}

func (s *Server) countCapped(cnt *counters, source string) {
	cnt.delayCapped.Add(1)
	s.metrics.delayCapped.WithLabelValues(source).Inc()
}

// sleep waits d, or until the client goes away (false).
func sleep(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// serverTiming reports the injected delay so clients can tell it from the
// server's own time (milliseconds, as the Server-Timing header wants).
func serverTiming(o behavior.Outcome) string {
	if o.Delay == 0 && !o.Capped {
		return "injected-delay;dur=0"
	}
	ms := strconv.FormatFloat(float64(o.Delay)/float64(time.Millisecond), 'f', -1, 64)
	if o.Capped {
		uncapped := strconv.FormatFloat(float64(o.Uncapped)/float64(time.Millisecond), 'f', -1, 64)
		return "injected-delay;dur=" + ms + `;desc="capped from ` + uncapped + `ms"`
	}
	return "injected-delay;dur=" + ms
}

// errorBody is the body of an injected error:
// {"error":"injected","status":503,"version":"canary"}.
func (s *Server) errorBody(status int) []byte {
	b := make([]byte, 0, len(s.errBodyEnd)+40)
	b = append(b, `{"error":"injected","status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	return append(b, s.errBodyEnd...)
}

// templateData is what a route's template sees.
type templateData struct {
	Version string
	Method  string
	Path    string
	Host    string
	Params  map[string]string
	Query   map[string][]string
	Header  http.Header
}

// echoedRequest is the JSON a route with echo: true answers.
type echoedRequest struct {
	Version    string              `json:"version"`
	Method     string              `json:"method"`
	Path       string              `json:"path"`
	Query      map[string][]string `json:"query"`
	Params     map[string]string   `json:"params,omitempty"`
	Headers    map[string][]string `json:"headers"`
	Host       string              `json:"host"`
	RemoteAddr string              `json:"remoteAddr"`
	Proto      string              `json:"proto"`
	Body       string              `json:"body,omitempty"`
}

func pathParams(c echo.Context) map[string]string {
	names := c.ParamNames()
	if len(names) == 0 {
		return nil
	}
	p := make(map[string]string, len(names))
	for _, n := range names {
		p[n] = c.Param(n)
	}
	return p
}

func (s *Server) routeBody(c echo.Context, rt *compiledRoute) ([]byte, error) {
	r := c.Request()
	switch {
	case rt.tmpl != nil:
		var buf bytes.Buffer
		err := rt.tmpl.Execute(&buf, templateData{
			Version: s.version, Method: r.Method, Path: r.URL.Path, Host: r.Host,
			Params: pathParams(c), Query: r.URL.Query(), Header: r.Header,
		})
		if err != nil {
			return nil, fmt.Errorf("route %s: template: %w", rt.label, err)
		}
		return buf.Bytes(), nil
	case rt.echo:
		var body []byte
		if r.Body != nil {
			var err error
			if body, err = io.ReadAll(r.Body); err != nil {
				return nil, fmt.Errorf("read request body: %w", err)
			}
		}
		b, err := json.MarshalIndent(echoedRequest{
			Version: s.version, Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(),
			Params: pathParams(c), Headers: r.Header, Host: r.Host, RemoteAddr: r.RemoteAddr,
			Proto: r.Proto, Body: string(body),
		}, "", "  ")
		if err != nil {
			return nil, err
		}
		return append(b, '\n'), nil
	}
	return rt.body, nil
}

// dribble sends body in small pieces spread over d, at most 20 a second.
func (s *Server) dribble(w http.ResponseWriter, r *http.Request, body []byte, d time.Duration) {
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	if len(body) == 0 {
		return
	}
	pieces := int(d / (50 * time.Millisecond))
	pieces = max(1, min(pieces, len(body)))
	step := d / time.Duration(pieces)
	t := time.NewTicker(step)
	defer t.Stop()
	for i := 0; i < pieces; i++ {
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		case <-s.stopping:
			abort(w)
			return
		}
		lo, hi := i*len(body)/pieces, (i+1)*len(body)/pieces
		if _, err := w.Write(body[lo:hi]); err != nil {
			return
		}
		_ = rc.Flush()
	}
}

// dropConnection applies a fault that sends no response.
func (s *Server) dropConnection(w http.ResponseWriter, r *http.Request, o behavior.Outcome) {
	switch o.Fault {
	case behavior.FaultHang:
		t := time.NewTimer(o.FaultDuration)
		select {
		case <-t.C:
		case <-r.Context().Done():
		case <-s.stopping:
		}
		t.Stop()
		closeConn(w, false)
	case behavior.FaultReset:
		closeConn(w, true)
	default:
		closeConn(w, false)
	}
}

// closeConn takes the connection from net/http and closes it: with an RST
// (SO_LINGER 0) for a reset, with a FIN otherwise. Where the connection
// cannot be taken (HTTP/2), the handler aborts, which resets the stream.
func closeConn(w http.ResponseWriter, reset bool) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if reset {
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
	}
	_ = conn.Close()
}

// abort ends a response that has started, so the client sees it cut short.
func abort(w http.ResponseWriter) {
	closeConn(w, false)
}

// requestModel reads the request's own delay, status and fault parameters
// (query first, then headers). ok is false when it gives none.
func requestModel(r *http.Request, maxDelay time.Duration) (m behavior.Model, ok bool, err error) {
	// Parse the query once, and only when it may hold a parameter; the
	// header names are canonical, so the map is read directly.
	var q url.Values
	if rq := r.URL.RawQuery; rq != "" &&
		(strings.Contains(rq, ParamDelay) || strings.Contains(rq, ParamStatus) || strings.Contains(rq, ParamFault)) {
		q = r.URL.Query()
	}
	get := func(param, header string) string {
		if v := q.Get(param); v != "" {
			return v
		}
		if v := r.Header[header]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	delay, status, fault := get(ParamDelay, HeaderDelay), get(ParamStatus, HeaderStatus), get(ParamFault, HeaderFault)
	if delay == "" && status == "" && fault == "" {
		return m, false, nil
	}
	p, err := ParseRequestFaults(delay, status, fault, maxDelay)
	if err != nil {
		return m, false, err
	}
	m, err = p.Compile()
	return m, err == nil, err
}

// ParseRequestFaults reads the request-driven parameters into a profile:
// delay is a duration or a distribution (capped at maxDelay), status a code
// or a mix (503:0.2,500:0.1), fault a kind or a mix (reset, hang:0.5).
func ParseRequestFaults(delay, status, fault string, maxDelay time.Duration) (behavior.Profile, error) {
	var p behavior.Profile
	if delay != "" {
		l, err := behavior.ParseLatency(delay)
		if err != nil {
			return p, fmt.Errorf("%s: %w", ParamDelay, err)
		}
		if maxDelay > 0 && (l.Cap == 0 || l.Cap.D() > maxDelay) {
			l.Cap = behavior.Duration(maxDelay)
		}
		p.Latency = &l
	}
	if status != "" {
		e, err := behavior.ParseErrors(status)
		if err != nil {
			return p, fmt.Errorf("%s: %w", ParamStatus, err)
		}
		p.Errors = &e
	}
	if fault != "" {
		var parts []string
		for _, part := range strings.Split(fault, ",") {
			part = strings.TrimSpace(part)
			switch {
			case part == "":
				continue
			case !strings.Contains(part, ":"):
				part += ":1" // a bare kind happens to every request
			}
			parts = append(parts, part)
		}
		f, err := behavior.ParseFaults(strings.Join(parts, ","))
		if err != nil {
			return p, fmt.Errorf("%s: %w", ParamFault, err)
		}
		p.Faults = &f
	}
	return p, nil
}
