// Package mockserver is canarylab's flexible HTTP mock server: it plays the
// stable and the canary version of a service, injects latency, errors and
// connection faults as its behaviour profile says, lets that profile change
// while it runs, and reports what it injected as Prometheus metrics.
//
// A Server is a library first: the orchestrator runs several in one
// process. The canarylab mock command wraps one in a process.
package mockserver

import (
	crand "crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/canarylab/canarylab/mockserver/behavior"
	"github.com/canarylab/canarylab/mockserver/strictyaml"
	"github.com/prometheus/client_golang/prometheus"
)

// Clock tells the time for phases and overrides; tests inject a fake one.
// Injected delays always run on real timers: they are the product.
type Clock interface {
	Now() time.Time
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

// Options are a server's settings for its whole life.
type Options struct {
	// VersionLabel names the version the server plays ("stable", "canary",
	// "v2"). It is sent in the X-Canarylab-Version header and is the
	// version label of every metric. Default "v1".
	VersionLabel string
	// Seed, when set, wins over the config's seed.
	Seed *uint64
	// AdminToken, when set, must be sent as a bearer token to every admin
	// endpoint but /metrics, /healthz and /readyz.
	AdminToken string
	// Clock defaults to the wall clock.
	Clock Clock
	// Logger defaults to a discarding logger.
	Logger *slog.Logger
	// AccessLog logs every request at info level.
	AccessLog bool
}

// Server is a mock server. Its config can be replaced at any time; requests
// in flight finish with the config they started with.
type Server struct {
	opts     Options
	version  string
	clock    Clock
	log      *slog.Logger
	state    atomic.Pointer[state]
	gen      atomic.Uint64
	applyMu  sync.Mutex // serialises Apply so generations follow apply order
	rng      lockedRand
	metrics  *metrics
	counts   atomic.Pointer[counters]
	override atomic.Pointer[override]
	ready    atomic.Bool
	inFlight atomic.Int64
	stopping chan struct{}
	stopOnce sync.Once
	admin    http.Handler
	reload   reloader
	// errBodyEnd ends every injected error's body: the version, quoted once.
	errBodyEnd string
}

// New builds a server serving cfg.
func New(cfg Config, opts Options) (*Server, error) {
	if opts.VersionLabel == "" {
		opts.VersionLabel = "v1"
	}
	if opts.Clock == nil {
		opts.Clock = wallClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:     opts,
		version:  opts.VersionLabel,
		clock:    opts.Clock,
		log:      opts.Logger,
		stopping: make(chan struct{}),
	}
	quoted, _ := json.Marshal(s.version)
	s.errBodyEnd = `,"version":` + string(quoted) + "}\n"
	s.metrics = newMetrics(s.version)
	s.metrics.registerFuncs(s)
	s.counts.Store(&counters{since: s.clock.Now()})
	s.ready.Store(true)
	if err := s.Apply(cfg, SourceStart); err != nil {
		return nil, err
	}
	s.admin = s.newAdmin()
	return s, nil
}

// Sources of a config update, as counted in
// canarylab_mock_config_updates_total.
const (
	SourceStart  = "start"
	SourceAPI    = "api"
	SourceFile   = "file"
	SourceSignal = "signal"
)

// Apply validates cfg and, if it is good, makes it the config served from
// the next request on. A bad config is refused with the reasons, and the
// config in force keeps serving.
func (s *Server) Apply(cfg Config, source string) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if cur := s.state.Load(); cur != nil {
		if err := sameStartSettings(cur.cfg.Server, cfg.Server); err != nil {
			s.metrics.configApplied.WithLabelValues(source, "refused").Inc()
			return err
		}
	}
	st, err := s.compile(cfg)
	if err != nil {
		s.metrics.configApplied.WithLabelValues(source, "refused").Inc()
		return err
	}
	st.gen = s.gen.Add(1)
	st.started.Store(0)
	if st.phases != nil && !st.phases.trigger {
		st.started.Store(s.clock.Now().UnixNano())
	}
	s.rng.reseed(st.seed)
	s.state.Store(st)
	s.metrics.configApplied.WithLabelValues(source, "applied").Inc()
	s.log.Info("config applied", "generation", st.gen, "source", source, "seed", st.seed, "profile", cfg.Profile.String())
	return nil
}

// sameStartSettings refuses changes to settings read only at start.
func sameStartSettings(old, new ServerSettings) error {
	var errs strictyaml.FieldErrors
	check := func(field string, was, now time.Duration) {
		if was != now {
			errs = append(errs, strictyaml.FieldError{Field: "server." + field, Message: fmt.Sprintf(
				"takes effect only when the server starts: restart it to change this, or keep %s (asked for %s)",
				behavior.FormatDuration(was), behavior.FormatDuration(now))})
		}
	}
	check("readHeaderTimeout", old.readHeaderTimeout(), new.readHeaderTimeout())
	check("idleTimeout", old.idleTimeout(), new.idleTimeout())
	return errs.Err()
}

// Config returns the config in force.
func (s *Server) Config() Config { return s.state.Load().cfg }

// Generation returns the generation of the config in force.
func (s *Server) Generation() uint64 { return s.state.Load().gen }

// Seed returns the seed of the config in force (chosen at random when the
// config gives none).
func (s *Server) Seed() uint64 { return s.state.Load().seed }

// VersionLabel returns the version the server plays.
func (s *Server) VersionLabel() string { return s.version }

// Registry returns the registry of the server's metrics.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.registry }

// SetReady switches /readyz between 200 and 503.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// Ready reports whether /readyz answers 200.
func (s *Server) Ready() bool { return s.ready.Load() }

// Counts returns the realised counts since the start or the last reset.
func (s *Server) Counts() Counts { return s.counts.Load().snapshot() }

// ResetCounts starts the realised counts from zero and returns the last.
func (s *Server) ResetCounts() Counts {
	old := s.counts.Swap(&counters{since: s.clock.Now()})
	return old.snapshot()
}

// override is a temporary profile laid over everything else.
type override struct {
	profile behavior.Profile
	model   behavior.Model
	until   time.Time
}

// SetOverride lays p over every request's behaviour for d. It replaces any
// override in force.
func (s *Server) SetOverride(p behavior.Profile, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("for: must be a positive duration such as \"30s\"")
	}
	m, err := p.Compile()
	if err != nil {
		return fmt.Errorf("profile.%w", err)
	}
	s.override.Store(&override{profile: p, model: m, until: s.clock.Now().Add(d)})
	s.log.Info("override set", "profile", p.String(), "for", d)
	return nil
}

// ClearOverride ends the override in force, if any.
func (s *Server) ClearOverride() { s.override.Store(nil) }

// activeOverride returns the override in force at now, or nil.
func (s *Server) activeOverride(now time.Time) *override {
	o := s.override.Load()
	if o == nil || !now.Before(o.until) {
		return nil
	}
	return o
}

// StartPhases starts (or restarts) the phase schedule now.
func (s *Server) StartPhases() error {
	st := s.state.Load()
	if st.phases == nil {
		return fmt.Errorf("the config has no phases to start")
	}
	st.started.Store(s.clock.Now().UnixNano())
	return nil
}

// PhaseStatus describes where the schedule is.
type PhaseStatus struct {
	Configured bool    `json:"configured"`
	Started    bool    `json:"started"`
	Index      int     `json:"index"`
	Name       string  `json:"name,omitempty"`
	Elapsed    string  `json:"elapsed,omitempty"`
	Remaining  string  `json:"remaining,omitempty"`
	Profile    string  `json:"profile,omitempty"`
	Steps      []Phase `json:"steps,omitempty"`
}

// Phase reports the phase schedule's position.
func (s *Server) Phase() PhaseStatus {
	st := s.state.Load()
	if st.phases == nil {
		return PhaseStatus{Index: -1}
	}
	ps := PhaseStatus{Configured: true, Index: -1, Steps: st.cfg.Phases.Steps}
	i, elapsed, remaining := st.phaseAt(s.clock.Now())
	if i < 0 {
		return ps
	}
	ps.Started, ps.Index = true, i
	ps.Name = st.cfg.Phases.Steps[i].Name
	ps.Profile = st.cfg.Phases.Steps[i].Profile.String()
	ps.Elapsed = behavior.FormatDuration(elapsed.Round(time.Millisecond))
	if remaining >= 0 {
		ps.Remaining = behavior.FormatDuration(remaining.Round(time.Millisecond))
	}
	return ps
}

// Close ends hangs and slow bodies in progress so a shutdown need not wait
// for them. Call it before http.Server.Shutdown.
func (s *Server) Close() {
	s.stopOnce.Do(func() { close(s.stopping) })
}

// lockedRand is the server's one random source, so that a seed fixes the
// sequence of outcomes whatever the concurrency.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func (l *lockedRand) reseed(seed uint64) {
	l.mu.Lock()
	l.r = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	l.mu.Unlock()
}

func (l *lockedRand) sample(m behavior.Model) behavior.Outcome {
	l.mu.Lock()
	o := m.Sample(l.r)
	l.mu.Unlock()
	return o
}

func randomSeed() uint64 {
	var b [8]byte
	if _, err := crand.Read(b[:]); err != nil {
		return uint64(time.Now().UnixNano())
	}
	return binary.LittleEndian.Uint64(b[:])
}

// Handler returns the handler of the main listener.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// AdminHandler returns the handler of the admin listener.
func (s *Server) AdminHandler() http.Handler { return s.admin }

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	st := s.state.Load()
	n := s.inFlight.Add(1)
	s.metrics.inFlight.Inc()
	defer func() {
		s.inFlight.Add(-1)
		s.metrics.inFlight.Dec()
	}()
	if n > st.maxInFlight {
		s.reject(w, r, rejectInFlight, http.StatusServiceUnavailable, "too many requests in flight")
		return
	}
	if r.ContentLength > st.maxBody {
		s.reject(w, r, rejectBodyTooLarge, http.StatusRequestEntityTooLarge, "request body too large")
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(w, r.Body, st.maxBody)
	}
	st.router.ServeHTTP(w, r)
}

func (s *Server) reject(w http.ResponseWriter, r *http.Request, why rejectReason, code int, msg string) {
	start := time.Now()
	c := s.counts.Load()
	c.rejected[why].Add(1)
	s.metrics.rejected.WithLabelValues(rejectNames[why]).Inc()
	w.Header().Set("X-Canarylab-Version", s.version)
	w.Header().Set("X-Canarylab-Rejected", rejectNames[why])
	http.Error(w, msg, code)
	c.requests.Add(1)
	c.status(code)
	s.metrics.observe("", methodLabel(r.Method), code, time.Since(start))
}
