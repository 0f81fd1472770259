package sweep

import (
	"runtime"
	"testing"
)

// BenchmarkSweepRuns measures complete runs of the ready scenario success
// (a 5-step canary analysis, ten minutes of scenario time) a second, on
// every CPU: one op is one run. runs/s/core divides by the workers.
func BenchmarkSweepRuns(b *testing.B) {
	base := ready(b, "success")
	workers := runtime.GOMAXPROCS(0)
	b.ReportAllocs()
	b.ResetTimer()
	res, err := Run(b.Context(), base, nil, Options{Runs: b.N, Workers: workers, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if p := res.Points[0]; p.Promoted < b.N*9/10 {
		b.Fatalf("%d of %d runs promoted", p.Promoted, b.N)
	}
	rate := float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "runs/s")
	b.ReportMetric(rate/float64(workers), "runs/s/core")
}
