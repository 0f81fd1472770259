package local

import (
	"context"
	"sync"
	"time"

	"github.com/canarylab/canarylab/orchestrator/metricstore"
)

// grid is a run's real-time grid: the embedded Prometheus scrapes at
// origin + k·scrape and the analysis ticks at origin + j·interval, so that
// a tick falls on a scrape (the interval is a whole number of scrape
// intervals) and queries it once it is stored — the sim engine's model:
// a window (t-w, t] ends at a sample. Without it the two tickers started
// a few milliseconds apart, each tick queried while the scrape of the
// same instant was still being stored, and a window of two scrape
// intervals (a 10s metric interval at the default 5s scrape) held a
// single sample: "no values found" on almost every tick.
type grid struct {
	origin time.Time
	scrape time.Duration // real

	mu   sync.Mutex
	last time.Time     // the timestamp of the last scrape round stored
	next chan struct{} // closed when last advances
}

func newGrid(origin time.Time, scrape time.Duration) *grid {
	return &grid{origin: origin, scrape: scrape, next: make(chan struct{})}
}

// Now and NewTicker make the grid the scraper's metricstore.Clock: its
// first round at the origin, then one at each grid point.
func (g *grid) Now() time.Time { return g.origin }

func (g *grid) NewTicker(d time.Duration) metricstore.Ticker { return newGridTicker(g.origin, d) }

// scraped records a stored scrape round (the scraper's OnScrape, called
// after the whole round).
func (g *grid) scraped(t time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t.After(g.last) {
		g.last = t
		close(g.next)
		g.next = make(chan struct{})
	}
}

// wait waits until the round of the last grid point at or before t is
// stored, for at most max (a round the scraper dropped because it was
// behind never comes; the query then reads what there is, as Prometheus
// would after a missed scrape). It reports whether the round came.
func (g *grid) wait(ctx context.Context, t time.Time, max time.Duration) bool {
	want := g.origin.Add(t.Sub(g.origin) / g.scrape * g.scrape)
	timeout := time.NewTimer(max)
	defer timeout.Stop()
	for {
		g.mu.Lock()
		last, next := g.last, g.next
		g.mu.Unlock()
		if !last.Before(want) {
			return true
		}
		select {
		case <-next:
		case <-timeout.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// gridTicker sends origin + k·d (k ≥ 1) at those instants; like
// time.Ticker it drops ticks a slow receiver is not ready for, and it
// skips grid points that passed while it was not scheduled.
type gridTicker struct {
	c    chan time.Time
	stop chan struct{}
	once sync.Once
}

func newGridTicker(origin time.Time, d time.Duration) *gridTicker {
	t := &gridTicker{c: make(chan time.Time, 1), stop: make(chan struct{})}
	go t.run(origin, d)
	return t
}

func (t *gridTicker) run(origin time.Time, d time.Duration) {
	timer := time.NewTimer(time.Until(origin.Add(d)))
	defer timer.Stop()
	for k := time.Duration(1); ; {
		at := origin.Add(k * d)
		select {
		case <-t.stop:
			return
		case <-timer.C:
		}
		select {
		case t.c <- at:
		default:
		}
		k = max(k+1, time.Since(origin)/d+1)
		timer.Reset(time.Until(origin.Add(k * d)))
	}
}

func (t *gridTicker) C() <-chan time.Time { return t.c }

func (t *gridTicker) Stop() { t.once.Do(func() { close(t.stop) }) }
