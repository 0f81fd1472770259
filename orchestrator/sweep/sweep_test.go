package sweep

import (
	"context"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"
	"time"
)

// A real sweep: the ready failure-errors scenario with no errors and with
// 20 % 503s on the canary.
func TestSweepFailureErrors(t *testing.T) {
	base := ready(t, "failure-errors")
	var calls, last atomic.Int64
	res, err := Run(t.Context(), base, []Vary{mustVary(t, "canary.errors.rate=0,0.2")},
		Options{Runs: 20, Seed: 1, Healthy: true, Progress: func(done, total int) {
			calls.Add(1)
			last.Store(int64(done)<<32 | int64(total))
		}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Points) != 2 || res.Runs != 20 || res.Seed != 1 || res.Scenario != "failure-errors" {
		t.Fatalf("result %+v", res)
	}
	// Both points have the same healthy scenario: one set of 20 healthy
	// runs, shared; 60 runs in all.
	if calls.Load() != 60 || last.Load() != 60<<32|60 {
		t.Errorf("progress called %d times, last %d/%d; want 60, 60/60", calls.Load(), last.Load()>>32, last.Load()&0xffffffff)
	}
	ok, bad := res.Points[0], res.Points[1]
	t.Logf("rate 0: %+v", ok)
	t.Logf("rate 0.2: %+v", bad)
	if ok.Values["canary.errors.rate"] != 0.0 || bad.Values["canary.errors.rate"] != 0.2 {
		t.Errorf("values %v, %v", ok.Values, bad.Values)
	}
	if ok.Runs != 20 || ok.Promoted < 18 || ok.Errors != 0 || ok.PPromote.Value != float64(ok.Promoted)/20 {
		t.Errorf("rate 0: %d of %d promoted (%d errors: %s), want almost all", ok.Promoted, ok.Runs, ok.Errors, ok.Error)
	}
	if bad.Runs != 20 || bad.RolledBack != 20 || bad.PRollback.Value != 1 || bad.PRollback.Lo < 0.8 || bad.PRollback.Hi != 1 {
		t.Errorf("rate 0.2: %d of %d rolled back, P %+v; want all", bad.RolledBack, bad.Runs, bad.PRollback)
	}
	// The threshold is 5: rollback on the tick after the fifth failed
	// check, 5 failed checks, around 6-7 minutes after the revision.
	if bad.FailedChecksMean != 5 || bad.DecisionP50.Value < 5*time.Minute || bad.DecisionP50.Value > 9*time.Minute ||
		bad.DecisionP50.Lo > bad.DecisionP50.Value || bad.DecisionP50.Hi < bad.DecisionP50.Value || bad.DecisionP90.Value < bad.DecisionP50.Value {
		t.Errorf("rate 0.2: failed checks %v, decision p50 %+v p90 %+v", bad.FailedChecksMean, bad.DecisionP50, bad.DecisionP90)
	}
	if ok.DecisionP50.Value < 5*time.Minute || ok.DecisionP50.Value > 11*time.Minute {
		t.Errorf("rate 0: decision p50 %+v", ok.DecisionP50)
	}
	for _, p := range []Point{ok, bad} {
		promoted, rolled := 0, 0
		for i, d := range p.Decisions {
			promoted, rolled = promoted+d.Promoted, rolled+d.RolledBack
			if i > 0 && d.At <= p.Decisions[i-1].At {
				t.Errorf("decisions out of order: %+v", p.Decisions)
			}
		}
		if promoted != p.Promoted || rolled != p.RolledBack {
			t.Errorf("the decision histogram counts %d promoted and %d rolled back, the point %d and %d", promoted, rolled, p.Promoted, p.RolledBack)
		}
	}
	if ok.HealthyRuns != 20 || bad.HealthyRuns != 20 || ok.FalseRollback != bad.FalseRollback || ok.FalseRollback.Value > 0.1 {
		t.Errorf("healthy: %d/%d runs, false rollback %+v and %+v", ok.HealthyRuns, bad.HealthyRuns, ok.FalseRollback, bad.FalseRollback)
	}
}

// The same seed gives the same result, whatever the number of workers.
func TestSweepDeterministic(t *testing.T) {
	base := ready(t, "failure-errors")
	varies := []Vary{mustVary(t, "canary.errors.rate=0.005,0.01"), mustVary(t, "analysis.threshold=1,2")}
	run := func(workers int) *Result {
		res, err := Run(t.Context(), base, varies, Options{Runs: 4, Workers: workers, Seed: 99, Healthy: true})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	one, four := run(1), run(4)
	if !reflect.DeepEqual(one, four) {
		t.Errorf("1 worker:\n%+v\n4 workers:\n%+v", one, four)
	}
	// The first vary varies slowest; the threshold changes the healthy
	// scenario, so there are two sets of healthy runs.
	want := [][2]float64{{0.005, 1}, {0.005, 2}, {0.01, 1}, {0.01, 2}}
	for i, p := range one.Points {
		if p.Values["canary.errors.rate"] != want[i][0] || p.Values["analysis.threshold"] != want[i][1] {
			t.Errorf("point %d: %v, want %v", i, p.Values, want[i])
		}
	}
	if one.Points[0].FalseRollback != one.Points[2].FalseRollback || one.Points[0].HealthyRuns != 4 {
		t.Errorf("threshold 1 points do not share their healthy runs: %+v, %+v", one.Points[0], one.Points[2])
	}
	other, err := Run(t.Context(), base, varies, Options{Runs: 4, Workers: 2, Seed: 100, Healthy: true})
	if err != nil {
		t.Fatal(err)
	}
	if reflect.DeepEqual(other.Points, one.Points) {
		t.Log("note: seeds 99 and 100 gave the same aggregates") // possible, not an error
	}
}

// Cancelling stops a large sweep promptly.
func TestSweepCancel(t *testing.T) {
	base := ready(t, "failure-errors")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var once atomic.Bool
	start := time.Now()
	_, err := Run(ctx, base, []Vary{mustVary(t, "canary.errors.rate=0:0.2:0.01")}, Options{Runs: 10000, Seed: 3, Healthy: true,
		Progress: func(done, total int) {
			if done >= 2 && once.CompareAndSwap(false, true) {
				cancel()
			}
		}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s to stop", d)
	}
}

// Without healthy runs there is no false-rollback estimate.
func TestSweepNoHealthy(t *testing.T) {
	res, err := Run(t.Context(), ready(t, "failure-errors"), []Vary{mustVary(t, "canary.errors.rate=0.3")}, Options{Runs: 2, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	p := res.Points[0]
	if p.HealthyRuns != 0 || p.FalseRollback != (Estimate{0, 0, 1}) || p.RolledBack != 2 {
		t.Errorf("%+v", p)
	}
}

func TestRunSeed(t *testing.T) {
	seen := map[uint64]bool{}
	for point := range 10 {
		for run := range 100 {
			for _, h := range []bool{false, true} {
				s := runSeed(42, point, run, h)
				if s == 0 || seen[s] {
					t.Fatalf("seed %d for point %d run %d healthy %v: zero or repeated", s, point, run, h)
				}
				seen[s] = true
			}
		}
	}
	if runSeed(1, 0, 0, false) == runSeed(2, 0, 0, false) {
		t.Error("the sweep's seed does not change the runs' seeds")
	}
}
