package loadgen

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/canarylab/canarylab/loadgen/plan"
	"github.com/canarylab/canarylab/loadgen/stats"
)

// RateStage is one stage of an open-model schedule: over Duration the
// arrival rate moves linearly from the previous stage's target (the first
// stage starts at its own target unless From is set) to Target.
type RateStage struct {
	Duration time.Duration
	Target   float64 // requests per second at the end of the stage
}

// OpenOptions configure an open-model run.
type OpenOptions struct {
	// Stages give the arrival rate over time; one stage with a constant
	// rate is the common case (ConstantRate builds it).
	Stages []RateStage
	// StartRate is the rate at the start of the first stage (default: the
	// first stage's target, so a single stage is a constant rate).
	StartRate *float64
	// MaxConcurrency bounds requests in flight; an arrival that finds
	// them all busy is dropped and counted (default 1000).
	MaxConcurrency int
	// LateAfter is how far behind its intended start a request may begin
	// before it counts as late (default 1ms).
	LateAfter time.Duration
}

// ConstantRate is a schedule of rate requests a second for d.
func ConstantRate(rate float64, d time.Duration) []RateStage {
	return []RateStage{{Duration: d, Target: rate}}
}

// OpenResult counts what the schedule asked for and what happened.
type OpenResult struct {
	// Intended is the number of arrivals the schedule planned.
	Intended int64 `json:"intended"`
	// Sent is the number of requests started.
	Sent int64 `json:"sent"`
	// Late counts requests that started more than LateAfter after their
	// intended time; their latency still counts from the intended time.
	Late int64 `json:"late"`
	// Dropped counts arrivals that found MaxConcurrency requests in flight.
	Dropped int64 `json:"dropped"`
	// Elapsed is the run's length.
	Elapsed time.Duration `json:"elapsed"`
	// SendError is the distribution of (actual start - intended start) in
	// microseconds.
	SendError *hdr.Histogram `json:"-"`
}

// AchievedRate is requests started per second.
func (r OpenResult) AchievedRate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Sent) / r.Elapsed.Seconds()
}

// schedule turns rate stages into arrival times.
type schedule struct {
	starts []time.Duration // stage start offsets
	stages []RateStage
	from   []float64 // rate at each stage's start
	counts []float64 // arrivals before each stage
	total  time.Duration
}

func newSchedule(o OpenOptions) (*schedule, error) {
	if len(o.Stages) == 0 {
		return nil, fmt.Errorf("open model: give a rate (--rate) or stages")
	}
	s := &schedule{}
	prev := o.Stages[0].Target
	if o.StartRate != nil {
		prev = *o.StartRate
	}
	var count float64
	for i, st := range o.Stages {
		if st.Duration <= 0 {
			return nil, fmt.Errorf("open model: stages[%d]: duration must be positive", i)
		}
		if st.Target < 0 || math.IsNaN(st.Target) || prev < 0 {
			return nil, fmt.Errorf("open model: stages[%d]: rate must not be negative", i)
		}
		s.starts = append(s.starts, s.total)
		s.stages = append(s.stages, st)
		s.from = append(s.from, prev)
		s.counts = append(s.counts, count)
		count += (prev + st.Target) / 2 * st.Duration.Seconds()
		s.total += st.Duration
		prev = st.Target
	}
	return s, nil
}

// at returns the offset of the n-th arrival (from 0), or false after the
// schedule's end. Within a stage the rate is r(t) = a + b·t, so the
// arrivals by t are a·t + b·t²/2, solved for t.
func (s *schedule) at(n int64) (time.Duration, bool) {
	k := float64(n)
	i := sort.Search(len(s.counts), func(i int) bool { return s.counts[i] > k }) - 1
	if i < 0 {
		i = 0
	}
	st := s.stages[i]
	a := s.from[i]
	b := (st.Target - a) / st.Duration.Seconds()
	need := k - s.counts[i]
	var t float64
	switch {
	case b == 0 && a == 0:
		return 0, false
	case b == 0:
		t = need / a
	default:
		disc := a*a + 2*b*need
		if disc < 0 {
			return 0, false
		}
		t = (-a + math.Sqrt(disc)) / b
	}
	off := s.starts[i] + time.Duration(t*float64(time.Second))
	if off >= s.total || t > st.Duration.Seconds() {
		return 0, false
	}
	return off, true
}

// RunOpen sends the plan's requests at the scheduled arrival rate until
// the schedule ends or ctx does, then waits for requests in flight. Each
// arrival picks a user class by weight and a task by weight; its latency
// is measured from the intended start, so a slow server cannot hide its
// slowness by slowing the load (coordinated omission).
func RunOpen(ctx context.Context, p plan.Plan, st *stats.Stats, opts Options, o OpenOptions) (OpenResult, error) {
	sched, err := newSchedule(o)
	if err != nil {
		return OpenResult{}, err
	}
	classes, names, err := compileClasses(p, opts.Host)
	if err != nil {
		return OpenResult{}, err
	}
	maxConc := o.MaxConcurrency
	if maxConc <= 0 {
		maxConc = 1000
	}
	lateAfter := o.LateAfter
	if lateAfter <= 0 {
		lateAfter = time.Millisecond
	}
	client := opts.Client
	if client == nil {
		client = NewClient(maxConc)
	}
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	r := rand.New(rand.NewPCG(seed, 0x6f70656e))
	var cum []int
	total := 0
	for _, u := range p.Users {
		total += max(1, u.Weight)
		cum = append(cum, total)
	}

	res := OpenResult{SendError: hdr.New(1, int64(time.Minute/time.Microsecond), 3)}
	var sent, late, dropped atomic.Int64
	var errMu sync.Mutex
	sem := make(chan struct{}, maxConc)
	var wg sync.WaitGroup
	waiter := newArrivalWaiter(ctx)
	defer waiter.close()
	begin := time.Now()
	var n int64
loop:
	for ; ; n++ {
		off, ok := sched.at(n)
		if !ok {
			break
		}
		intended := begin.Add(off)
		// Sleep only when the next arrival is far enough ahead for a
		// timer to be worth it; otherwise go at once (and catch up).
		if wait := time.Until(intended); wait > 50*time.Microsecond {
			if !waiter.wait(ctx, wait) {
				break loop
			}
		} else if ctx.Err() != nil {
			break loop
		}
		cls := classes[names[sort.SearchInts(cum, r.IntN(total)+1)]]
		t := cls.pick(r)
		select {
		case sem <- struct{}{}:
		default:
			dropped.Add(1)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			actual := time.Now()
			lag := actual.Sub(intended)
			if lag > lateAfter {
				late.Add(1)
			}
			errMu.Lock()
			_ = res.SendError.RecordValue(max(1, int64(lag/time.Microsecond)))
			errMu.Unlock()
			sent.Add(1)
			// Latency counts from the intended start, or from the actual
			// one when the request went out early (the dispatcher does not
			// sleep for less than 50 µs): never a negative response time.
			start := intended
			if actual.Before(intended) {
				start = actual
			}
			do(ctx, client, st, t, start)
		}()
	}
	res.Elapsed = time.Since(begin)
	wg.Wait()
	res.Intended, res.Sent, res.Late, res.Dropped = n, sent.Load(), late.Load(), dropped.Load()
	return res, nil
}
