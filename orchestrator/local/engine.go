// Package local is the embedded engine: it runs a scenario on this
// machine with no cluster. A primary and a canary mock server play the
// stable and new versions on loopback ports; a router in front of them
// splits traffic by the weights the analysis sets and reports Istio's
// telemetry; an embedded Prometheus scrapes the router and the mock
// servers; loadgen sends the scenario's load through the router; and
// orchestrator/analysis decides, tick by tick, as Flagger would, on the
// real query text evaluated by Prometheus' own engine.
package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/canarylab/canarylab/loadgen"
	"github.com/canarylab/canarylab/loadgen/plan"
	"github.com/canarylab/canarylab/loadgen/stats"
	"github.com/canarylab/canarylab/mockserver"
	"github.com/canarylab/canarylab/mockserver/behavior"
	"github.com/canarylab/canarylab/orchestrator/analysis"
	"github.com/canarylab/canarylab/orchestrator/mesh"
	"github.com/canarylab/canarylab/orchestrator/metricstore"
	"github.com/canarylab/canarylab/orchestrator/report"
	"github.com/canarylab/canarylab/orchestrator/scenario"
	"github.com/canarylab/canarylab/orchestrator/webhook"
)

// Name is the engine's name on the command line.
const Name = "local"

// Options configure the engine.
type Options struct {
	// Speed runs the analysis Speed times faster than real time:
	// intervals and PromQL windows shrink, and the load's rate grows, by
	// that factor, so every window sees the requests it would see in real
	// time (default 1).
	Speed float64
	// Timeout bounds the run in real time (default: the scenario's
	// timeout, or its default, divided by Speed).
	Timeout time.Duration
	// ScrapeInterval is the embedded Prometheus' scrape interval in
	// scenario time (default 5s, as Flagger's own Prometheus).
	ScrapeInterval time.Duration
	// LoadExternal sends no load: a Locust master and canarylab workers
	// (or anything else) drive the router, whose URL the engine notes.
	LoadExternal bool
	// MaxRate refuses scenarios whose load would need more than this many
	// requests a second at Speed (default 5000).
	MaxRate float64
	// Seed makes the mock servers' and the router's draws reproducible
	// (0: random).
	Seed uint64
	// Logger receives the engine's own log (default: discard).
	Logger *slog.Logger
}

// Engine runs scenarios in process.
type Engine struct {
	opts Options
}

// New returns an engine.
func New(opts Options) (*Engine, error) {
	if opts.Speed == 0 {
		opts.Speed = 1
	}
	if opts.Speed < 0 || math.IsInf(opts.Speed, 0) || math.IsNaN(opts.Speed) {
		return nil, fmt.Errorf("--speed %v: must be a positive factor, such as 60", opts.Speed)
	}
	if opts.ScrapeInterval <= 0 {
		opts.ScrapeInterval = 5 * time.Second
	}
	if opts.MaxRate <= 0 {
		opts.MaxRate = 5000
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Engine{opts: opts}, nil
}

// lateScrape is the warning of a tick whose scrape was not stored within
// a scrape interval (a busy machine): its queries read the scrapes before,
// and a window of two scrape intervals then has no values.
const lateScrape = "the scrape at the tick was not stored in time: the query reads the ones before"

// minScrape is the shortest real scrape interval: faster scrapes cost CPU
// and add nothing a query window can see.
const minScrape = 50 * time.Millisecond

// Run runs s until the analysis reaches a verdict or the timeout, and
// stops everything it started before it returns (also when ctx ends).
func (e *Engine) Run(ctx context.Context, s *scenario.Scenario, obs report.Observer) error {
	speed := e.opts.Speed
	if rate := s.Load.Rate * speed; rate > e.opts.MaxRate && !e.opts.LoadExternal {
		return fmt.Errorf("load.rate %g at --speed %g needs %.0f requests a second, over the engine's limit of %.0f: lower --speed", s.Load.Rate, speed, rate, e.opts.MaxRate)
	}
	w, err := e.start(ctx, s)
	if err != nil {
		return err
	}
	defer w.stop()

	m, err := analysis.New(analysis.Config{
		Canary:    analysis.Canary{Name: s.Name(), Namespace: s.Namespace(), Analysis: &s.Analysis, SkipAnalysis: s.SkipAnalysis},
		Templates: s.MetricTemplates, Version: s.Version(), Speed: speed, ObserveAllMetrics: true,
	}, w)
	if err != nil {
		return err
	}
	interval := m.Interval()
	timeout := e.opts.Timeout
	if timeout <= 0 {
		d := s.DefaultTimeout(interval)
		if s.Timeout != nil {
			d = s.Timeout.D()
		}
		timeout = time.Duration(float64(d) / speed)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	start := time.Now()
	obs.Started(&report.Run{Started: start, Interval: interval, Router: w.routerURL})
	if e.opts.LoadExternal {
		obs.Note(0, "load is external: send it to "+w.routerURL+" (e.g. canarylab load --master HOST:PORT --host "+w.routerURL+")")
	}
	w.startLoad(ctx, s, speed, obs)

	real := func(d time.Duration) time.Duration { return time.Duration(float64(d) / speed) }
	var revision time.Time
	at := func(t time.Time) time.Duration {
		if revision.IsZero() {
			return 0
		}
		return time.Duration(float64(t.Sub(revision)) * speed)
	}
	defer func() { obs.Note(at(time.Now()), w.trafficSummary()) }()
	// Ticks on the grid the scrapes are on (see grid); the first one, which
	// initialises the canary and queries nothing, at once.
	ticker := newGridTicker(w.grid.origin, real(interval))
	defer ticker.Stop()
	actions := s.Actions
	var actionTimer <-chan time.Time
	now := time.Now()
	for tick := 0; ; tick++ {
		if tick > 0 && !w.grid.wait(ctx, now, w.grid.scrape) {
			w.log.Warn(lateScrape, "tick", tick, "at", now)
		}
		w.now = now
		tk := m.Tick(ctx, now)
		obs.Ticked(report.Tick{Tick: tk, At: at(now)})
		if tk.Fatal != "" {
			return errors.New(tk.Fatal)
		}
		if tick == 0 {
			// The first tick initialised the canary: now deploy the new
			// revision (scenario time zero).
			if tk.Status.Phase != analysis.PhaseInitialized {
				return fmt.Errorf("the canary did not initialise: phase %s", tk.Status.Phase)
			}
			revision = time.Now()
			if err := w.canary.Apply(mockserver.Config{Profile: s.Canary}, "new revision"); err != nil {
				return fmt.Errorf("deploy the canary's profile: %w", err)
			}
			m.SetTarget("2")
			obs.Revision(revision)
		} else if tk.Status.Phase.Final() {
			return nil
		}
		if actionTimer == nil && len(actions) > 0 {
			actionTimer = time.After(time.Until(revision.Add(real(actions[0].At.D()))))
		}
		for {
			select {
			case <-ctx.Done():
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					obs.Note(at(time.Now()), fmt.Sprintf("timed out after %s (%s of scenario time) with no verdict", timeout.Round(time.Millisecond), report.FormatAt(at(time.Now()))))
					return nil
				}
				return ctx.Err()
			case <-actionTimer:
				a := actions[0]
				actions = actions[1:]
				actionTimer = nil
				if len(actions) > 0 {
					actionTimer = time.After(time.Until(revision.Add(real(actions[0].At.D()))))
				}
				obs.Note(at(time.Now()), w.act(s, a))
				continue
			case now = <-ticker.C():
			}
			break
		}
	}
}

// world is everything a run starts, and the analysis' Env.
type world struct {
	log       *slog.Logger
	primary   *mockserver.Server
	canary    *mockserver.Server
	runs      []*mockserver.Running
	router    *mesh.Router
	servers   []*http.Server
	store     *metricstore.Store
	caller    *webhook.Caller
	lt        *webhook.Loadtester
	ltURL     string
	routerURL string

	canaryProfile behavior.Profile
	scaledUp      bool

	// grid puts scrapes and ticks on one time grid; now is the current
	// tick's grid time, at which its queries are evaluated (as the sim
	// engine evaluates them at the tick's virtual time).
	grid *grid
	now  time.Time

	cancel context.CancelFunc
	wg     sync.WaitGroup
	stopMu sync.Once

	loadCancel context.CancelFunc
	loadStats  *stats.Stats
}

func (e *Engine) start(ctx context.Context, s *scenario.Scenario) (w *world, err error) {
	w = &world{log: e.opts.Logger, canaryProfile: s.Canary}
	defer func() {
		if err != nil {
			w.stop()
		}
	}()
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.cancel = cancel
	seed := e.opts.Seed
	target, ns := s.Name(), s.Namespace()

	// The primary and the canary Deployments: both run the stable version
	// until the new revision is deployed.
	mk := func(label string, off uint64) (*mockserver.Server, *mockserver.Running, error) {
		cfg := mockserver.Config{Profile: s.Stable}
		if seed != 0 {
			sd := seed + off
			cfg.Seed = &sd
		}
		srv, err := mockserver.New(cfg, mockserver.Options{VersionLabel: label, Logger: e.opts.Logger})
		if err != nil {
			return nil, nil, fmt.Errorf("start the %s mock server: %w", label, err)
		}
		run, err := mockserver.Start(srv, "127.0.0.1:0", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("start the %s mock server: %w", label, err)
		}
		w.runs = append(w.runs, run)
		return srv, run, nil
	}
	primary, pRun, err := mk("primary", 1)
	if err != nil {
		return nil, err
	}
	canary, cRun, err := mk("canary", 2)
	if err != nil {
		return nil, err
	}
	w.primary, w.canary = primary, canary

	// The router's draws take the seed as it is (0 is a seed like any
	// other); Seed 0 means random here, as for the mock servers.
	routerSeed := seed
	if routerSeed == 0 {
		routerSeed = rand.Uint64()
	}
	w.router, err = mesh.New(mesh.Config{
		Namespace: ns, Service: target,
		Primary: mesh.Backend{Workload: target + "-primary", URL: pRun.URL()},
		Canary:  mesh.Backend{Workload: target, URL: cRun.URL()},
		Match:   s.Analysis.Match, MirrorWeight: s.Analysis.MirrorWeight, Seed: routerSeed, Logger: e.opts.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("start the router: %w", err)
	}
	routerAddr, err := w.serve(w.router)
	if err != nil {
		return nil, fmt.Errorf("start the router: %w", err)
	}
	w.routerURL = "http://" + routerAddr
	metricsAddr, err := w.serve(w.router.MetricsHandler())
	if err != nil {
		return nil, fmt.Errorf("start the router's metrics endpoint: %w", err)
	}

	w.lt = webhook.NewLoadtester(e.opts.Logger)
	ltAddr, err := w.serve(w.lt)
	if err != nil {
		return nil, fmt.Errorf("start the embedded loadtester: %w", err)
	}
	w.ltURL = "http://" + ltAddr
	w.caller, err = webhook.NewCaller(webhook.Options{Version: string(s.Version()), Logger: e.opts.Logger})
	if err != nil {
		return nil, err
	}

	w.store, err = metricstore.Open(metricstore.Options{Logger: e.opts.Logger})
	if err != nil {
		return nil, fmt.Errorf("open the embedded Prometheus: %w", err)
	}
	// Pods are named as a Deployment names them, so that templates that
	// select pods with Flagger's usual pattern
	// pod=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" find them.
	// A scrape may take longer than a time-scaled interval on a busy
	// machine; a failed scrape would leave a gap no window can bridge, so
	// the timeout stays a real-time one.
	scrapeEvery := max(minScrape, time.Duration(float64(e.opts.ScrapeInterval)/e.opts.Speed))
	w.grid = newGrid(time.Now(), scrapeEvery)
	sc := &metricstore.Scraper{Store: w.store, Timeout: 5 * time.Second, Interval: scrapeEvery, Clock: w.grid, Targets: []metricstore.ScrapeTarget{
		{Job: "envoy-stats", URL: "http://" + metricsAddr + "/metrics", Labels: map[string]string{"namespace": ns}},
		{Job: "mockserver", URL: pRun.AdminURL() + "/metrics", Labels: map[string]string{"namespace": ns, "pod": target + "-primary-7b9f5c6d48-x2k9p", "app": target + "-primary"}},
		{Job: "mockserver", URL: cRun.AdminURL() + "/metrics", Labels: map[string]string{"namespace": ns, "pod": target + "-5d8f7b9c46-q7w4z", "app": target}},
	}, OnScrape: func(r metricstore.ScrapeResult) {
		w.grid.scraped(r.Time)
		if r.Err != nil {
			e.opts.Logger.Warn("scrape failed", "target", r.Target.URL, "err", r.Err)
		}
		if took := time.Since(r.Time); took > scrapeEvery {
			e.opts.Logger.Debug("scrape round slower than the interval", "job", r.Target.Job, "took", took, "interval", scrapeEvery)
		}
	}}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		_ = sc.Run(bg)
	}()
	return w, nil
}

// serve serves h on a loopback port until stop.
func (w *world) serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	w.servers = append(w.servers, srv)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		_ = srv.Serve(ln)
	}()
	return ln.Addr().String(), nil
}

// startLoad sends the scenario's load through the router until stop.
func (w *world) startLoad(ctx context.Context, s *scenario.Scenario, speed float64, obs report.Observer) {
	if s.Load.Rate == 0 && s.Load.Users == 0 {
		return
	}
	p := plan.Default()
	if s.Load.Plan != nil {
		p = *s.Load.Plan
	}
	p.Host = ""
	for i := range p.Users {
		p.Users[i].Host = ""
	}
	lctx, cancel := context.WithCancel(ctx)
	w.loadCancel = cancel
	w.loadStats = stats.New(nil)
	opts := loadgen.Options{Host: w.routerURL}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		var err error
		if s.Load.Rate > 0 {
			_, err = loadgen.RunOpen(lctx, p, w.loadStats, opts, loadgen.OpenOptions{Stages: loadgen.ConstantRate(s.Load.Rate*speed, 24*time.Hour)})
		} else {
			var users *loadgen.Users
			if users, err = loadgen.NewUsers(p, w.loadStats, opts); err == nil {
				err = loadgen.RunClosed(lctx, users, p, []loadgen.Stage{{Duration: 24 * time.Hour, Users: s.Load.Users}})
			}
		}
		if err != nil && lctx.Err() == nil {
			obs.Note(0, "load failed: "+err.Error())
		}
	}()
}

// trafficSummary says what the load sent and where the router put it.
func (w *world) trafficSummary() string {
	var b strings.Builder
	if w.loadStats != nil {
		tot := w.loadStats.Cumulative().Total
		fmt.Fprintf(&b, "load: %d requests, %d failed; ", tot.NumRequests, tot.NumFailures)
	}
	c := w.router.Counts()
	for _, wl := range slices.Sorted(maps.Keys(c.Requests)) {
		var n uint64
		for _, k := range c.Requests[wl] {
			n += k
		}
		fmt.Fprintf(&b, "%s served %d ", wl, n)
	}
	if c.Mirrored > 0 {
		fmt.Fprintf(&b, "(%d mirrored)", c.Mirrored)
	}
	return strings.TrimSpace(b.String())
}

// act performs a scenario action and describes it.
func (w *world) act(s *scenario.Scenario, a scenario.Action) string {
	name, ns := s.Name(), s.Namespace()
	switch a.Do {
	case scenario.OpenGate:
		w.lt.OpenGate(name, ns)
	case scenario.CloseGate:
		w.lt.CloseGate(name, ns)
	case scenario.OpenRollback:
		w.lt.OpenRollback(name, ns)
	case scenario.CloseRollback:
		w.lt.CloseRollback(name, ns)
	case scenario.SetCanary:
		if err := w.canary.Apply(mockserver.Config{Profile: *a.Canary}, "scenario action"); err != nil {
			return fmt.Sprintf("action %s failed: %v", a.Do, err)
		}
		w.canaryProfile = *a.Canary
		return fmt.Sprintf("action %s: the canary is now %s", a.Do, a.Canary)
	case scenario.StopLoad:
		if w.loadCancel != nil {
			w.loadCancel()
		}
	}
	return "action " + string(a.Do)
}

// stop stops the load, the scraper and every server, and waits for them.
func (w *world) stop() {
	w.stopMu.Do(func() {
		if w.loadCancel != nil {
			w.loadCancel()
		}
		if w.cancel != nil {
			w.cancel()
		}
		// The load has stopped: a short grace for answers in flight, then
		// whatever is left (a connection accepted but never used holds a
		// graceful shutdown for 5 s) is closed.
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		for _, srv := range w.servers {
			if err := srv.Shutdown(ctx); err != nil {
				_ = srv.Close()
			}
		}
		for _, r := range w.runs {
			_ = r.Shutdown(ctx)
		}
		if w.router != nil {
			_ = w.router.Close()
		}
		w.wg.Wait()
		if w.store != nil {
			_ = w.store.Close()
		}
	})
}

// The analysis' Env.

func (w *world) SetRoutes(p, c int, m bool) error { return w.router.SetRoutes(p, c, m) }

func (w *world) GetRoutes() (int, int, bool, error) {
	p, c, m := w.router.GetRoutes()
	return p, c, m, nil
}

// Mock servers start ready and never roll out slowly here.
func (w *world) PrimaryReady() (bool, error) { return true, nil }
func (w *world) CanaryReady() (bool, error)  { return true, nil }

// Promote gives the primary the canary's version.
func (w *world) Promote() error {
	return w.primary.Apply(mockserver.Config{Profile: w.canaryProfile}, "promotion")
}

func (w *world) ScaleToZero() error   { w.scaledUp = false; return nil }
func (w *world) ScaleFromZero() error { w.scaledUp = true; return nil }

// queryTime is the current tick's grid time (the analysis calls Query and
// ProviderOnline from the tick, on the run's goroutine).
func (w *world) queryTime() time.Time {
	if w.now.IsZero() {
		return time.Now()
	}
	return w.now
}

// Query evaluates on the embedded Prometheus whatever the provider's
// address: every template here reads the same, embedded, metrics.
func (w *world) Query(ctx context.Context, _ *analysis.MetricProvider, q string) (float64, error) {
	return w.store.Query(ctx, q, w.queryTime())
}

func (w *world) ProviderOnline(ctx context.Context, _ *analysis.MetricProvider) error {
	v, err := w.store.Query(ctx, "vector(1)", w.queryTime())
	if err != nil {
		return err
	}
	if v != 1 {
		return fmt.Errorf("vector(1) returned %v", v)
	}
	return nil
}

func (w *world) CallWebhook(ctx context.Context, h analysis.Webhook, p analysis.Payload) error {
	h.URL = webhook.Rewrite(h.URL, w.ltURL)
	return w.caller.Call(ctx, h, p)
}

func (w *world) CallEventWebhook(ctx context.Context, h analysis.Webhook, p analysis.Payload, e analysis.Event) error {
	h.URL = webhook.Rewrite(h.URL, w.ltURL)
	return w.caller.CallEvent(ctx, h, p, e.Message, string(e.Type), e.Time)
}
