package loadgen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
)

// UserFunc is one simulated user's life: it runs until ctx ends. class is
// the class the user runs (the fallback's, for a class the pool does not
// know); r is the user's own random source, seeded from the pool's seed
// and the user's sequence number.
type UserFunc func(ctx context.Context, class string, r *rand.Rand)

// Pool keeps users of named classes running and moves them to absolute
// per-class counts without touching the users that stay, so a ramp never
// restarts anyone or loses statistics. What a user does is the pool's
// UserFunc: a plan's tasks (Users) or other code (loadgen/boomercompat).
type Pool struct {
	names []string
	run   UserFunc

	// stopping, if set, runs in StopAll once every user is told to stop
	// and before it waits for them: the place to interrupt what users
	// cannot be interrupted in (Users: requests in flight in fasthttp).
	stopping func()

	mu      sync.Mutex
	running map[string][]*user
	seed    uint64
	seq     uint64
	wg      sync.WaitGroup
}

type user struct {
	cancel context.CancelFunc
}

// NewPool returns a pool of users of the given classes, each running run;
// seed makes their random sources reproducible (0: random).
func NewPool(classes []string, run UserFunc, seed uint64) *Pool {
	if seed == 0 {
		seed = rand.Uint64()
	}
	return &Pool{names: slices.Clone(classes), run: run, running: map[string][]*user{}, seed: seed}
}

// Classes returns the pool's class names in order.
func (p *Pool) Classes() []string { return slices.Clone(p.names) }

// Has reports whether the pool knows a class.
func (p *Pool) Has(name string) bool { return slices.Contains(p.names, name) }

// Counts returns how many users of each class run.
func (p *Pool) Counts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.running))
	for name, us := range p.running {
		out[name] = len(us)
	}
	return out
}

// Total returns how many users run.
func (p *Pool) Total() int {
	n := 0
	for _, c := range p.Counts() {
		n += c
	}
	return n
}

// SetCounts starts or stops users until each class has the given count;
// a class not in counts goes to zero. Users of an unknown class run as
// fallback (a class of the pool), if given; they are still counted under
// the name asked for, so a Locust master sees the counts it sent. A user
// stopped here is told to stop and not waited for: it may be finishing a
// request that takes no context (up to its timeout), and a ramp down must
// not hold up the pool, nor a Locust worker's heartbeats; StopAll waits for
// every user, stopped here or not.
func (p *Pool) SetCounts(ctx context.Context, counts map[string]int, fallback string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if fallback != "" && !p.Has(fallback) {
		return fmt.Errorf("fallback user class %q is not one of %s", fallback, strings.Join(p.names, ", "))
	}
	want := map[string]int{}
	for name, n := range counts {
		if n < 0 {
			return fmt.Errorf("user count of %s is negative (%d)", name, n)
		}
		if !p.Has(name) && fallback == "" {
			return fmt.Errorf("no user class %q (there are %s)", name, strings.Join(p.names, ", "))
		}
		want[name] = n
	}
	for name := range p.running {
		if _, ok := want[name]; !ok {
			want[name] = 0
		}
	}
	for name, n := range want {
		class := name
		if !p.Has(name) {
			class = fallback
		}
		cur := p.running[name]
		for len(cur) < n {
			cur = append(cur, p.spawn(ctx, class))
		}
		if len(cur) > n {
			for _, us := range cur[n:] {
				us.cancel()
			}
			cur = cur[:n]
		}
		if n == 0 {
			delete(p.running, name)
		} else {
			p.running[name] = cur
		}
	}
	return nil
}

func (p *Pool) spawn(parent context.Context, class string) *user {
	ctx, cancel := context.WithCancel(parent)
	us := &user{cancel: cancel}
	p.seq++
	r := rand.New(rand.NewPCG(p.seed, p.seq))
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.run(ctx, class, r)
	}()
	return us
}

// StopAll stops every user and waits for them.
func (p *Pool) StopAll() {
	p.mu.Lock()
	for _, us := range p.running {
		for _, one := range us {
			one.cancel()
		}
	}
	p.running = map[string][]*user{}
	if p.stopping != nil {
		p.stopping()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
