package metricstore

import (
	"context"
	"errors"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// fakeClock hands out one ticker whose ticks the test sends by hand.
type fakeClock struct {
	now     time.Time
	ticks   chan time.Time
	stopped atomic.Bool
}

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) NewTicker(time.Duration) Ticker { return fakeTicker{c} }

type fakeTicker struct{ c *fakeClock }

func (t fakeTicker) C() <-chan time.Time { return t.c.ticks }
func (t fakeTicker) Stop()               { t.c.stopped.Store(true) }

func TestScraperRunsOnInjectedClockAndStopsCleanly(t *testing.T) {
	baseline := runtime.NumGoroutine()

	m := newPodMetrics()
	srv := httptest.NewServer(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	s, err := Open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: t0, ticks: make(chan time.Time)}
	results := make(chan ScrapeResult, 16)
	sc := &Scraper{
		Store:    s,
		Interval: 5 * time.Second,
		Clock:    clock,
		Targets: []ScrapeTarget{
			{Job: "podinfo", Instance: "canary", URL: srv.URL + "/metrics"},
			{Job: "podinfo", Instance: "primary", URL: srv.URL + "/metrics"},
		},
		OnScrape: func(r ScrapeResult) { results <- r },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sc.Run(ctx) }()

	// One round per timestamp: the first at Clock.Now(), then one per tick.
	m.requests.WithLabelValues("200").Add(100)
	for i, at := range []time.Time{t0, t0.Add(5 * time.Second), t0.Add(10 * time.Second)} {
		if i > 0 {
			m.requests.WithLabelValues("200").Add(50)
			clock.ticks <- at
		}
		seen := map[string]bool{}
		for range sc.Targets {
			r := <-results
			if r.Err != nil || !r.Time.Equal(at) {
				t.Fatalf("round %d: result %+v, want a success at %v", i, r, at)
			}
			seen[r.Target.Instance] = true
		}
		if !seen["canary"] || !seen["primary"] {
			t.Fatalf("round %d scraped %v, want both targets", i, seen)
		}
	}

	// Three rounds at 5 s spacing: 3 up samples per target, and a rate of
	// 50 per 5 s = 10/s (first sample 100, zero point 10 s back: the 5 s
	// extrapolation to the window start is not cut).
	at := t0.Add(10 * time.Second)
	if got := queryValue(t, s, `sum(count_over_time(up[1m]))`, at); got != 6 {
		t.Errorf("up samples = %v, want 6", got)
	}
	if got := queryValue(t, s, `rate(http_requests_total{instance="canary"}[15s])`, at); got != 10 {
		t.Errorf("rate = %v, want 10", got)
	}

	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if !clock.stopped.Load() {
		t.Error("ticker not stopped")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	srv.Close()

	// No goroutine of Run, its scrapes or their connections survives.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before the test:\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestScraperStopsWhenStoreCloses(t *testing.T) {
	s, err := Open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := newPodMetrics()
	srv := httptest.NewServer(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	clock := &fakeClock{now: t0, ticks: make(chan time.Time, 1)}
	sc := &Scraper{Store: s, Interval: time.Second, Clock: clock, Targets: []ScrapeTarget{{Job: "j", URL: srv.URL}}}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sc.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Run on a closed store: %v, want ErrClosed", err)
	}
}

func TestScraperRejectsBadConfig(t *testing.T) {
	s := openTestStore(t, Options{})
	for _, sc := range []*Scraper{{Interval: time.Second}, {Store: s}} {
		if err := sc.Run(context.Background()); err == nil {
			t.Errorf("Run(%+v) succeeded", sc)
		}
	}
}
