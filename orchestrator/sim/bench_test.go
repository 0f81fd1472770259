package sim

import (
	"context"
	"testing"

	"github.com/canarylab/canarylab/orchestrator/metricstore"
	"github.com/canarylab/canarylab/orchestrator/report"
	"github.com/canarylab/canarylab/orchestrator/scenario"
	"github.com/canarylab/canarylab/scenarios"
)

// BenchmarkRun is one complete run of the ready scenario success (a
// ten-step analysis to promotion, both builtin metrics, 20 rps) in
// virtual time, with a shared PromQL engine as a sweep has.
func BenchmarkRun(b *testing.B) {
	data, _ := scenarios.Get("success")
	s, err := scenario.Parse(data)
	if err != nil {
		b.Fatal(err)
	}
	eng := metricstore.NewEngine(nil)
	b.ReportAllocs()
	i := uint64(0)
	for b.Loop() {
		i++
		rec := report.NewRecorder(s, "", Name, 0, nil)
		if err := New(Options{Seed: i, Engine: eng}).Run(context.Background(), s, rec); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "runs/s")
}
