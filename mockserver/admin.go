package mockserver

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/canarylab/canarylab/mockserver/behavior"
	"github.com/canarylab/canarylab/mockserver/strictyaml"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"sigs.k8s.io/yaml"
)

// maxAdminBody bounds what the admin API reads from a request.
const maxAdminBody = 4 << 20

// reloader re-reads the config from where it came from (file and flags);
// the command sets it.
type reloader struct {
	mu   sync.Mutex
	load func() (Config, error)
}

// SetReloader installs the loader that POST /reload, SIGHUP and file
// changes use to re-read the config. Without one, /reload answers 404.
func (s *Server) SetReloader(load func() (Config, error)) {
	s.reload.mu.Lock()
	s.reload.load = load
	s.reload.mu.Unlock()
}

// Reload re-reads the config with the installed loader and applies it. A
// config that does not load or validate is refused, counted and logged;
// the config in force keeps serving.
func (s *Server) Reload(source string) error {
	s.reload.mu.Lock()
	load := s.reload.load
	s.reload.mu.Unlock()
	if load == nil {
		return errNoReloader
	}
	cfg, err := load()
	if err != nil {
		s.metrics.configApplied.WithLabelValues(source, "refused").Inc()
		s.log.Error("config refused; the old one keeps serving", "source", source, "error", err)
		return err
	}
	if err := s.Apply(cfg, source); err != nil {
		s.log.Error("config refused; the old one keeps serving", "source", source, "error", err)
		return err
	}
	return nil
}

var errNoReloader = errors.New("this server was not started from a config file: replace the config with PUT /config instead")

// AdminEndpoints lists the admin API, for GET / and the docs.
var AdminEndpoints = []struct{ Method, Path, What string }{
	{"GET", "/metrics", "Prometheus metrics"},
	{"GET", "/healthz", "liveness: 200 while the process serves"},
	{"GET", "/readyz", "readiness: 200, or 503 after POST /readyz/disable"},
	{"POST", "/readyz/enable", "answer /readyz with 200"},
	{"POST", "/readyz/disable", "answer /readyz with 503 (the pod leaves its Service)"},
	{"GET", "/status", "version, config generation, seed, phase, override, readiness"},
	{"GET", "/config", "the config in force (?format=yaml for YAML)"},
	{"PUT", "/config", "replace the config (YAML or JSON); a bad one gets 400 and the old one keeps serving"},
	{"PATCH", "/config", "change part of the config with a JSON merge patch (RFC 7386), YAML or JSON"},
	{"POST", "/config/validate", "check a config without applying it"},
	{"POST", "/reload", "re-read the config file (as SIGHUP does)"},
	{"GET", "/override", "the temporary fault override in force"},
	{"POST", "/override", "lay a profile over every request for a while: {\"errors\": \"503:0.5\", \"for\": \"30s\"}"},
	{"DELETE", "/override", "end the override"},
	{"GET", "/counts", "realised counts of everything injected since the start or the last reset"},
	{"DELETE", "/counts", "reset the counts (answers with the counts before the reset)"},
	{"GET", "/phases", "where the phase schedule is"},
	{"POST", "/phases/start", "start (or restart) the phase schedule now"},
}

func (s *Server) newAdmin() http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Logger.SetOutput(discardWriter{})
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		code := http.StatusInternalServerError
		msg := err.Error()
		var he *echo.HTTPError
		if errors.As(err, &he) {
			code = he.Code
			msg = fmt.Sprint(he.Message)
		}
		if !c.Response().Committed {
			_ = c.JSON(code, map[string]any{"error": msg})
		}
	}
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		Registry:          s.metrics.registry,
	})))
	healthz, readyz := s.probeHandler(false), s.probeHandler(true)
	e.GET("/healthz", echo.WrapHandler(healthz))
	e.GET("/readyz", echo.WrapHandler(readyz))

	g := e.Group("", s.requireToken)
	g.GET("/", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]any{"endpoints": AdminEndpoints}) })
	g.POST("/readyz/enable", func(c echo.Context) error {
		s.SetReady(true)
		return c.JSON(http.StatusOK, map[string]bool{"ready": true})
	})
	g.POST("/readyz/disable", func(c echo.Context) error {
		s.SetReady(false)
		return c.JSON(http.StatusOK, map[string]bool{"ready": false})
	})
	g.GET("/status", func(c echo.Context) error { return c.JSON(http.StatusOK, s.Status()) })
	g.GET("/config", s.getConfig)
	g.PUT("/config", s.putConfig)
	g.PATCH("/config", s.patchConfig)
	g.POST("/config/validate", s.validateConfig)
	g.POST("/reload", func(c echo.Context) error {
		if err := s.Reload(SourceAPI); err != nil {
			if errors.Is(err, errNoReloader) {
				return c.JSON(http.StatusNotFound, map[string]any{"error": err.Error()})
			}
			return configError(c, err)
		}
		return c.JSON(http.StatusOK, map[string]any{"generation": s.Generation()})
	})
	g.GET("/override", func(c echo.Context) error { return c.JSON(http.StatusOK, s.OverrideStatus()) })
	g.POST("/override", s.postOverride)
	g.DELETE("/override", func(c echo.Context) error { s.ClearOverride(); return c.JSON(http.StatusOK, s.OverrideStatus()) })
	g.GET("/counts", func(c echo.Context) error { return c.JSON(http.StatusOK, s.Counts()) })
	g.DELETE("/counts", func(c echo.Context) error { return c.JSON(http.StatusOK, s.ResetCounts()) })
	g.GET("/phases", func(c echo.Context) error { return c.JSON(http.StatusOK, s.Phase()) })
	g.POST("/phases/start", func(c echo.Context) error {
		if err := s.StartPhases(); err != nil {
			return c.JSON(http.StatusConflict, map[string]any{"error": err.Error()})
		}
		return c.JSON(http.StatusOK, s.Phase())
	})
	return e
}

// requireToken checks the bearer token when one is set.
func (s *Server) requireToken(next echo.HandlerFunc) echo.HandlerFunc {
	if s.opts.AdminToken == "" {
		return next
	}
	want := []byte("Bearer " + s.opts.AdminToken)
	return func(c echo.Context) error {
		got := []byte(c.Request().Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="canarylab-mock-admin"`)
			return c.JSON(http.StatusUnauthorized, map[string]any{"error": "missing or wrong bearer token: send Authorization: Bearer <token> (--admin-token)"})
		}
		return next(c)
	}
}

func (s *Server) probeHandler(readiness bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderVersion, s.version)
		w.Header().Set("Content-Type", "application/json")
		if readiness && !s.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"status":"not ready"}`+"\n")
			return
		}
		_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
	}
}

// Status is the server's state at a glance.
type Status struct {
	Version    string         `json:"version"`
	Generation uint64         `json:"generation"`
	Seed       uint64         `json:"seed"`
	Ready      bool           `json:"ready"`
	InFlight   int64          `json:"inFlight"`
	Profile    string         `json:"profile"`
	Phase      PhaseStatus    `json:"phase"`
	Override   OverrideStatus `json:"override"`
}

// Status returns the server's state.
func (s *Server) Status() Status {
	st := s.state.Load()
	return Status{
		Version:    s.version,
		Generation: st.gen,
		Seed:       st.seed,
		Ready:      s.ready.Load(),
		InFlight:   s.inFlight.Load(),
		Profile:    st.cfg.Profile.String(),
		Phase:      s.Phase(),
		Override:   s.OverrideStatus(),
	}
}

// OverrideStatus describes the override in force.
type OverrideStatus struct {
	Active    bool              `json:"active"`
	Profile   *behavior.Profile `json:"profile,omitempty"`
	Until     *time.Time        `json:"until,omitempty"`
	Remaining string            `json:"remaining,omitempty"`
}

// OverrideStatus returns the override in force.
func (s *Server) OverrideStatus() OverrideStatus {
	now := s.clock.Now()
	o := s.activeOverride(now)
	if o == nil {
		return OverrideStatus{}
	}
	p, until := o.profile, o.until
	return OverrideStatus{Active: true, Profile: &p, Until: &until, Remaining: behavior.FormatDuration(until.Sub(now).Round(time.Millisecond))}
}

// overrideRequest is the body of POST /override: a profile and how long.
type overrideRequest struct {
	behavior.Profile
	For behavior.Duration `json:"for"`
}

func (s *Server) postOverride(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	var req overrideRequest
	if err := strictyaml.Decode(body, &req); err != nil {
		return configError(c, err)
	}
	if req.For <= 0 {
		return configError(c, strictyaml.FieldErrors{{Field: "for", Message: "required: how long the override lasts, such as \"30s\""}})
	}
	if req.Profile.IsZero() {
		return configError(c, strictyaml.FieldErrors{{Field: "", Message: "give a latency, errors or faults to lay over every request"}})
	}
	if errs := req.Profile.Validate(); len(errs) > 0 {
		return configError(c, strictyaml.FieldErrors(errs))
	}
	if err := s.SetOverride(req.Profile, req.For.D()); err != nil {
		return configError(c, err)
	}
	return c.JSON(http.StatusOK, s.OverrideStatus())
}

func readBody(c echo.Context) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, maxAdminBody))
	if err != nil {
		return nil, echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("read body: %v", err))
	}
	return b, nil
}

// configError answers 400 with every field problem listed.
func configError(c echo.Context, err error) error {
	var fe strictyaml.FieldErrors
	var one strictyaml.FieldError
	resp := map[string]any{"error": err.Error()}
	switch {
	case errors.As(err, &fe):
		resp["fields"] = fe
	case errors.As(err, &one):
		resp["fields"] = []strictyaml.FieldError{one}
	}
	return c.JSON(http.StatusBadRequest, resp)
}

func wantsYAML(c echo.Context) bool {
	if f := c.QueryParam("format"); f != "" {
		return f == "yaml"
	}
	accept := c.Request().Header.Get("Accept")
	return strings.Contains(accept, "yaml")
}

func (s *Server) getConfig(c echo.Context) error {
	st := s.state.Load()
	c.Response().Header().Set("X-Canarylab-Config-Generation", fmt.Sprint(st.gen))
	js := st.cfg.Marshal()
	if wantsYAML(c) {
		y, err := yaml.JSONToYAML(js)
		if err != nil {
			return err
		}
		return c.Blob(http.StatusOK, "application/yaml", y)
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, js)
}

func (s *Server) applied(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"generation": s.Generation(), "seed": s.Seed()})
}

func (s *Server) putConfig(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	cfg, err := ParseConfig(body)
	if err != nil {
		s.metrics.configApplied.WithLabelValues(SourceAPI, "refused").Inc()
		return configError(c, err)
	}
	if err := s.Apply(cfg, SourceAPI); err != nil {
		return configError(c, err)
	}
	return s.applied(c)
}

func (s *Server) patchConfig(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	cfg, err := MergePatch(s.Config(), body)
	if err != nil {
		s.metrics.configApplied.WithLabelValues(SourceAPI, "refused").Inc()
		return configError(c, err)
	}
	if err := s.Apply(cfg, SourceAPI); err != nil {
		return configError(c, err)
	}
	return s.applied(c)
}

func (s *Server) validateConfig(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	cfg, err := ParseConfig(body)
	if err == nil {
		err = sameStartSettings(s.Config().Server, cfg.Server)
	}
	if err != nil {
		return configError(c, err)
	}
	return c.JSON(http.StatusOK, map[string]any{"valid": true, "profile": cfg.Profile.String()})
}

// MergePatch applies a JSON merge patch (RFC 7386; YAML is read too) to
// cfg and validates the result.
func MergePatch(cfg Config, patch []byte) (Config, error) {
	pj, err := yaml.YAMLToJSONStrict(patch)
	if err != nil {
		return Config{}, fmt.Errorf("patch is not valid YAML or JSON: %w", err)
	}
	var p any
	if err := json.Unmarshal(pj, &p); err != nil {
		return Config{}, fmt.Errorf("patch is not valid JSON: %w", err)
	}
	if _, ok := p.(map[string]any); !ok {
		return Config{}, fmt.Errorf("patch must be an object, such as {\"profile\": {\"errors\": \"503:0.1\"}}")
	}
	var doc any
	if err := json.Unmarshal(cfg.Marshal(), &doc); err != nil {
		return Config{}, err
	}
	merged, err := json.Marshal(mergePatch(doc, p))
	if err != nil {
		return Config{}, err
	}
	return ParseConfig(merged)
}

func mergePatch(target, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	tm, ok := target.(map[string]any)
	if !ok {
		tm = map[string]any{}
	}
	for k, v := range pm {
		if v == nil {
			delete(tm, k)
			continue
		}
		tm[k] = mergePatch(tm[k], v)
	}
	return tm
}
