// Package sim is the virtual-time engine: no sockets, no waiting. Per
// scrape interval it draws the answers the stable and canary behaviour
// models (the mock server's own types) give for the load's rate and the
// current weights (as exact counts per class of answers, see traffic.go),
// writes the Istio telemetry and the mock servers' metrics they would
// have produced into an embedded Prometheus at virtual timestamps, and
// evaluates the very same PromQL with Prometheus' engine;
// orchestrator/analysis decides, as on the other engines. A run is
// deterministic for its seed.
package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/prometheus/promql"

	"github.com/canarylab/canarylab/loadgen/plan"
	"github.com/canarylab/canarylab/mockserver/behavior"
	"github.com/canarylab/canarylab/orchestrator/analysis"
	"github.com/canarylab/canarylab/orchestrator/mesh"
	"github.com/canarylab/canarylab/orchestrator/metricstore"
	"github.com/canarylab/canarylab/orchestrator/report"
	"github.com/canarylab/canarylab/orchestrator/scenario"
	"github.com/canarylab/canarylab/orchestrator/webhook"
)

// Name is the engine's name on the command line.
const Name = "sim"

// Options configure the engine.
type Options struct {
	// Seed makes a run reproducible (0: random).
	Seed uint64
	// ScrapeInterval is the simulated Prometheus' scrape interval
	// (default 5s, as Flagger's own Prometheus).
	ScrapeInterval time.Duration
	// Engine is the PromQL engine of the runs (default: one shared by
	// every Engine given none); stores are recycled between runs of the
	// same PromQL engine.
	Engine *promql.Engine
	// FullScrape writes every scrape even where sparse scraping would give
	// the same results (see world.needed): to check that it does.
	FullScrape bool
}

// Engine runs scenarios in virtual time. It is safe for concurrent use:
// each Run has its own store and random source.
type Engine struct {
	opts Options
}

// New returns a sim engine.
func New(opts Options) *Engine {
	if opts.ScrapeInterval <= 0 {
		opts.ScrapeInterval = 5 * time.Second
	}
	if opts.Engine == nil {
		opts.Engine = shared()
	}
	return &Engine{opts: opts}
}

// epoch is virtual time zero: fixed, so runs are reproducible.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Run runs s in virtual time until the verdict or its timeout.
func (e *Engine) Run(ctx context.Context, s *scenario.Scenario, obs report.Observer) error {
	seed := e.opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	w, err := newWorld(s, seed, e.opts)
	if err != nil {
		return err
	}
	defer w.release()
	m, err := analysis.New(analysis.Config{
		Canary:    analysis.Canary{Name: s.Name(), Namespace: s.Namespace(), Analysis: &s.Analysis, SkipAnalysis: s.SkipAnalysis},
		Templates: s.MetricTemplates, Version: s.Version(),
	}, w)
	if err != nil {
		return err
	}
	interval := m.Interval()
	timeout := s.DefaultTimeout(interval)
	if s.Timeout != nil {
		timeout = s.Timeout.D()
	}
	obs.Started(&report.Run{Started: time.Now(), Interval: interval})
	w.now = epoch
	first := m.Tick(ctx, w.now)
	obs.Ticked(report.Tick{Tick: first})
	if first.Status.Phase != analysis.PhaseInitialized {
		return fmt.Errorf("the canary did not initialise: phase %s", first.Status.Phase)
	}
	// The new revision, at scenario time zero.
	w.canary = w.canaryNew
	m.SetTarget("2")
	obs.Revision(epoch)
	actions := s.Actions
	for tick := 1; ; tick++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		next := epoch.Add(time.Duration(tick) * interval)
		if next.Sub(epoch) > timeout {
			obs.Note(timeout, fmt.Sprintf("timed out after %s of scenario time with no verdict", timeout))
			return nil
		}
		// Traffic and scrapes up to the tick, with the actions on time.
		for w.now.Before(next) {
			step := min(e.opts.ScrapeInterval, next.Sub(w.now))
			for len(actions) > 0 && !epoch.Add(actions[0].At.D()).After(w.now.Add(step)) {
				obs.Note(actions[0].At.D(), w.act(s, actions[0]))
				actions = actions[1:]
			}
			if w.exact {
				w.trafficEach(step)
			} else {
				w.trafficCells(step)
			}
			w.now = w.now.Add(step)
			if w.fresh {
				w.densify(w.now, interval)
				w.fresh = false
			}
			if w.needed(w.now, interval) {
				if err := w.scrape(w.now); err != nil {
					return err
				}
			}
		}
		tk := m.Tick(ctx, w.now)
		obs.Ticked(report.Tick{Tick: tk, At: w.now.Sub(epoch)})
		if tk.Fatal != "" {
			return errors.New(tk.Fatal)
		}
		if tk.Status.Phase.Final() {
			return nil
		}
	}
}

// world is the simulated cluster of a run, and the analysis' Env.
type world struct {
	s       *scenario.Scenario
	r       *rand.Rand
	store   *metricstore.Store
	pooled  pooled // the store, and where the run's time zero is in it
	lt      *webhook.Loadtester
	now     time.Time
	rate    float64 // requests a second, scenario time
	matched float64 // the share of requests an A/B match selects

	primary, canary, canaryNew behavior.Model
	primaryW, canaryW          int
	mirrored                   bool
	mirrorWeight               int

	ns, target string
	// shape is what the queries read; exact: some may read a latency sum,
	// so requests are drawn one by one (see traffic.go).
	shape *shape
	exact bool
	// The series written at each scrape (those some query reads, from
	// the first answer with their code on), and by workload and code.
	all    []*series
	hists  []*histogram
	byCode [2]map[int]*codeSeries // by workload (primary, canary), then code
	tables map[tableKey]*table
	// sparse: only the scrapes that can be a window's first or last
	// sample are written (see needed).
	sparse  bool
	scrape0 time.Duration
	// fresh: a series appeared in this scrape interval; dense: every
	// scrape up to this time since epoch is needed.
	fresh bool
	dense time.Duration
}

func newWorld(s *scenario.Scenario, seed uint64, opts Options) (*world, error) {
	sh := cachedShape(s, opts.ScrapeInterval)
	ps, err := getStore(opts.Engine, !sh.absolute)
	if err != nil {
		return nil, fmt.Errorf("open the simulated Prometheus: %w", err)
	}
	w := &world{s: s, r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), store: ps.store, pooled: ps,
		lt: webhook.NewLoadtester(nil), primaryW: 100, ns: s.Namespace(), target: s.Name(), shape: sh,
		mirrorWeight: s.Analysis.MirrorWeight, byCode: [2]map[int]*codeSeries{{}, {}}, tables: map[tableKey]*table{}, scrape0: opts.ScrapeInterval}
	fail := func(err error) (*world, error) {
		_ = ps.store.Close()
		return nil, err
	}
	if w.primary, err = s.Stable.Compile(); err != nil {
		return fail(fmt.Errorf("stable: %w", err))
	}
	w.canary = w.primary // the canary Deployment runs the stable version until the revision
	if w.canaryNew, err = s.Canary.Compile(); err != nil {
		return fail(fmt.Errorf("canary: %w", err))
	}
	for _, h := range s.Analysis.Webhooks {
		if !isLoadtester(h.URL) {
			return fail(fmt.Errorf("webhook %s (%s): the sim engine calls only the embedded flagger-loadtester (http://flagger-loadtester.<ns>/…) in virtual time", h.Name, h.URL))
		}
	}
	p := plan.Default()
	if s.Load.Plan != nil {
		p = *s.Load.Plan
	}
	w.rate = s.Load.Rate
	if s.Load.Users > 0 {
		w.rate = closedRate(p, s.Load.Users, w.primary, w.r)
	}
	w.sparse = w.shape.sparse && !opts.FullScrape
	w.exact = w.shape.mayRead("istio_request_duration_milliseconds_sum", "canarylab_mock_request_duration_seconds_sum")
	w.matched = 1
	if len(s.Analysis.Match) > 0 {
		mt, err := mesh.NewMatcher(s.Analysis.Match)
		if err != nil {
			return fail(err)
		}
		w.matched = matchedShare(p, mt)
	}
	return w, nil
}

// closedRate approximates closed-model users by their throughput: each
// user sends a request, waits its answer and its wait, and again.
func closedRate(p plan.Plan, users int, m behavior.Model, r *rand.Rand) float64 {
	var lat time.Duration
	const n = 1000
	for range n {
		lat += m.Sample(r).Delay
	}
	cycle := lat / n
	if len(p.Users) > 0 {
		switch w := p.Users[0].Wait; w.Kind {
		case plan.WaitConstant:
			cycle += w.Min
		case plan.WaitBetween:
			cycle += (w.Min + w.Max) / 2
		case plan.WaitConstantThroughput:
			cycle = max(cycle, time.Duration(float64(time.Second)/w.Rate))
		case plan.WaitConstantPacing:
			cycle = max(cycle, w.Min)
		}
	}
	return float64(users) / max(cycle, time.Millisecond).Seconds()
}

// matchedShare is the weighted share of the plan's requests an A/B match
// selects.
func matchedShare(p plan.Plan, mt *mesh.Matcher) float64 {
	total, matched := 0.0, 0.0
	for _, u := range p.Users {
		tw := 0
		for _, t := range u.Tasks {
			tw += max(1, t.Weight)
		}
		for _, t := range u.Tasks {
			share := float64(max(1, u.Weight)) * float64(max(1, t.Weight)) / float64(max(1, tw))
			total += share
			req := httptest.NewRequest(t.Request.HTTPMethod(), "http://podinfo"+t.Request.Path, nil)
			for k, v := range t.Request.Headers {
				req.Header.Set(k, v)
			}
			if mt.Matches(req) {
				matched += share
			}
		}
	}
	if total == 0 {
		return 0
	}
	return matched / total
}

// needed reports whether the scrape at t can change a query's result.
// With full scraping, every one can. With sparse, rate() and increase()
// read a window's first and last samples, and the number of samples in
// between only through the average interval their extrapolation compares
// the first sample's distance from the window's start with: for a series
// that exists before the window, that distance is one scrape interval,
// never beyond 1.1 average intervals, however many samples are written.
// So the scrapes at ticks and one scrape after each window's start are
// enough (a few instead of a dozen per tick), except in the windows where
// a series appears later than their first scrape: there every scrape
// from its first sample on is written, as a full scrape would (see
// densify).
func (w *world) needed(t time.Time, interval time.Duration) bool {
	if !w.sparse {
		return true
	}
	since := t.Sub(epoch)
	if since%interval == 0 || since <= w.dense {
		return true
	}
	for _, win := range w.shape.windows {
		if (since+win-w.scrape0)%interval == 0 {
			return true
		}
	}
	return false
}

// densify makes every scrape needed up to the end of each window that
// holds t, a series' first sample, later than the window's first scrape.
func (w *world) densify(t time.Time, interval time.Duration) {
	since := t.Sub(epoch)
	for _, win := range w.shape.windows {
		// The windows (tick-win, tick] that hold since.
		for tick := (since + interval - 1) / interval * interval; tick < since+win; tick += interval {
			if tick-win+w.scrape0 != since {
				w.dense = max(w.dense, tick)
			}
		}
	}
}

// release gives the store back for the next run.
func (w *world) release() {
	putStore(w.pooled, w.now.Sub(epoch), !w.shape.absolute)
}

// at is where virtual time t is in the store.
func (w *world) at(t time.Time) time.Time { return t.Add(w.pooled.base) }

// scrape writes every series' value at t, as a scrape would.
func (w *world) scrape(t time.Time) error {
	for _, h := range w.hists {
		h.flush()
	}
	app := w.store.Appender()
	for _, s := range w.all {
		if err := app.Add(s.lbls, w.at(t), s.v); err != nil {
			_ = app.Rollback()
			return err
		}
	}
	return app.Commit()
}

// act performs a scenario action and describes it.
func (w *world) act(s *scenario.Scenario, a scenario.Action) string {
	switch a.Do {
	case scenario.OpenGate:
		w.lt.OpenGate(s.Name(), s.Namespace())
	case scenario.CloseGate:
		w.lt.CloseGate(s.Name(), s.Namespace())
	case scenario.OpenRollback:
		w.lt.OpenRollback(s.Name(), s.Namespace())
	case scenario.CloseRollback:
		w.lt.CloseRollback(s.Name(), s.Namespace())
	case scenario.SetCanary:
		m, err := a.Canary.Compile()
		if err != nil {
			return fmt.Sprintf("action %s failed: %v", a.Do, err)
		}
		w.canary, w.canaryNew = m, m
		return fmt.Sprintf("action %s: the canary is now %s", a.Do, a.Canary)
	case scenario.StopLoad:
		w.rate = 0
	}
	return "action " + string(a.Do)
}

// The analysis' Env.

func (w *world) SetRoutes(p, c int, m bool) error {
	if p < 0 || c < 0 || p+c != 100 {
		return fmt.Errorf("weights %d/%d do not add up to 100", p, c)
	}
	w.primaryW, w.canaryW, w.mirrored = p, c, m
	return nil
}

func (w *world) GetRoutes() (int, int, bool, error) { return w.primaryW, w.canaryW, w.mirrored, nil }
func (w *world) PrimaryReady() (bool, error)        { return true, nil }
func (w *world) CanaryReady() (bool, error)         { return true, nil }
func (w *world) ScaleToZero() error                 { return nil }
func (w *world) ScaleFromZero() error               { return nil }

// Promote gives the primary the canary's version.
func (w *world) Promote() error {
	w.primary = w.canary
	return nil
}

func (w *world) Query(ctx context.Context, _ *analysis.MetricProvider, q string) (float64, error) {
	if !w.shape.all && !w.shape.queries[q] && !w.shape.queries[metricstore.CollapseWhitespace(q)] {
		// Its series may not have been written: a wrong value would be
		// worse than none.
		return 0, fmt.Errorf("sim: the query %q was not foreseen from the scenario (a bug in the sim engine)", q)
	}
	return w.store.Query(ctx, q, w.at(w.now))
}

// ProviderOnline is Flagger's vector(1) against the provider: the
// embedded store always answers it, so it is not evaluated.
func (w *world) ProviderOnline(ctx context.Context, _ *analysis.MetricProvider) error {
	return ctx.Err()
}

// CallWebhook answers from the embedded loadtester, in process.
func (w *world) CallWebhook(_ context.Context, h analysis.Webhook, p analysis.Payload) error {
	return w.call(h.URL, fmt.Sprintf(`{"name":%q,"namespace":%q,"phase":%q}`, p.Name, p.Namespace, p.Phase))
}

func (w *world) CallEventWebhook(_ context.Context, h analysis.Webhook, p analysis.Payload, e analysis.Event) error {
	return w.call(h.URL, fmt.Sprintf(`{"name":%q,"namespace":%q,"phase":%q,"metadata":{"eventMessage":%q,"eventType":%q}}`,
		p.Name, p.Namespace, p.Phase, e.Message, e.Type))
}

func (w *world) call(raw, body string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	req := httptest.NewRequest(http.MethodPost, u.RequestURI(), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	w.lt.ServeHTTP(rec, req)
	if rec.Code > 202 {
		b, _ := io.ReadAll(rec.Result().Body)
		return errors.New(string(b))
	}
	return nil
}

// isLoadtester reports whether a hook URL names flagger-loadtester.
func isLoadtester(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	h := u.Hostname()
	return h == "flagger-loadtester" || strings.HasPrefix(h, "flagger-loadtester.")
}
