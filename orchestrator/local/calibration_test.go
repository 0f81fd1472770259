//go:build !race

package local

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canarylab/canarylab/orchestrator/report"
	"github.com/canarylab/canarylab/orchestrator/scenario"
	"github.com/canarylab/canarylab/orchestrator/sweep"
)

// The calibration run: the sim engine's P(promote) from calSimRuns runs,
// then batches of calBatch embedded-engine runs at calSpeed, calParallel
// at once (each with its own ports), both engines scraping every
// calScrape of scenario time.
const (
	calScenario = "testdata/marginal.yaml"
	calSimRuns  = 10000
	calSimSeed  = 1
	calBatch    = 90
	calParallel = 3
	calSpeed    = 30
	calScrape   = 5 * time.Second
	// calShift is the mismatch whose detection rate the test logs.
	calShift = 0.15
)

// TestCalibration checks that the sim engine is calibrated against the
// embedded one on a marginal scenario (testdata/marginal.yaml, promoted
// about half the time): the share of embedded-engine runs that are
// promoted must be one the sim's P(promote) predicts for a batch of that
// size. Clear-cut scenarios (TestReadyScenarios) only show that the two
// agree where nothing is random; here the verdict turns on a 503 or two
// per window, so the request counts, the routing and error draws, the
// scrape grid, when series first appear and rate()'s windows all have to
// match. (Before the embedded engine put its ticks on the scrape grid,
// see grid, it promoted 1 of 180 runs here: its checks found no values.)
//
// The criterion: the number of promotions in n embedded runs must lie in
// the central 95 % region (at most 2.5 % of the probability on each side)
// of its predictive distribution given the sim's k promotions in N runs —
// beta-binomial: p ~ Beta(k+½, N-k+½) (Jeffreys), then Binomial(n, p) —
// so the region is widened by the sim estimate's own uncertainty. A
// correct 95 % check still fails about 5 % of the time, so the rule has
// two stages: if the first batch falls outside, a second batch is run and
// the pooled 2n runs are judged against the pooled region. With n = 90
// and p_sim ≈ 0.5 that fails about 1.5 % of the time under calibration
// (the first stage misses ~5 %, and of those about one in three misses
// again, pooled), while a real mismatch of 15 points fails about 80 % of
// the time and one of 20 points 97 % (TestTwoStage; the test logs both
// rates for the p_sim it measured). By hand, the embedded engine run with
// the canary failing 1.0 % or 2.4 % of requests instead of 1.6 %
// (P(promote) 0.72 and 0.30 on the sim) promoted 130 and 52 of 180 runs:
// both failed, and both agree with the sim at those rates.
//
// Wall time: the sim's runs take a few seconds; a batch about a minute on
// two CPUs (a run is seven 333 ms ticks and the engine's start and stop);
// the second batch, one time in twenty, another minute. Runs whose checks
// found no values after the engine warned that a tick's scrape came late
// (a busy machine: in the model every window holds requests) are left out
// and logged, and too many of them fail the test as a load problem, not a
// calibration one.
func TestCalibration(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the sim engine 10,000 times and the embedded engine 90 to 180 times (one to two minutes); skipped with -short")
	}
	s, err := scenario.LoadFile(calScenario)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()

	res, err := sweep.Run(ctx, s, nil, sweep.Options{Runs: calSimRuns, Seed: calSimSeed, ScrapeInterval: calScrape, Workers: runtime.GOMAXPROCS(0)})
	if err != nil {
		t.Fatalf("sim runs: %v", err)
	}
	pt := res.Points[0]
	if pt.Promoted+pt.RolledBack != pt.Runs {
		t.Fatalf("sim: %d runs, %d promoted, %d rolled back, %d timed out, %d errors (%s)", pt.Runs, pt.Promoted, pt.RolledBack, pt.TimedOut, pt.Errors, pt.Error)
	}
	k, N := pt.Promoted, pt.Runs
	pSim := float64(k) / float64(N)
	t.Logf("sim: P(promote) = %d/%d = %.3f, 95%% Wilson interval [%.3f, %.3f] (%s)", k, N, pSim, pt.PPromote.Lo, pt.PPromote.Hi, time.Since(start).Round(time.Millisecond))
	if pSim < 0.2 || pSim > 0.8 {
		// Near 0 or 1 every engine agrees and the test would show nothing.
		t.Fatalf("sim: P(promote) %.3f: %s is no longer marginal; retune its error rate", pSim, calScenario)
	}
	pass := twoStage(k, N, calBatch, pSim)
	miss := max(twoStage(k, N, calBatch, pSim-calShift), twoStage(k, N, calBatch, pSim+calShift))
	t.Logf("two-stage rule for batches of %d: fails %.1f %% of the time under calibration; a %.0f-point mismatch passes at most %.0f %% of the time",
		calBatch, 100*(1-pass), 100*calShift, 100*miss)

	var b batch
	for stage := 1; ; stage++ {
		b.add(runBatch(t, s, calBatch))
		n := b.promoted + b.rolledBack
		lo, hi := predictiveRegion(k, N, n)
		inside := lo <= b.promoted && b.promoted <= hi
		verdict := "inside"
		if !inside {
			verdict = "OUTSIDE"
		}
		t.Logf("stage %d: embedded engine: %d of %d runs promoted (%.3f), %d rolled back, %d left out (missed scrapes); 95 %% region for %d runs: %d..%d (%.3f..%.3f): %s (%s in all)",
			stage, b.promoted, n, frac(b.promoted, n), b.rolledBack, b.disturbed, n, lo, hi, frac(lo, n), frac(hi, n), verdict, time.Since(start).Round(time.Second))
		if inside {
			return
		}
		if stage == 2 {
			t.Fatalf("the engines disagree on %s: the embedded engine promoted %d of %d runs (%.3f), the sim engine's P(promote) %.3f predicts %d..%d (%.3f..%.3f) at 95 %%",
				calScenario, b.promoted, n, frac(b.promoted, n), pSim, lo, hi, frac(lo, n), frac(hi, n))
		}
	}
}

func frac(k, n int) float64 { return float64(k) / float64(n) }

// batch counts a batch's embedded-engine runs.
type batch struct {
	promoted, rolledBack int
	// disturbed runs reached no verdict, or had a check with no value
	// after the engine warned that a tick's scrape was late (a busy
	// machine); they are left out. A check with no value without that
	// warning is the engines' disagreement, and counts as its outcome.
	disturbed int
}

func (b *batch) add(o batch) {
	b.promoted += o.promoted
	b.rolledBack += o.rolledBack
	b.disturbed += o.disturbed
}

// runBatch runs s n times on the embedded engine, calParallel at once,
// each run with its own engine, ports and random seed.
func runBatch(t *testing.T, s *scenario.Scenario, n int) batch {
	t.Helper()
	var (
		mu   sync.Mutex
		b    batch
		errs []string
		wg   sync.WaitGroup
	)
	slots := make(chan struct{}, calParallel)
	for range n {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			run, late, err := runOnce(s)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, err.Error())
			case disturbed(run, late):
				b.disturbed++
			case run.Outcome == string(scenario.Succeeded):
				b.promoted++
			default:
				b.rolledBack++
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d embedded-engine runs failed; the first: %s", len(errs), n, errs[0])
	}
	if b.disturbed > n/10 {
		t.Fatalf("%d of %d embedded-engine runs had checks with no values after late scrapes: the machine is too busy for %d runs at %d× at once; rerun on an idle machine",
			b.disturbed, n, calParallel, calSpeed)
	}
	return b
}

// runOnce runs s once on a new embedded engine, and counts the engine's
// late scrape warnings.
func runOnce(s *scenario.Scenario) (run report.Run, late int64, err error) {
	var warnings lateScrapes
	e, err := New(Options{Speed: calSpeed, ScrapeInterval: calScrape, Seed: rand.Uint64() | 1, Logger: slog.New(&warnings)})
	if err != nil {
		return report.Run{}, 0, err
	}
	rec := report.NewRecorder(s, "", Name, calSpeed, nil)
	start := time.Now()
	run = rec.Finish(s, time.Since(start), e.Run(context.Background(), s, rec))
	if run.Outcome == report.OutcomeError {
		return run, 0, fmt.Errorf("engine error: %s", run.Error)
	}
	return run, warnings.n.Load(), nil
}

// disturbed reports whether a run reached no verdict, or had a check with
// no value after a late scrape: with the scenario's load every window of
// the model holds requests, so that value was lost to a busy machine.
func disturbed(run report.Run, late int64) bool {
	if run.Outcome != string(scenario.Succeeded) && run.Outcome != string(scenario.Failed) {
		return true
	}
	if late == 0 {
		return false
	}
	for _, tk := range run.Ticks {
		for _, c := range tk.Checks {
			if c.Value == nil {
				return true
			}
		}
	}
	return false
}

// lateScrapes is a slog.Handler that counts the engine's late scrape
// warnings and drops everything else.
type lateScrapes struct{ n atomic.Int64 }

func (h *lateScrapes) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *lateScrapes) Handle(_ context.Context, r slog.Record) error {
	if r.Message == lateScrape {
		h.n.Add(1)
	}
	return nil
}

func (h *lateScrapes) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *lateScrapes) WithGroup(string) slog.Handler      { return h }
