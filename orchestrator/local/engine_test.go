package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/canarylab/canarylab/loadgen"
	"github.com/canarylab/canarylab/loadgen/plan"
	"github.com/canarylab/canarylab/loadgen/stats"
	"github.com/canarylab/canarylab/orchestrator/report"
	"github.com/canarylab/canarylab/orchestrator/scenario"
	"github.com/canarylab/canarylab/orchestrator/sim"
	"github.com/canarylab/canarylab/scenarios"
)

// testSpeed runs a 1-minute analysis interval in two seconds: PromQL
// windows of 2 s, scrapes every 167 ms, 600 requests a second for a 20 rps
// scenario. At 60× a busy machine starves the scrapes of a 1 s window.
const testSpeed = 30

func readyScenario(t *testing.T, name string) *scenario.Scenario {
	t.Helper()
	s, err := scenarios.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func runReady(t *testing.T, name string) report.Run {
	t.Helper()
	s := readyScenario(t, name)
	opts := Options{Speed: testSpeed, Seed: 7}
	if os.Getenv("CANARYLAB_TEST_LOG") != "" {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	var live strings.Builder
	rec := report.NewRecorder(s, "", Name, testSpeed, report.NewLive(&live, s.Analysis.Threshold, 0))
	start := time.Now()
	err = e.Run(context.Background(), s, rec)
	run := rec.Finish(s, time.Since(start), err)
	if !run.Passed || os.Getenv("CANARYLAB_TEST_LOG") != "" {
		var sum strings.Builder
		report.Summary(&sum, run)
		t.Logf("live view:\n%s\n%s", live.String(), sum.String())
	}
	return run
}

// simSeed seeds the sim engine's run of each ready scenario in
// TestReadyScenarios. The ready scenarios are clear-cut (2,000 sim runs
// of each end alike; custom-metric, failure-errors, failure-latency and
// no-traffic roll back at their threshold), so any seed must give the
// embedded engine's verdict.
const simSeed = 42

// runSim runs a ready scenario on the sim engine (virtual time, the
// default 5s scrape interval as the embedded engine's).
func runSim(t *testing.T, name string) report.Run {
	t.Helper()
	s := readyScenario(t, name)
	rec := report.NewRecorder(s, "", sim.Name, 0, nil)
	start := time.Now()
	err := sim.New(sim.Options{Seed: simSeed}).Run(context.Background(), s, rec)
	return rec.Finish(s, time.Since(start), err)
}

// sameVerdict says how the sim engine's verdict differs from the embedded
// engine's: the outcome (the final phase), and for a rollback the failed
// checks when it started; "" when they agree.
func sameVerdict(local, simRun report.Run) string {
	verdict := func(r report.Run) string {
		if r.Outcome == string(scenario.Failed) {
			return fmt.Sprintf("%s with %d failed checks", r.Outcome, r.FailedChecks)
		}
		if r.Error != "" {
			return fmt.Sprintf("%s (%s)", r.Outcome, r.Error)
		}
		return r.Outcome
	}
	if l, s := verdict(local), verdict(simRun); l != s {
		return fmt.Sprintf("the embedded engine ends %s, the sim engine (seed %d) %s", l, simSeed, s)
	}
	return ""
}

// TestReadyScenarios runs every ready scenario end to end at 30× real
// time, three at a time,
// and checks each one's expectations: outcome, events, weights, metric
// values; then runs it on the sim engine and checks that it reaches the
// same verdict (a few milliseconds each). `make test` runs it without the
// race detector (which slows the data path too much for time-scaled
// runs); TestEngineUnderRace covers the engine's concurrency with -race.
func TestReadyScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every ready scenario end to end (about a minute); skipped with -short")
	}
	if raceEnabled {
		t.Skip("time-scaled end-to-end runs need the full speed of the data path; make test runs them without -race")
	}
	slots := make(chan struct{}, 3)
	for _, name := range scenarios.Names() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			slots <- struct{}{}
			defer func() { <-slots }()
			run := runReady(t, name)
			if !run.Passed {
				t.Errorf("%s: outcome %s, expectations not met", name, run.Outcome)
			}
			if diff := sameVerdict(run, runSim(t, name)); diff != "" {
				t.Errorf("%s: %s", name, diff)
			}
		})
	}
}

// A light scenario with the race detector on: the engine's goroutines
// (load, scraper, servers, ticks, actions) and their shutdown, checked for
// races and for leaks.
func TestEngineUnderRace(t *testing.T) {
	if testing.Short() {
		t.Skip("an end-to-end run of about 10 s; skipped with -short")
	}
	s, err := scenario.Parse([]byte(`apiVersion: canarylab.dev/v1alpha1
kind: Scenario
metadata: {name: light}
canary: {latency: 2ms}
load: {rate: 5}
analysis:
  interval: 10s
  threshold: 2
  stepWeight: 50
  metrics:
  - {name: request-success-rate, interval: 30s, thresholdRange: {min: 99}}
  webhooks:
  - {name: gate, type: confirm-rollout, url: "http://flagger-loadtester.test/gate/check"}
  - {name: events, type: event, url: "http://flagger-loadtester.test/"}
actions:
- {at: 0s, do: openGate}
- {at: 15s, do: setCanary, canary: {latency: 3ms}}
expect:
  outcome: Succeeded
  events:
    include: ["^Confirm-rollout check gate passed$"]
`))
	if err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	e, err := New(Options{Speed: 10, Seed: 3, ScrapeInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var live strings.Builder
	rec := report.NewRecorder(s, "", Name, 10, report.NewLive(&live, 2, 0))
	start := time.Now()
	run := rec.Finish(s, time.Since(start), e.Run(context.Background(), s, rec))
	if !run.Passed {
		var sum strings.Builder
		report.Summary(&sum, run)
		t.Fatalf("live view:\n%s\n%s", live.String(), sum.String())
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines outlived the run (%d before):\n%s", n-before, before, buf[:runtime.Stack(buf, true)])
	}
}

// Ctrl-C (the context's end) stops a run at once and everything it
// started.
func TestEngineStopsOnCancel(t *testing.T) {
	data, _ := scenarios.Get("success")
	s, err := scenario.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	e, _ := New(Options{Speed: 10})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(1500*time.Millisecond, cancel)
	start := time.Now()
	err = e.Run(ctx, s, report.NewRecorder(s, "", Name, 10, nil))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run: %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Run took %s to stop after its context ended", took)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines outlived the cancelled run", n-before)
	}
}

// startedRouter captures the router's URL when the run starts.
type startedRouter struct {
	report.Observer
	url chan string
}

func (o startedRouter) Started(r *report.Run) {
	o.Observer.Started(r)
	o.url <- r.Router
}

// With --load-external the engine sends nothing: another load generator
// (here loadgen in the test, as a Locust master's workers would) drives
// the router it announces.
func TestExternalLoadDrivesTheRouter(t *testing.T) {
	if testing.Short() {
		t.Skip("an end-to-end run of about 7 s; skipped with -short")
	}
	s, err := scenario.Parse([]byte(`apiVersion: canarylab.dev/v1alpha1
kind: Scenario
metadata: {name: external}
load: {rate: 20}
analysis:
  interval: 10s
  threshold: 1
  stepWeight: 50
  metrics:
  - {name: request-success-rate, interval: 30s, thresholdRange: {min: 99}}
expect: {outcome: Succeeded}
`))
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Options{Speed: 10, ScrapeInterval: time.Second, LoadExternal: true})
	if err != nil {
		t.Fatal(err)
	}
	rec := report.NewRecorder(s, "", Name, 10, nil)
	obs := startedRouter{rec, make(chan string, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- e.Run(ctx, s, obs) }()
	url := <-obs.url
	st := stats.New(nil)
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		_, _ = loadgen.RunOpen(ctx, plan.Default(), st, loadgen.Options{Host: url}, loadgen.OpenOptions{Stages: loadgen.ConstantRate(100, time.Minute)})
	}()
	err = <-done
	cancel()
	<-loadDone
	run := rec.Finish(s, time.Since(start), err)
	if !run.Passed || st.Cumulative().Total.NumRequests < 100 {
		t.Fatalf("outcome %s (error %q), %d external requests; notes %q", run.Outcome, run.Error, st.Cumulative().Total.NumRequests, run.Notes)
	}
	if !strings.Contains(strings.Join(run.Notes, "\n"), "load is external: send it to "+url) {
		t.Errorf("notes %q do not tell where to send the load", run.Notes)
	}
}
