package metricstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Clock is the time source of a Scraper. The local engine uses WallClock;
// the sim engine and tests inject a clock whose ticker they drive, so a
// scrape loop never waits through real intervals.
type Clock interface {
	Now() time.Time
	NewTicker(d time.Duration) Ticker
}

// Ticker is the part of *time.Ticker a Scraper uses. The time received
// from C is the scrape timestamp.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

// WallClock returns the real clock (time.Now, time.NewTicker).
func WallClock() Clock { return wallClock{} }

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (wallClock) NewTicker(d time.Duration) Ticker { return wallTicker{time.NewTicker(d)} }

type wallTicker struct{ t *time.Ticker }

func (w wallTicker) C() <-chan time.Time { return w.t.C }
func (w wallTicker) Stop()               { w.t.Stop() }

// ScrapeResult is the outcome of scraping one target once.
type ScrapeResult struct {
	Target  ScrapeTarget
	Time    time.Time
	Samples int
	Err     error
}

// Scraper scrapes a fixed set of targets into a Store every Interval, as
// a Prometheus scrape pool does, minus the per-target start offset: all
// targets are scraped at once, first at Clock.Now() and then at each
// tick, concurrently, and the next tick is taken only when every scrape of
// the previous one has finished (a slow target makes ticks be skipped,
// like time.Ticker drops them).
type Scraper struct {
	Store    *Store
	Targets  []ScrapeTarget
	Interval time.Duration
	// Timeout bounds each scrape; 0 means min(Interval, 10s), Prometheus'
	// default scrape_timeout capped at the interval as Prometheus requires.
	Timeout time.Duration
	// Clock defaults to WallClock.
	Clock Clock
	// OnScrape, if set, receives every result of a round in target order,
	// after the round, from Run's goroutine: a place to log failures.
	OnScrape func(ScrapeResult)
}

// Run scrapes until ctx ends, then returns ctx.Err() once all its
// scrapes have returned; it starts no goroutine that outlives it. It
// returns early with an error if the configuration is invalid or the
// Store is closed.
func (sc *Scraper) Run(ctx context.Context) error {
	if sc.Store == nil {
		return errors.New("metricstore: scraper has no store")
	}
	if sc.Interval <= 0 {
		return fmt.Errorf("metricstore: scrape interval %v is not positive", sc.Interval)
	}
	clock := sc.Clock
	if clock == nil {
		clock = WallClock()
	}
	timeout := sc.Timeout
	if timeout <= 0 {
		timeout = min(sc.Interval, DefaultScrapeTimeout)
	}
	ticker := clock.NewTicker(sc.Interval)
	defer ticker.Stop()
	results := make([]ScrapeResult, len(sc.Targets))

	t := clock.Now()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := sc.round(ctx, t, timeout, results); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case t = <-ticker.C():
		}
	}
}

// round scrapes every target at t and waits for all of them.
func (sc *Scraper) round(ctx context.Context, t time.Time, timeout time.Duration, results []ScrapeResult) error {
	var wg sync.WaitGroup
	for i, tgt := range sc.Targets {
		wg.Go(func() {
			sctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			n, err := sc.Store.Scrape(sctx, tgt, t)
			results[i] = ScrapeResult{Target: tgt, Time: t, Samples: n, Err: err}
		})
	}
	wg.Wait()
	for _, r := range results {
		if errors.Is(r.Err, ErrClosed) {
			return r.Err
		}
		if sc.OnScrape != nil {
			sc.OnScrape(r)
		}
	}
	return nil
}
