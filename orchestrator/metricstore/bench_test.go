package metricstore

import (
	"context"
	"testing"
	"time"
)

// benchWorkloads is a canary and its primary with Istio's default latency
// buckets up to 10 s: 2 code series and 14 bucket series each.
func benchWorkloads() []workloadTraffic {
	buckets := func(scale float64) map[string]float64 {
		m := map[string]float64{}
		cum := 0.0
		for i, le := range []string{"0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000"} {
			cum += scale * float64(13-i)
			m[le] = cum
		}
		m["+Inf"] = cum
		return m
	}
	return []workloadTraffic{
		{name: "podinfo", codes: map[string]float64{"200": 80, "500": 11}, buckets: buckets(1)},
		{name: "podinfo-primary", codes: map[string]float64{"200": 900, "500": 10}, buckets: buckets(10)},
	}
}

func BenchmarkOpenClose(b *testing.B) {
	b.Run("own-engine", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s, err := Open(Options{})
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("shared-engine", func(b *testing.B) {
		ng := NewEngine(nil)
		b.ReportAllocs()
		for b.Loop() {
			s, err := Open(Options{Engine: ng})
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSimRun is one short simulated analysis: open, 2 minutes of
// 5 s-spaced samples for both workloads, both builtin queries, close.
func BenchmarkSimRun(b *testing.B) {
	ng := NewEngine(nil)
	success := renderIstio(istioSuccessRateTemplate, "test", "podinfo", "1m")
	duration := renderIstio(istioDurationTemplate, "test", "podinfo", "1m")
	end := t0.Add(2 * time.Minute)
	b.ReportAllocs()
	for b.Loop() {
		s, err := Open(Options{Engine: ng})
		if err != nil {
			b.Fatal(err)
		}
		feedIstio(b, s, "test", t0, end, 5*time.Second, benchWorkloads())
		for _, q := range []string{success, duration} {
			if _, err := s.Query(context.Background(), q, end); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIstioQueries evaluates Flagger's builtin queries over 10
// minutes of 1 s-spaced samples for a canary and its primary.
func BenchmarkIstioQueries(b *testing.B) {
	s := openTestStore(b, Options{})
	end := t0.Add(10 * time.Minute)
	feedIstio(b, s, "test", t0, end, time.Second, benchWorkloads())
	for _, q := range []struct{ name, tmpl string }{
		{"request-success-rate", istioSuccessRateTemplate},
		{"request-duration", istioDurationTemplate},
	} {
		query := renderIstio(q.tmpl, "test", "podinfo", "1m")
		b.Run(q.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Query(context.Background(), query, end); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
