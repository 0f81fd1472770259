package loadgen

import (
	"context"
	"time"
)

// arrivalWaiter sleeps the open model's dispatcher until the next arrival.
type arrivalWaiter interface {
	// wait sleeps d and reports false when ctx ended first.
	wait(ctx context.Context, d time.Duration) bool
	close()
}

// timerWaiter sleeps on a Go timer: within a millisecond (see
// timerfdWaiter), where nothing better is at hand.
type timerWaiter struct{ t *time.Timer }

func newTimerWaiter(context.Context) arrivalWaiter {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &timerWaiter{t: t}
}

func (w *timerWaiter) wait(ctx context.Context, d time.Duration) bool {
	w.t.Reset(d)
	select {
	case <-ctx.Done():
		w.t.Stop()
		return false
	case <-w.t.C:
		return true
	}
}

func (w *timerWaiter) close() { w.t.Stop() }
