package boomercompat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/myzhan/boomer"

	"github.com/canarylab/canarylab/loadgen"
	"github.com/canarylab/canarylab/loadgen/stats"
)

// DefaultClass is the user class boomer tasks run as: the class of
// boomer's own dummy locustfile, so a master started for boomer workers
// needs no change.
const DefaultClass = "Dummy"

// Options configure a pool of boomer users.
type Options struct {
	// Class is the user class name the pool runs as (DefaultClass if
	// empty). Users of any class a master asks for run the tasks.
	Class string
	// RateLimiter, if set, limits how often tasks run, across all users,
	// as boomer's --max-rps and --request-increase-rate do; the pool
	// starts it when the first user starts and stops it on Close.
	RateLimiter boomer.RateLimiter
	// Seed makes the task choices reproducible (0: random).
	Seed uint64
	// Logger receives task panics (default slog.Default()).
	Logger *slog.Logger
}

// maxLoggedPanics bounds the log: a task that panics on every call would
// otherwise write a stack trace per call.
const maxLoggedPanics = 10

// Users is a pool of users that run boomer tasks, for a locust.Worker or
// loadgen's closed model. Each user picks a task by weight (uniformly when
// no task has a weight, as boomer does), runs its Fn, and again, until it
// is stopped; a running Fn is not interrupted (boomer's tasks take no
// context), so stopping waits for it to return. What the tasks record goes
// to the pool's stats. While a pool is open it owns boomer's
// package-level recording (one pool per process); Close gives it back.
type Users struct {
	*loadgen.Pool
	rec     *recorder
	limiter boomer.RateLimiter
	started atomic.Bool
	panics  atomic.Int64
	closing sync.Once
	log     *slog.Logger
}

// NewUsers prepares a pool that runs tasks and records to st; no user
// runs until SetCounts.
func NewUsers(tasks []*boomer.Task, st *stats.Stats, opts Options) (*Users, error) {
	if len(tasks) == 0 {
		return nil, errors.New("boomercompat: no tasks (give at least one *boomer.Task)")
	}
	total := 0
	for i, t := range tasks {
		switch {
		case t == nil:
			return nil, fmt.Errorf("boomercompat: tasks[%d] is nil", i)
		case t.Fn == nil:
			return nil, fmt.Errorf("boomercompat: tasks[%d] (%q) has no Fn", i, t.Name)
		case t.Weight < 0:
			return nil, fmt.Errorf("boomercompat: tasks[%d] (%q) has a negative Weight (%d); use 0 or more", i, t.Name, t.Weight)
		}
		total += t.Weight
	}
	if st == nil {
		return nil, errors.New("boomercompat: no stats (give a *stats.Stats)")
	}
	class := opts.Class
	if class == "" {
		class = DefaultClass
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	rec, err := installRecorder(st)
	if err != nil {
		return nil, err
	}
	u := &Users{rec: rec, limiter: opts.RateLimiter, log: log}
	u.Pool = loadgen.NewPool([]string{class}, func(ctx context.Context, _ string, r *rand.Rand) {
		u.startLimiter()
		for ctx.Err() == nil {
			if u.limiter != nil && u.limiter.Acquire() {
				continue // blocked: boomer asks again
			}
			u.safeRun(pick(tasks, total, r))
		}
	}, opts.Seed)
	return u, nil
}

// pick chooses a task as boomer's runner does: by weight, or uniformly
// when the weights sum to zero.
func pick(tasks []*boomer.Task, total int, r *rand.Rand) *boomer.Task {
	if len(tasks) == 1 {
		return tasks[0]
	}
	if total <= 0 {
		return tasks[r.IntN(len(tasks))]
	}
	n := r.IntN(total)
	for _, t := range tasks {
		if n < t.Weight {
			return t
		}
		n -= t.Weight
	}
	return tasks[len(tasks)-1]
}

func (u *Users) startLimiter() {
	if u.limiter != nil && u.started.CompareAndSwap(false, true) {
		u.limiter.Start()
	}
}

// safeRun runs a task's Fn; a panic is logged (the first few) and the
// user goes on, as in boomer.
func (u *Users) safeRun(t *boomer.Task) {
	defer func() {
		if p := recover(); p != nil {
			if n := u.panics.Add(1); n <= maxLoggedPanics {
				u.log.Error("boomer task panicked", "task", t.Name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				if n == maxLoggedPanics {
					u.log.Error("further task panics are counted, not logged")
				}
			}
		}
	}()
	t.Fn()
}

// Panics returns how many times a task panicked.
func (u *Users) Panics() int64 { return u.panics.Load() }

// StopAll stops every user, waits for their running Fn to return and for
// what they recorded to be in the stats, and publishes boomer's
// "boomer:stop" event for task code that listens.
func (u *Users) StopAll() {
	u.Pool.StopAll()
	u.rec.flush()
	boomer.Events.Publish("boomer:stop")
}

// Close stops every user, publishes "boomer:quit", stops the rate limiter
// and gives boomer's recording back. Records made before it are all in
// the stats when it returns.
// Closing again does nothing.
func (u *Users) Close() {
	u.closing.Do(func() {
		u.StopAll()
		boomer.Events.Publish("boomer:quit")
		if u.started.Load() {
			u.limiter.Stop()
		}
		u.rec.uninstall()
	})
}
