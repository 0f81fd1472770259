package mockserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/canarylab/canarylab/mockserver/behavior"
	"github.com/labstack/echo/v4"
)

// state is a compiled config: everything a request needs, precomputed, so
// that swapping configs is one pointer store and serving allocates little.
type state struct {
	cfg         Config
	gen         uint64
	seed        uint64
	router      *echo.Echo
	base        behavior.Model
	phases      *schedule
	started     atomic.Int64 // unix nanos the schedule started; 0: not yet
	rules       []compiledRule
	reqFaults   bool
	maxReqDelay time.Duration
	maxInFlight int64
	maxBody     int64
}

type compiledRule struct {
	match matcher
	model behavior.Model
}

// schedule is a compiled Phases.
type schedule struct {
	models  []behavior.Model
	ends    []time.Duration // cumulative end of each step; 0 for an open last step
	total   time.Duration
	repeat  bool
	trigger bool
}

// compiledRoute is a Route ready to serve.
type compiledRoute struct {
	label       string
	status      int
	headers     [][2]string
	contentType string
	body        []byte
	tmpl        *template.Template
	echo        bool
	model       behavior.Model
	bypass      bool
	// obs caches the route's metric children by method and status, so
	// serving does not hash label values (see metrics.observeRoute).
	obs sync.Map
}

func (s *Server) compile(cfg Config) (*state, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	st := &state{
		cfg:         cfg,
		reqFaults:   !cfg.RequestFaults.Disabled,
		maxReqDelay: cfg.RequestFaults.maxDelay(),
		maxInFlight: cfg.Server.maxInFlight(),
		maxBody:     cfg.Server.maxBodyBytes(),
	}
	switch {
	case s.opts.Seed != nil:
		st.seed = *s.opts.Seed
	case cfg.Seed != nil:
		st.seed = *cfg.Seed
	default:
		st.seed = randomSeed()
	}
	var err error
	if st.base, err = cfg.Profile.Compile(); err != nil {
		return nil, fmt.Errorf("profile.%w", err)
	}
	if cfg.Phases != nil {
		sc := &schedule{repeat: cfg.Phases.Repeat, trigger: cfg.Phases.Start == PhasesOnTrigger}
		for i, step := range cfg.Phases.Steps {
			m, err := step.Profile.Compile()
			if err != nil {
				return nil, fmt.Errorf("phases.steps[%d].profile.%w", i, err)
			}
			sc.models = append(sc.models, m)
			sc.total += step.Duration.D()
			if step.Duration > 0 {
				sc.ends = append(sc.ends, sc.total)
			} else {
				sc.ends = append(sc.ends, 0)
			}
		}
		st.phases = sc
	}
	for i, r := range cfg.Rules {
		m, err := r.Profile.Compile()
		if err != nil {
			return nil, fmt.Errorf("rules[%d].profile.%w", i, err)
		}
		st.rules = append(st.rules, compiledRule{match: compileMatch(r.When), model: m})
	}
	st.router, err = s.buildRouter(st, cfg)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// phaseAt returns the step in force at now, the time since the schedule
// started, and the time left in the step (-1 when it lasts forever); the
// index is -1 before the schedule starts.
func (st *state) phaseAt(now time.Time) (int, time.Duration, time.Duration) {
	sc := st.phases
	if sc == nil {
		return -1, 0, 0
	}
	start := st.started.Load()
	if start == 0 {
		return -1, 0, 0
	}
	elapsed := now.Sub(time.Unix(0, start))
	if elapsed < 0 {
		elapsed = 0
	}
	t := elapsed
	if sc.repeat && sc.total > 0 {
		t = elapsed % sc.total
	}
	for i, end := range sc.ends {
		if end == 0 {
			return i, elapsed, -1
		}
		if t < end {
			return i, elapsed, end - t
		}
	}
	return len(sc.ends) - 1, elapsed, -1
}

// modelFor lays the behaviour of a request together, most general first:
// profile, phase step, route, first matching rule, override.
func (s *Server) modelFor(st *state, rt *compiledRoute, r *http.Request) behavior.Model {
	m := st.base
	var now time.Time
	if st.phases != nil {
		now = s.clock.Now()
		if i, _, _ := st.phaseAt(now); i >= 0 {
			m = st.phases.models[i].Over(m)
		}
	}
	m = rt.model.Over(m)
	for i := range st.rules {
		if st.rules[i].match.matches(r) {
			m = st.rules[i].model.Over(m)
			break
		}
	}
	if s.override.Load() != nil {
		if now.IsZero() {
			now = s.clock.Now()
		}
		if o := s.activeOverride(now); o != nil {
			m = o.model.Over(m)
		}
	}
	return m
}

// buildRouter makes the echo instance that routes this config's requests.
func (s *Server) buildRouter(st *state, cfg Config) (*echo.Echo, error) {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Logger.SetOutput(discardWriter{})
	taken := map[string]bool{}
	routes := cfg.Routes
	if len(routes) == 0 {
		routes = []Route{{Path: "/*", Name: "/*"}}
	}
	// Any-method routes go first, so that a route for one method on the
	// same path replaces that method only, whatever the order in the file.
	order := make([]int, 0, len(routes))
	for i, r := range routes {
		if r.method() == "ANY" {
			order = append(order, i)
		}
	}
	for i, r := range routes {
		if r.method() != "ANY" {
			order = append(order, i)
		}
	}
	anyMethod := map[string]echo.HandlerFunc{}
	for _, i := range order {
		r := routes[i]
		rt, err := s.compileRoute(r)
		if err != nil {
			return nil, fmt.Errorf("routes[%d].%w", i, err)
		}
		h := s.routeHandler(st, rt)
		if r.method() == "ANY" {
			e.Any(r.Path, h)
			anyMethod[r.Path] = h
		} else {
			e.Add(r.Method, r.Path, h)
		}
		taken[r.Path] = true
	}
	if len(cfg.Routes) > 0 {
		// Unrouted requests are answered and counted like any other, under
		// route="unmatched", so a typo in a load plan shows in the metrics.
		nf := &compiledRoute{label: "unmatched", status: http.StatusNotFound, bypass: true,
			contentType: "application/json", body: []byte(`{"error":"no route matches"}` + "\n")}
		e.RouteNotFound("/*", s.routeHandler(st, nf))
	}
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		code := http.StatusInternalServerError
		var he *echo.HTTPError
		if errors.As(err, &he) {
			code = he.Code
		}
		// echo.Any knows only the standard methods; an any-method route
		// serves the others too (BREW, PROPFIND).
		if code == http.StatusMethodNotAllowed {
			if h, ok := anyMethod[c.Path()]; ok {
				_ = h(c)
				return
			}
		}
		if !c.Response().Committed {
			c.Response().Header().Set(HeaderVersion, s.version)
			_ = c.JSON(code, map[string]string{"error": http.StatusText(code)})
		}
		cnt := s.counts.Load()
		cnt.requests.Add(1)
		cnt.status(code)
		s.metrics.observe("unmatched", methodLabel(c.Request().Method), code, 0)
	}
	if !cfg.Server.DisableProbes {
		for _, p := range []string{"/healthz", "/readyz"} {
			if taken[p] {
				continue
			}
			probe := s.probeHandler(p == "/readyz")
			e.GET(p, func(c echo.Context) error { probe(c.Response(), c.Request()); return nil })
		}
	}
	return e, nil
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

func (s *Server) compileRoute(r Route) (*compiledRoute, error) {
	rt := &compiledRoute{label: r.Name, status: r.Status, echo: r.Echo, bypass: r.Bypass}
	if rt.label == "" {
		rt.label = r.Path
	}
	if rt.status == 0 {
		rt.status = http.StatusOK
	}
	keys := make([]string, 0, len(r.Headers))
	for k := range r.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if strings.EqualFold(k, "Content-Type") {
			rt.contentType = r.Headers[k]
			continue
		}
		rt.headers = append(rt.headers, [2]string{http.CanonicalHeaderKey(k), r.Headers[k]})
	}
	switch {
	case r.Body != "":
		rt.body = []byte(r.Body)
		rt.contentType = orString(rt.contentType, sniffType(r.Body))
	case r.BodySize > 0:
		rt.body = generatedBody(int(r.BodySize))
		rt.contentType = orString(rt.contentType, "application/octet-stream")
	case r.Template != "":
		t, err := parseTemplate(r.Template)
		if err != nil {
			return nil, fmt.Errorf("template: %w", err)
		}
		rt.tmpl = t
		rt.contentType = orString(rt.contentType, sniffType(r.Template))
	case r.Echo:
		rt.contentType = orString(rt.contentType, "application/json")
	default:
		b, _ := json.Marshal(map[string]any{"service": "canarylab-mock", "version": s.version})
		rt.body = append(b, '\n')
		rt.contentType = orString(rt.contentType, "application/json")
	}
	if r.Profile != nil {
		m, err := r.Profile.Compile()
		if err != nil {
			return nil, fmt.Errorf("profile.%w", err)
		}
		rt.model = m
	}
	return rt, nil
}

// parseTemplate parses a route's body template; validation and serving
// both use it, so a template that validates also serves.
func parseTemplate(text string) (*template.Template, error) {
	return template.New("body").Option("missingkey=zero").Parse(text)
}

func orString(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func sniffType(body string) string {
	t := strings.TrimSpace(body)
	if strings.HasPrefix(t, "{") || strings.HasPrefix(t, "[") {
		return "application/json"
	}
	return "text/plain; charset=utf-8"
}

// generatedBody is n printable bytes, the same for every n, so sizes can be
// checked and compressed sizes are not misleadingly small.
func generatedBody(n int) []byte {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = alphabet[x%uint32(len(alphabet))]
	}
	if n > 0 {
		b[n-1] = '\n'
	}
	return b
}
