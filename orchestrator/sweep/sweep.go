// Package sweep answers "how often, and how fast, does this analysis
// catch that fault — and how often does it roll back a healthy canary?"
// by running a scenario many times in virtual time (orchestrator/sim)
// over a grid of field values.
//
// A [Vary] is a scenario field and its values (ParseVary reads
// canary.errors.rate=0:0.05:0.01 or analysis.threshold=2,5,10); the grid
// is the cartesian product of the varies. Each point is the scenario with
// its values set — through the scenario's JSON and scenario.Parse, so a
// varied scenario is validated exactly as a file is — and [Run] runs it
// N times (Monte Carlo, seeds derived from one seed), and N times more
// with the canary behaving as the stable version, for the false-rollback
// rate. A [Point] keeps aggregates only: P(promote), P(rollback) and the
// false-rollback rate with 95 % Wilson intervals, time to decision
// quantiles with order-statistic intervals, and the mean failed checks at
// rollback; memory does not grow with the number of runs.
package sweep

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/promql"

	"github.com/canarylab/canarylab/orchestrator/metricstore"
	"github.com/canarylab/canarylab/orchestrator/report"
	"github.com/canarylab/canarylab/orchestrator/scenario"
	"github.com/canarylab/canarylab/orchestrator/sim"
)

// DefaultRuns is the number of runs per point when Options.Runs is 0.
const DefaultRuns = 200

// Options configure a sweep.
type Options struct {
	// Runs is the number of Monte Carlo runs per point (default
	// DefaultRuns).
	Runs int
	// Workers is the number of runs at once (default
	// runtime.GOMAXPROCS(0)).
	Workers int
	// Seed makes the sweep reproducible, whatever Workers is (0: a random
	// seed, reported in Result.Seed).
	Seed uint64
	// Healthy also runs every point with the canary behaving as the
	// stable version (its profile, and in setCanary actions), for the
	// false-rollback rate. DefaultOptions sets it; canarylab sweep's
	// --healthy defaults to true. Points whose healthy scenarios are the
	// same (the varies change only the canary) share one set of healthy
	// runs.
	Healthy bool
	// ScrapeInterval is the simulated Prometheus' scrape interval (default
	// the sim engine's, 5s).
	ScrapeInterval time.Duration
	// Progress, if set, is called after every run with the runs done and
	// the total, from the goroutine that called Run.
	Progress func(done, total int)
}

// DefaultOptions returns canarylab sweep's defaults: DefaultRuns runs per
// point, one worker per CPU, a random seed, healthy runs.
func DefaultOptions() Options {
	return Options{Runs: DefaultRuns, Workers: runtime.GOMAXPROCS(0), Healthy: true}
}

// Result is a sweep's outcome.
type Result struct {
	// Scenario is the swept scenario's metadata.name.
	Scenario string `json:"scenario"`
	// Seed is the seed the runs' seeds derive from.
	Seed uint64 `json:"seed"`
	// Runs is the number of runs per point (and of healthy runs).
	Runs int `json:"runs"`
	// Healthy says whether healthy runs were made (Options.Healthy).
	Healthy bool `json:"healthy"`
	// Varies are the sweep's varies, in the order given.
	Varies []Vary `json:"varies"`
	// Points are the grid's points, the first vary varying slowest.
	Points []Point `json:"points"`
}

// Point is the aggregate of one grid point's runs.
type Point struct {
	// Values are the point's values, by vary path.
	Values map[string]any `json:"values"`
	// Runs counts the runs; Promoted, RolledBack, TimedOut (no verdict
	// within the scenario's timeout) and Errors (the engine failed) split
	// them.
	Runs       int `json:"runs"`
	Promoted   int `json:"promoted"`
	RolledBack int `json:"rolledBack"`
	TimedOut   int `json:"timedOut"`
	Errors     int `json:"errors"`
	// PPromote and PRollback are Promoted/Runs and RolledBack/Runs.
	PPromote  Estimate `json:"pPromote"`
	PRollback Estimate `json:"pRollback"`
	// HealthyRuns are the runs with the canary behaving as the stable
	// version; HealthyRolledBack of them rolled back, and FalseRollback
	// is their share (0 in [0, 1] without healthy runs).
	HealthyRuns       int      `json:"healthyRuns"`
	HealthyRolledBack int      `json:"healthyRolledBack"`
	FalseRollback     Estimate `json:"falseRollback"`
	// DecisionP50 and DecisionP90 are quantiles of the scenario time from
	// the new revision to the verdict, over the runs that reached one
	// (promoted or rolled back).
	DecisionP50 DurationEstimate `json:"decisionP50"`
	DecisionP90 DurationEstimate `json:"decisionP90"`
	// FailedChecksMean is the mean status.failedChecks when a rollback
	// started, over the rolled back runs (0 when none).
	FailedChecksMean float64 `json:"failedChecksMean"`
	// Decisions is the distribution of the time to decision: how many
	// runs were promoted and rolled back at each decision time, in time
	// order. Verdicts fall on analysis ticks, so it has few entries.
	Decisions []DecisionCount `json:"decisions,omitempty"`
	// Error is the first engine error of the point's runs (by run
	// index), if any.
	Error string `json:"error,omitempty"`
}

// DecisionCount is the number of runs decided at one scenario time.
type DecisionCount struct {
	At         time.Duration `json:"at"`
	Promoted   int           `json:"promoted"`
	RolledBack int           `json:"rolledBack"`
}

// agg accumulates a point's (or a healthy group's) runs.
type agg struct {
	runs, promoted, rolledBack, timedOut, errors int
	failedChecks                                 int
	decisions                                    []time.Duration
	histogram                                    map[time.Duration]*DecisionCount
	err                                          string
	errRun                                       int
}

func (a *agg) add(r result) {
	a.runs++
	switch r.outcome {
	case string(scenario.Succeeded):
		a.promoted++
		a.decisions = append(a.decisions, r.decision)
		a.bin(r.decision).Promoted++
	case string(scenario.Failed):
		a.rolledBack++
		a.failedChecks += r.failedChecks
		a.decisions = append(a.decisions, r.decision)
		a.bin(r.decision).RolledBack++
	case report.OutcomeTimeout:
		a.timedOut++
	default:
		a.errors++
		if a.err == "" || r.run < a.errRun {
			a.err, a.errRun = r.err, r.run
		}
	}
}

func (a *agg) bin(at time.Duration) *DecisionCount {
	if a.histogram == nil {
		a.histogram = map[time.Duration]*DecisionCount{}
	}
	b := a.histogram[at]
	if b == nil {
		b = &DecisionCount{At: at}
		a.histogram[at] = b
	}
	return b
}

// job is one run to do.
type job struct {
	s    *scenario.Scenario
	slot int // the aggregate: a point, or len(points)+group for healthy runs
	seed uint64
	run  int
}

type result struct {
	slot         int
	run          int
	outcome      string
	decision     time.Duration
	failedChecks int
	err          string
}

// Run sweeps base over the grid of varies. It checks every point before
// running any: a bad path or value is a *VaryError. Cancelling ctx stops
// the runs promptly and returns ctx's error.
func Run(ctx context.Context, base *scenario.Scenario, varies []Vary, opts Options) (*Result, error) {
	if opts.Runs <= 0 {
		opts.Runs = DefaultRuns
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.Seed == 0 {
		opts.Seed = rand.Uint64() | 1
	}
	g, err := plan(base, varies, opts.Healthy)
	if err != nil {
		return nil, err
	}
	res := &Result{Scenario: base.Metadata.Name, Seed: opts.Seed, Runs: opts.Runs, Healthy: opts.Healthy, Varies: varies}
	aggs := make([]agg, len(g.points)+g.groups)
	total := len(aggs) * opts.Runs

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan job, opts.Workers)
	results := make(chan result, opts.Workers)
	var produceErr error
	go func() {
		defer close(jobs)
		produceErr = g.produce(ctx, opts, jobs)
	}()
	var wg sync.WaitGroup
	pe := metricstore.NewEngine(nil) // one PromQL engine for every run
	for range opts.Workers {
		wg.Go(func() {
			for j := range jobs {
				if ctx.Err() != nil {
					continue // drain
				}
				r, ok := runOne(ctx, j, pe, opts.ScrapeInterval)
				if ok {
					results <- r
				}
			}
		})
	}
	go func() {
		wg.Wait()
		close(results)
	}()
	done := 0
	for r := range results {
		aggs[r.slot].add(r)
		done++
		if opts.Progress != nil {
			opts.Progress(done, total)
		}
	}
	if produceErr != nil {
		return nil, produceErr
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sweep stopped after %d of %d runs: %w", done, total, err)
	}
	for i, p := range g.points {
		res.Points = append(res.Points, finish(varies, p, &aggs[i], g.group(i, aggs)))
	}
	return res, nil
}

// runOne runs a job; ok is false when ctx ended it.
func runOne(ctx context.Context, j job, pe *promql.Engine, scrape time.Duration) (result, bool) {
	eng := sim.New(sim.Options{Seed: j.seed, ScrapeInterval: scrape, Engine: pe})
	rec := report.NewRecorder(j.s, "", sim.Name, 0, nil)
	err := eng.Run(ctx, j.s, rec)
	if ctx.Err() != nil {
		return result{}, false
	}
	// Finish against no expectations: only the outcome is wanted.
	run := rec.Finish(&noExpect, 0, err)
	return result{slot: j.slot, run: j.run, outcome: run.Outcome, decision: run.DecisionTime,
		failedChecks: run.FailedChecks, err: run.Error}, true
}

var noExpect scenario.Scenario

// finish turns a point's aggregates into its Point.
func finish(varies []Vary, values []any, a, h *agg) Point {
	p := Point{Values: map[string]any{}, Runs: a.runs, Promoted: a.promoted, RolledBack: a.rolledBack,
		TimedOut: a.timedOut, Errors: a.errors, PPromote: Wilson(a.promoted, a.runs),
		PRollback: Wilson(a.rolledBack, a.runs), FalseRollback: Wilson(0, 0), Error: a.err}
	for i, v := range varies {
		p.Values[v.Path] = values[i]
	}
	if h != nil {
		p.HealthyRuns, p.HealthyRolledBack = h.runs, h.rolledBack
		p.FalseRollback = Wilson(h.rolledBack, h.runs)
	}
	p.DecisionP50 = Quantile(a.decisions, 0.5)
	p.DecisionP90 = Quantile(a.decisions, 0.9)
	if a.rolledBack > 0 {
		p.FailedChecksMean = float64(a.failedChecks) / float64(a.rolledBack)
	}
	for _, b := range a.histogram {
		p.Decisions = append(p.Decisions, *b)
	}
	slices.SortFunc(p.Decisions, func(x, y DecisionCount) int { return cmp.Compare(x.At, y.At) })
	return p
}

// grid is a checked sweep: its points and their healthy groups.
type grid struct {
	doc    []byte
	varies []Vary
	points [][]any
	// pointGroup[i] is point i's healthy group (-1: no healthy runs);
	// groupFirst[g] is the first point of group g.
	pointGroup []int
	groupFirst []int
	groups     int
}

func (g *grid) group(point int, aggs []agg) *agg {
	if gi := g.pointGroup[point]; gi >= 0 {
		return &aggs[len(g.points)+gi]
	}
	return nil
}

// plan builds the grid and checks every point: each value alone first,
// so that an error names the one --vary at fault, then every combination.
func plan(base *scenario.Scenario, varies []Vary, healthy bool) (*grid, error) {
	doc, err := json.Marshal(base)
	if err != nil {
		return nil, fmt.Errorf("encode the scenario: %w", err)
	}
	g := &grid{doc: doc, varies: varies}
	seen := map[string]bool{}
	n := 1
	for i, v := range varies {
		if len(v.Values) == 0 {
			return nil, &VaryError{Vary: v.Spec, Err: errors.New("no values")}
		}
		if seen[v.Path] {
			return nil, &VaryError{Vary: v.Spec, Err: fmt.Errorf("%s is varied twice: give its values in one --vary", v.Path)}
		}
		seen[v.Path] = true
		if n *= len(v.Values); n > MaxPoints {
			specs := make([]string, i+1)
			for j := range specs {
				specs[j] = varies[j].Spec
			}
			return nil, &VaryError{Vary: strings.Join(specs, " --vary "), Err: fmt.Errorf("more than %d points: use fewer values", MaxPoints)}
		}
		for _, val := range v.Values {
			if _, err := apply(doc, []Vary{v}, []any{val}); err != nil {
				return nil, err
			}
		}
	}
	groups := map[[32]byte]int{}
	for idx := range n {
		values := make([]any, len(varies))
		rest := idx
		for i := len(varies) - 1; i >= 0; i-- {
			values[i] = varies[i].Values[rest%len(varies[i].Values)]
			rest /= len(varies[i].Values)
		}
		s, err := apply(doc, varies, values)
		if err != nil {
			return nil, err
		}
		g.points = append(g.points, values)
		gi := -1
		if healthy {
			hs, err := json.Marshal(healthyOf(s))
			if err != nil {
				return nil, fmt.Errorf("encode the healthy scenario: %w", err)
			}
			key := sha256.Sum256(hs)
			var ok bool
			if gi, ok = groups[key]; !ok {
				gi = len(g.groupFirst)
				groups[key] = gi
				g.groupFirst = append(g.groupFirst, idx)
			}
		}
		g.pointGroup = append(g.pointGroup, gi)
	}
	g.groups = len(g.groupFirst)
	return g, nil
}

// produce sends every run, point by point: a point's scenario is parsed
// when its runs are sent and dropped when they are done, so memory stays
// flat however large the grid.
func (g *grid) produce(ctx context.Context, opts Options, jobs chan<- job) error {
	send := func(j job) bool {
		select {
		case jobs <- j:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for idx, values := range g.points {
		s, err := apply(g.doc, g.varies, values)
		if err != nil {
			return err // checked in plan: cannot happen
		}
		for run := range opts.Runs {
			if !send(job{s: s, slot: idx, seed: runSeed(opts.Seed, idx, run, false), run: run}) {
				return nil
			}
		}
		if gi := g.pointGroup[idx]; gi >= 0 && g.groupFirst[gi] == idx {
			h := healthyOf(s)
			for run := range opts.Runs {
				if !send(job{s: h, slot: len(g.points) + gi, seed: runSeed(opts.Seed, idx, run, true), run: run}) {
					return nil
				}
			}
		}
	}
	return nil
}

// healthyOf returns s with the canary behaving as the stable version.
func healthyOf(s *scenario.Scenario) *scenario.Scenario {
	h := *s
	h.Canary = s.Stable
	h.Actions = make([]scenario.Action, len(s.Actions))
	for i, a := range s.Actions {
		if a.Canary != nil {
			st := s.Stable
			a.Canary = &st
		}
		h.Actions[i] = a
	}
	return &h
}

// runSeed derives a run's seed from the sweep's, the point's index, the
// run's and whether it is a healthy run: the same for a seed whatever the
// order the workers take the runs in. Never 0 (the sim engine's "random").
func runSeed(seed uint64, point, run int, healthy bool) uint64 {
	h := uint64(0)
	if healthy {
		h = 1
	}
	x := mix(mix(mix(seed)^uint64(point)) ^ (uint64(run)<<1 | h))
	if x == 0 {
		x = 1
	}
	return x
}

// mix is splitmix64's finaliser.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
