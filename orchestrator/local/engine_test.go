package local

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/canarylab/canarylab/orchestrator/report"
	"github.com/canarylab/canarylab/orchestrator/scenario"
	"github.com/canarylab/canarylab/scenarios"
)

// testSpeed runs a 1-minute analysis interval in two seconds: PromQL
// windows of 2 s, scrapes every 167 ms, 600 requests a second for a 20 rps
// scenario. At 60× a busy machine starves the scrapes of a 1 s window.
const testSpeed = 30

func runReady(t *testing.T, name string) report.Run {
	t.Helper()
	data, err := scenarios.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := scenario.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
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

// TestReadyScenarios runs every ready scenario end to end at 30× real
// time, three at a time,
// and checks each one's expectations: outcome, events, weights, metric
// values. `make test` runs it without the race detector (which slows the
// data path too much for time-scaled runs); TestEngineUnderRace covers the
// engine's concurrency with -race.
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
		})
	}
}
