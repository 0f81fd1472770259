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

// BenchmarkSweepHeap is one sweep of 100,000 runs of the ready scenario
// success per op (run it with -benchtime 1x; about a minute on 2 CPUs),
// reporting the live heap (after a collection) before the sweep, at its
// end with its result still held, and the largest sampled every 10,000
// runs: recycled stores and caches must keep it flat.
func BenchmarkSweepHeap(b *testing.B) {
	const runs = 100_000
	base := ready(b, "success")
	live := func() float64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return float64(m.HeapAlloc) / (1 << 20)
	}
	for b.Loop() {
		start := live()
		peak := start
		progress := func(done, _ int) {
			if done%10_000 == 0 {
				peak = max(peak, live())
			}
		}
		res, err := Run(b.Context(), base, nil, Options{Runs: runs, Workers: runtime.GOMAXPROCS(0), Seed: 1, Progress: progress})
		if err != nil {
			b.Fatal(err)
		}
		end := live()
		if p := res.Points[0]; p.Runs != runs || p.Promoted < runs*9/10 {
			b.Fatalf("%d runs, %d promoted", p.Runs, p.Promoted)
		}
		b.ReportMetric(start, "heap-start-MB")
		b.ReportMetric(end, "heap-end-MB")
		b.ReportMetric(peak, "heap-max-MB")
		b.ReportMetric(float64(runs)/b.Elapsed().Seconds(), "runs/s")
	}
}
