// Package sim is the virtual-time engine: no sockets, no waiting. Per
// scrape interval it draws request outcomes from the stable and canary
// behaviour models (the mock server's own types) for the load's rate and
// the current weights, writes the Istio telemetry and the mock servers'
// metrics they would have produced into an embedded Prometheus at virtual
// timestamps, and evaluates the very same PromQL with Prometheus' engine;
// orchestrator/analysis decides, as on the other engines. A run is
// deterministic for its seed.
package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/canarylab/canarylab/loadgen/plan"
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
const Name = "sim"

// Options configure the engine.
type Options struct {
	// Seed makes a run reproducible (0: random).
	Seed uint64
	// ScrapeInterval is the simulated Prometheus' scrape interval
	// (default 5s, as Flagger's own Prometheus).
	ScrapeInterval time.Duration
	// Engine is a PromQL engine shared by runs (default: one per Engine).
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
		opts.Engine = metricstore.NewEngine(nil)
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
	defer w.store.Close()
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
			if err := w.traffic(w.now, step); err != nil {
				return err
			}
			w.now = w.now.Add(step)
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
	lt      *webhook.Loadtester
	now     time.Time
	rate    float64 // requests a second, scenario time
	matched float64 // the share of requests an A/B match selects

	primary, canary, canaryNew behavior.Model
	primaryW, canaryW          int
	mirrored                   bool
	mirrorWeight               int

	ns, target string
	// The series the exporters expose, in a stable order, and by
	// workload and code.
	all    []*series
	hists  []*histogram
	byCode [2]map[int]*codeSeries // by workload (primary, canary), then code
	// mock: some query reads the mock servers' own metrics.
	mock bool
	// sparse: every query only takes rate() or increase() of ranges, so
	// only the scrapes that can be a window's first or last sample change
	// a result (windows, the queries' ranges); see needed.
	sparse  bool
	scrape0 time.Duration
	windows []time.Duration
}

type series struct {
	lbls labels.Labels
	v    float64
}

func newWorld(s *scenario.Scenario, seed uint64, opts Options) (*world, error) {
	store, err := metricstore.Open(metricstore.Options{Engine: opts.Engine})
	if err != nil {
		return nil, fmt.Errorf("open the simulated Prometheus: %w", err)
	}
	w := &world{s: s, r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), store: store,
		lt: webhook.NewLoadtester(nil), primaryW: 100, ns: s.Namespace(), target: s.Name(),
		mirrorWeight: s.Analysis.MirrorWeight, byCode: [2]map[int]*codeSeries{{}, {}}, scrape0: opts.ScrapeInterval}
	fail := func(err error) (*world, error) {
		_ = store.Close()
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
	w.sparse, w.mock, w.windows = queryShape(s, opts.ScrapeInterval)
	w.sparse = w.sparse && !opts.FullScrape
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

// poisson draws a Poisson count (normal approximation for large means).
func poisson(r *rand.Rand, lambda float64) int {
	if lambda <= 0 {
		return 0
	}
	if lambda > 30 {
		return max(0, int(math.Round(lambda+math.Sqrt(lambda)*r.NormFloat64())))
	}
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= r.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// traffic draws the requests of (from, from+d] and counts them as the
// destination sidecars and the mock servers would.
func (w *world) traffic(from time.Time, d time.Duration) error {
	n := poisson(w.r, w.rate*d.Seconds())
	for range n {
		toCanary := false
		switch {
		case len(w.s.Analysis.Match) > 0 && w.s.Analysis.Iterations > 0:
			// A/B: matching requests follow the route's weights, others
			// go to the primary.
			toCanary = w.r.Float64() < w.matched && w.r.IntN(100) < w.canaryW
		default:
			toCanary = w.r.IntN(100) < w.canaryW
		}
		if toCanary {
			w.serve(canaryW, w.canary)
		} else {
			w.serve(primaryW, w.primary)
			if w.mirrored && (w.mirrorWeight <= 0 || w.r.IntN(100) < w.mirrorWeight) {
				w.serve(canaryW, w.canary)
			}
		}
	}
	return nil
}

// The two workloads, by index.
const (
	primaryW = 0
	canaryW  = 1
)

// serve counts one request served by a workload.
func (w *world) serve(workload int, m behavior.Model) {
	o := m.Sample(w.r)
	code, latency := 200, o.Delay
	switch o.Fault {
	case behavior.FaultReset, behavior.FaultClose:
		code, latency = 503, 0
	case behavior.FaultHang:
		code, latency = 503, o.FaultDuration
	case behavior.FaultSlowBody:
		latency += o.FaultDuration
	}
	if o.Status != 0 && code == 200 {
		code = o.Status
	}
	cs := w.codeSeries(workload, code)
	cs.requests.v++
	ms := float64(latency) / float64(time.Millisecond)
	cs.istio.observe(ms)
	if cs.mock != nil {
		cs.mockRequests.v++
		cs.mock.observe(latency.Seconds())
	}
}

// needed reports whether the scrape at t can change a query's result.
// With full scraping, every one can; with sparse, rate() and increase()
// read a window's first and last samples only (extrapolation included:
// the first is one scrape after the window's start, the last at the tick,
// as with every scrape kept), so only the scrapes at ticks and one scrape
// after each window's start are kept: a few instead of a dozen per tick.
func (w *world) needed(t time.Time, interval time.Duration) bool {
	if !w.sparse {
		return true
	}
	since := t.Sub(epoch)
	if since%interval == 0 {
		return true
	}
	for _, win := range w.windows {
		if (since+win-w.scrape0)%interval == 0 {
			return true
		}
	}
	return false
}

// queryShape renders every query of the analysis and reads, with
// Prometheus' parser, whether all ranges go to rate() or increase()
// (sparse scraping is exact then; the windows and the interval must be
// whole scrape intervals too), and whether any reads the mock servers'
// metrics.
func queryShape(s *scenario.Scenario, scrape time.Duration) (sparse, mock bool, windows []time.Duration) {
	interval := s.Analysis.IntervalDuration()
	sparse = interval%scrape == 0
	vars := analysis.TemplateVars{Name: s.Name(), Namespace: s.Namespace(), Target: s.Name(), Service: s.Name(), Ingress: s.Name(), Route: s.Name()}
	p := parser.NewParser(parser.Options{})
	for _, m := range s.Analysis.Metrics {
		var q string
		vars.Interval, vars.Variables = m.Interval, m.TemplateVariables
		switch {
		case analysis.IsBuiltin(m.Name):
			if vars.Interval == "" {
				vars.Interval = analysis.DefaultMetricInterval
			}
			q = analysis.BuiltinQueries[m.Name]
		case m.Query != "":
			q = m.Query
		case m.TemplateRef != nil:
			for _, t := range s.MetricTemplates {
				if t.Metadata.Name == m.TemplateRef.Name {
					q = t.Spec.Query
				}
			}
		}
		text, err := analysis.Render(q, vars)
		if err != nil {
			return false, true, nil
		}
		mock = mock || strings.Contains(text, "canarylab_mock")
		expr, err := p.ParseExpr(text)
		if err != nil {
			sparse = false
			continue
		}
		parser.Inspect(expr, func(n parser.Node, path []parser.Node) error {
			switch n := n.(type) {
			case *parser.SubqueryExpr:
				sparse = false
			case *parser.MatrixSelector:
				win := n.Range
				call, ok := parentCall(path)
				if !ok || (call.Func.Name != "rate" && call.Func.Name != "increase") || win%scrape != 0 {
					sparse = false
				}
				windows = append(windows, win)
			}
			return nil
		})
	}
	return sparse, mock, windows
}

// parentCall is the innermost function call above a node.
func parentCall(path []parser.Node) (*parser.Call, bool) {
	for i := len(path) - 1; i >= 0; i-- {
		switch p := path[i].(type) {
		case *parser.Call:
			return p, true
		case *parser.ParenExpr:
			continue
		default:
			return nil, false
		}
	}
	return nil, false
}

// codeSeries are the series one workload's answers with one code feed:
// built once, then only counted.
type codeSeries struct {
	requests, mockRequests *series
	istio, mock            *histogram
}

// histogram is a histogram's series: per-bucket counts (made cumulative
// when scraped), the count and the sum.
type histogram struct {
	bounds  []float64
	buckets []*series // one per bound, then +Inf
	counts  []float64
	count   *series
	sum     *series
}

func (h *histogram) observe(v float64) {
	h.counts[sort.SearchFloat64s(h.bounds, v)]++
	h.count.v++
	h.sum.v += v
}

// flush makes the bucket series cumulative, as exposition has them.
func (h *histogram) flush() {
	c := 0.0
	for i, n := range h.counts {
		c += n
		h.buckets[i].v = c
	}
}

func (w *world) codeSeries(wl int, code int) *codeSeries {
	if cs := w.byCode[wl][code]; cs != nil {
		return cs
	}
	workload := w.target
	if wl == primaryW {
		workload += "-primary"
	}
	rc := strconv.Itoa(code)
	base := []string{"reporter", "destination", "destination_workload", workload, "destination_workload_namespace", w.ns, "response_code", rc}
	pod := w.target + "-5d8f7b9c46-q7w4z"
	if workload != w.target {
		pod = w.target + "-primary-7b9f5c6d48-x2k9p"
	}
	mock := []string{"namespace", w.ns, "pod", pod, "route", "/*", "method", "GET", "code", rc}
	cs := &codeSeries{
		requests: w.newSeries(append([]string{"__name__", "istio_requests_total"}, base...)),
		istio:    w.newHistogram("istio_request_duration_milliseconds", base, mesh.DurationBuckets()),
	}
	// The mock servers' own series only when a query reads them: they
	// double what a scrape writes.
	if w.mock {
		cs.mockRequests = w.newSeries(append([]string{"__name__", "canarylab_mock_requests_total"}, mock...))
		cs.mock = w.newHistogram("canarylab_mock_request_duration_seconds", mock, mockserver.LatencyBuckets)
	}
	w.byCode[wl][code] = cs
	return cs
}

func (w *world) newSeries(kv []string) *series {
	s := &series{lbls: labels.FromStrings(kv...)}
	w.all = append(w.all, s)
	return s
}

func (w *world) newHistogram(name string, base []string, bounds []float64) *histogram {
	h := &histogram{bounds: bounds, counts: make([]float64, len(bounds)+1)}
	for _, b := range bounds {
		h.buckets = append(h.buckets, w.newSeries(append([]string{"__name__", name + "_bucket", "le", strconv.FormatFloat(b, 'g', -1, 64)}, base...)))
	}
	h.buckets = append(h.buckets, w.newSeries(append([]string{"__name__", name + "_bucket", "le", "+Inf"}, base...)))
	h.count = w.newSeries(append([]string{"__name__", name + "_count"}, base...))
	h.sum = w.newSeries(append([]string{"__name__", name + "_sum"}, base...))
	w.hists = append(w.hists, h)
	return h
}

// scrape writes every series' value at t, as a scrape would.
func (w *world) scrape(t time.Time) error {
	for _, h := range w.hists {
		h.flush()
	}
	app := w.store.Appender()
	for _, s := range w.all {
		if err := app.Add(s.lbls, t, s.v); err != nil {
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
	v, err := w.store.Query(ctx, q, w.now)
	switch {
	case errors.Is(err, metricstore.ErrNoValuesFound):
		return 0, analysis.ErrNoValuesFound
	case errors.Is(err, metricstore.ErrMultipleValues):
		return 0, analysis.ErrMultipleValues
	}
	return v, err
}

func (w *world) ProviderOnline(ctx context.Context, _ *analysis.MetricProvider) error {
	_, err := w.store.Query(ctx, "vector(1)", w.now)
	return err
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
