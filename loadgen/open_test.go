package loadgen

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/canarylab/canarylab/loadgen/stats"
	"github.com/canarylab/canarylab/mockserver"
	"github.com/canarylab/canarylab/mockserver/behavior"
)

func TestScheduleArrivals(t *testing.T) {
	ptr := func(f float64) *float64 { return &f }
	tests := []struct {
		name  string
		opts  OpenOptions
		total int64 // arrivals in the whole schedule
		check map[int64]time.Duration
	}{
		{"constant", OpenOptions{Stages: ConstantRate(100, 2*time.Second)}, 200,
			map[int64]time.Duration{0: 0, 1: 10 * time.Millisecond, 150: 1500 * time.Millisecond}},
		// 0 → 100 rps over 2 s: 100 arrivals, the n-th at sqrt(n/25) s.
		{"ramp", OpenOptions{StartRate: ptr(0), Stages: []RateStage{{2 * time.Second, 100}}}, 100,
			map[int64]time.Duration{25: time.Second, 1: 200 * time.Millisecond}},
		// 10 rps for 1 s, then up to 30 rps over 1 s (20 arrivals), then 30 for 1 s.
		{"stages", OpenOptions{Stages: []RateStage{{time.Second, 10}, {time.Second, 30}, {time.Second, 30}}}, 60,
			map[int64]time.Duration{10: time.Second, 30: 2 * time.Second, 45: 2500 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := newSchedule(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			var n int64
			prev := time.Duration(-1)
			for ; ; n++ {
				off, ok := s.at(n)
				if !ok {
					break
				}
				if off < prev {
					t.Fatalf("arrival %d at %v is before arrival %d at %v", n, off, n-1, prev)
				}
				prev = off
			}
			if math.Abs(float64(n-tt.total)) > 1 {
				t.Errorf("%d arrivals, want %d", n, tt.total)
			}
			for k, want := range tt.check {
				got, ok := s.at(k)
				if !ok || (got-want).Abs() > time.Millisecond {
					t.Errorf("arrival %d at %v (%v), want %v", k, got, ok, want)
				}
			}
		})
	}
	if _, err := newSchedule(OpenOptions{}); err == nil {
		t.Error("an empty schedule must be refused")
	}
	if _, err := newSchedule(OpenOptions{Stages: []RateStage{{0, 5}}}); err == nil {
		t.Error("a stage without a duration must be refused")
	}
}

// TestOpenModelPacesAndCorrectsForCoordinatedOmission runs at a modest
// rate against a server that answers after a fixed 20 ms: the schedule is
// kept (bounds are generous, this is not a benchmark), and latencies count
// from the intended start, so none is below the server's delay.
func TestOpenModelPacesAndCorrectsForCoordinatedOmission(t *testing.T) {
	lat := behavior.Latency{}
	d := behavior.Duration(20 * time.Millisecond)
	lat.Fixed = &d
	run := startMock(t, mockserver.Config{Profile: behavior.Profile{Latency: &lat}})
	p := mustPlan(t, `users: [{name: U, tasks: [{request: {path: /}}]}]`)
	st := stats.New(nil)
	res, err := RunOpen(context.Background(), p, st, Options{Host: run.URL(), Seed: 1},
		OpenOptions{Stages: ConstantRate(200, time.Second), MaxConcurrency: 100})
	if err != nil {
		t.Fatal(err)
	}
	if res.Intended < 199 || res.Intended > 201 || res.Sent+res.Dropped != res.Intended {
		t.Errorf("intended %d sent %d dropped %d, want 200 planned and every one sent or dropped", res.Intended, res.Sent, res.Dropped)
	}
	if res.Dropped != 0 {
		t.Errorf("%d dropped with 100 slots for ~4 requests in flight", res.Dropped)
	}
	snap := st.Cumulative()
	if snap.Total.NumRequests != res.Sent || snap.Total.NumFailures != 0 {
		t.Errorf("stats %d requests %d failures, sent %d", snap.Total.NumRequests, snap.Total.NumFailures, res.Sent)
	}
	if q := snap.Total.Quantile(0); q < 20*time.Millisecond {
		t.Errorf("min latency %v is below the server's 20ms delay", q)
	}
	if rate := res.AchievedRate(); rate < 150 || rate > 250 {
		t.Errorf("achieved %.1f rps of 200", rate)
	}
}

// TestOpenModelDropsWhenSaturated: with 2 slots and 100 ms answers the
// server takes 20 requests a second; at 100 a second most arrivals are
// dropped and counted, and the run still ends on time.
func TestOpenModelDropsWhenSaturated(t *testing.T) {
	lat := behavior.Latency{}
	d := behavior.Duration(100 * time.Millisecond)
	lat.Fixed = &d
	run := startMock(t, mockserver.Config{Profile: behavior.Profile{Latency: &lat}})
	p := mustPlan(t, `users: [{name: U, tasks: [{request: {path: /}}]}]`)
	res, err := RunOpen(context.Background(), p, stats.New(nil), Options{Host: run.URL()},
		OpenOptions{Stages: ConstantRate(100, 500*time.Millisecond), MaxConcurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Dropped < 30 || res.Sent > 20 {
		t.Errorf("sent %d dropped %d of %d: want most dropped", res.Sent, res.Dropped, res.Intended)
	}
	if res.Elapsed > 2*time.Second {
		t.Errorf("a 0.5 s schedule took %v", res.Elapsed)
	}
}

func TestOpenModelStopsOnCancel(t *testing.T) {
	run := startMock(t, mockserver.Config{})
	p := mustPlan(t, `users: [{name: U, tasks: [{request: {path: /}}]}]`)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := RunOpen(ctx, p, stats.New(nil), Options{Host: run.URL()}, OpenOptions{Stages: ConstantRate(100, time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 5*time.Second || res.Intended > 100 {
		t.Errorf("cancel after 200ms: ran %v, %d arrivals", time.Since(start), res.Intended)
	}
}
