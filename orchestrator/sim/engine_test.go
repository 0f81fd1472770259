package sim

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/canarylab/canarylab/orchestrator/analysis"
	"github.com/canarylab/canarylab/orchestrator/metricstore"
	"github.com/canarylab/canarylab/orchestrator/report"
	"github.com/canarylab/canarylab/scenarios"
)

func runSim(t *testing.T, name string, seed uint64) report.Run {
	return runSimOpts(t, name, Options{Seed: seed})
}

func runSimOpts(t *testing.T, name string, opts Options) report.Run {
	t.Helper()
	s, err := scenarios.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	var live strings.Builder
	rec := report.NewRecorder(s, "", Name, 0, report.NewLive(&live, s.Analysis.Threshold, 0))
	start := time.Now()
	err = New(opts).Run(context.Background(), s, rec)
	run := rec.Finish(s, time.Since(start), err)
	if !run.Passed {
		var sum strings.Builder
		report.Summary(&sum, run)
		t.Logf("live view:\n%s\n%s", live.String(), sum.String())
	}
	return run
}

// Every ready scenario ends in virtual time as it does on the embedded
// engine: its expectations (outcome, events in order, weights, failed
// checks, metric bounds) hold.
func TestReadyScenarios(t *testing.T) {
	for _, name := range scenarios.Names() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if run := runSim(t, name, 42); !run.Passed {
				t.Errorf("%s: %s, expectations not met", name, run.Outcome)
			}
		})
	}
}

// A seed decides a run: the same seed, the same ticks and values.
func TestDeterministic(t *testing.T) {
	a, b := runSim(t, "failure-errors", 7), runSim(t, "failure-errors", 7)
	if len(a.Ticks) != len(b.Ticks) {
		t.Fatalf("%d and %d ticks", len(a.Ticks), len(b.Ticks))
	}
	for i := range a.Ticks {
		for j := range a.Ticks[i].Checks {
			va, vb := a.Ticks[i].Checks[j].Value, b.Ticks[i].Checks[j].Value
			if (va == nil) != (vb == nil) || (va != nil && *va != *vb) {
				t.Fatalf("tick %d check %d: %v vs %v", i, j, va, vb)
			}
		}
	}
}

// Sparse scraping (only the scrapes a rate() window's ends read) gives
// exactly the values of scraping every interval, for every ready scenario
// whose queries allow it; with several seeds, so that series also appear
// in the middle of windows (a code's first answer), where every scrape
// counts.
func TestSparseScrapingIsExact(t *testing.T) {
	for _, name := range scenarios.Names() {
		for seed := uint64(11); seed < 19; seed++ {
			t.Run(fmt.Sprintf("%s/%d", name, seed), func(t *testing.T) { sparseIsExact(t, name, seed) })
		}
	}
}

func sparseIsExact(t *testing.T, name string, seed uint64) {
	full := runSimOpts(t, name, Options{Seed: seed, FullScrape: true})
	sparse := runSimOpts(t, name, Options{Seed: seed})
	if len(full.Ticks) != len(sparse.Ticks) || full.Outcome != sparse.Outcome {
		t.Fatalf("full: %d ticks, %s; sparse: %d ticks, %s", len(full.Ticks), full.Outcome, len(sparse.Ticks), sparse.Outcome)
	}
	for i := range full.Ticks {
		fc, sc := full.Ticks[i].Checks, sparse.Ticks[i].Checks
		if len(fc) != len(sc) {
			t.Fatalf("tick %d: %d and %d checks", i, len(fc), len(sc))
		}
		for j := range fc {
			a, b := fc[j].Value, sc[j].Value
			if (a == nil) != (b == nil) || (a != nil && *a != *b) {
				t.Errorf("tick %d %s: full %v, sparse %v", i, fc[j].Metric, deref(a), deref(b))
			}
		}
	}
}

func deref(v *float64) any {
	if v == nil {
		return "no value"
	}
	return *v
}

// A run on a recycled store, shifted in the store's time, gives exactly
// the run on a new store at the epoch.
func TestRecycledStoreGivesSameRun(t *testing.T) {
	for _, name := range []string{"failure-errors", "custom-metric", "blue-green"} {
		// A PromQL engine of its own: no store is recycled for it.
		fresh := runSimOpts(t, name, Options{Seed: 5, Engine: metricstore.NewEngine(nil)})
		runSim(t, name, 5) // leaves a store to recycle
		recycled := runSim(t, name, 5)
		if !sameChecks(fresh, recycled) {
			t.Errorf("%s: a new store and a recycled one disagree", name)
		}
	}
}

// Queries that read absolute time keep the run at the epoch.
func TestShapeAbsolute(t *testing.T) {
	for q, want := range map[string]bool{
		`sum(rate(x[1m]))`:           false,
		`hour()`:                     true,
		`x @ 1767225600`:             true,
		`x @ start()`:                true,
		`max_over_time(x[5m:1m])`:    true,
		`time() - timestamp(x)`:      true,
		`rate(x[1m] offset 1m)`:      false,
		`histogram_quantile(0.9, x)`: false,
	} {
		sh := &shape{queries: map[string]bool{}}
		sh.add(parser.NewParser(parser.Options{}), q, analysis.TemplateVars{}, 5*time.Second)
		if sh.absolute != want {
			t.Errorf("%s: absolute %v, want %v", q, sh.absolute, want)
		}
	}
}

func sameChecks(a, b report.Run) bool {
	if len(a.Ticks) != len(b.Ticks) || a.Outcome != b.Outcome {
		return false
	}
	for i := range a.Ticks {
		if len(a.Ticks[i].Checks) != len(b.Ticks[i].Checks) {
			return false
		}
		for j := range a.Ticks[i].Checks {
			va, vb := a.Ticks[i].Checks[j].Value, b.Ticks[i].Checks[j].Value
			if (va == nil) != (vb == nil) || (va != nil && *va != *vb) {
				return false
			}
		}
	}
	return true
}

// The pool stays bounded and keeps the newest engine's stores when older
// engines (finished sweeps') fill it.
func TestPoolKeepsNewestEngine(t *testing.T) {
	for range poolSize() + 2 {
		runSimOpts(t, "success", Options{Seed: 1, Engine: metricstore.NewEngine(nil)})
	}
	eng := metricstore.NewEngine(nil)
	runSimOpts(t, "success", Options{Seed: 1, Engine: eng})
	p, err := getStore(eng, true)
	if err != nil {
		t.Fatal(err)
	}
	if p.base == 0 {
		t.Error("the newest engine's store was not kept")
	}
	putStore(p, 0, true)
	pool.Lock()
	n := len(pool.free)
	pool.Unlock()
	if n > poolSize() {
		t.Errorf("%d stores kept, at most %d wanted", n, poolSize())
	}
}
