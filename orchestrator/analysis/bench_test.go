package analysis

import (
	"context"
	"testing"
	"time"
)

// BenchmarkTick is the cost of one analysis tick in the steady state of a
// progressing canary with the two builtin metrics (queries answered at
// once): the machine's own overhead per interval.
func BenchmarkTick(b *testing.B) {
	env := newFakeEnv()
	an := Spec{Threshold: 5, StepWeights: []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, Metrics: builtinMetrics()}
	m, err := New(podinfo(an), env)
	if err != nil {
		b.Fatal(err)
	}
	ctx, now := context.Background(), time.Now()
	m.Tick(ctx, now)
	m.SetTarget("2")
	m.Tick(ctx, now)
	b.ReportAllocs()
	for b.Loop() {
		// Stay at weight 1: every tick analyses and advances one step,
		// then steps back, so each iteration is a full analysing tick.
		env.primary, env.canary = 99, 1
		m.status.CanaryWeight, m.status.Iterations = 1, 0
		env.queries = env.queries[:0]
		m.Tick(ctx, now)
	}
}

// BenchmarkRun is a whole ten-step canary analysis, detection to
// Succeeded, with the builtin metrics: what the sim engine pays per run
// besides the metric store.
func BenchmarkRun(b *testing.B) {
	an := Spec{Threshold: 5, StepWeight: 10, Metrics: builtinMetrics()}
	ctx, now := context.Background(), time.Now()
	b.ReportAllocs()
	for b.Loop() {
		env := newFakeEnv()
		m, err := New(podinfo(an), env)
		if err != nil {
			b.Fatal(err)
		}
		m.Tick(ctx, now)
		m.SetTarget("2")
		for i := 0; i < 20 && !m.Status().Phase.Final(); i++ {
			env.queries = env.queries[:0]
			m.Tick(ctx, now)
		}
		if m.Status().Phase != PhaseSucceeded {
			b.Fatalf("phase %s", m.Status().Phase)
		}
	}
}
