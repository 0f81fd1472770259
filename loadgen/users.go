// Package loadgen generates HTTP load from a plan: users that loop over
// weighted tasks (the closed model, as Locust and boomer run), and evenly
// paced arrivals whose latency counts from the intended start (the open
// model, as wrk2 measures). Statistics go to loadgen/stats in Locust's
// format and in microseconds.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/canarylab/canarylab/loadgen/plan"
	"github.com/canarylab/canarylab/loadgen/stats"
)

// Options configure a Users pool or an open-model run.
type Options struct {
	// Host is the base URL; it wins over the plan's host.
	Host string
	// Client sends the requests; default: a client with keep-alive and
	// enough idle connections for the users.
	Client *http.Client
	// Seed makes task choices and waits reproducible (0: random).
	Seed uint64
}

// target is a compiled task: its request, ready to send.
type target struct {
	method  string
	url     string
	name    string
	body    string
	header  http.Header
	timeout time.Duration
	req     plan.Request
	// fast is the request compiled for fasthttp (closed model, plain
	// http); nil sends it through net/http.
	fast *fastTarget
	// index is the target's place in its class, of count.
	index, count int
}

// class is a compiled user class.
type class struct {
	name    string
	wait    plan.Wait
	targets []target
	cum     []int // cumulative task weights
}

func compileClasses(p plan.Plan, host string) (map[string]*class, []string, error) {
	classes := map[string]*class{}
	var names []string
	for i, u := range p.Users {
		base := host
		if base == "" {
			base = u.Host
		}
		if base == "" {
			base = p.Host
		}
		if base == "" {
			return nil, nil, fmt.Errorf("users[%d] (%s): no host: give --host or the plan's host", i, u.Name)
		}
		if err := plan.CheckHost(base); err != nil {
			return nil, nil, fmt.Errorf("users[%d] (%s): %w", i, u.Name, err)
		}
		c := &class{name: u.Name, wait: u.Wait}
		total := 0
		for _, t := range u.Tasks {
			h := http.Header{}
			for k, v := range t.Request.Headers {
				h.Set(k, v)
			}
			timeout := t.Request.Timeout.D()
			if timeout == 0 {
				timeout = plan.DefaultTimeout
			}
			c.targets = append(c.targets, target{
				method: t.Request.HTTPMethod(), url: strings.TrimSuffix(base, "/") + t.Request.Path,
				name: t.Request.StatsName(), body: t.Request.Body, header: h, timeout: timeout, req: t.Request,
				index: len(c.targets), count: len(u.Tasks),
			})
			total += max(1, t.Weight)
			c.cum = append(c.cum, total)
		}
		classes[u.Name] = c
		names = append(names, u.Name)
	}
	return classes, names, nil
}

func (c *class) pick(r *rand.Rand) *target {
	if len(c.targets) == 1 {
		return &c.targets[0]
	}
	n := r.IntN(c.cum[len(c.cum)-1])
	i := sort.SearchInts(c.cum, n+1)
	return &c.targets[i]
}

// do sends one request and records it; it reports false when ctx ended
// before the answer (the request is then not recorded: it was cancelled,
// not answered).
func do(ctx context.Context, client *http.Client, st *stats.Stats, t *target, start time.Time) bool {
	rctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	var body io.Reader
	if t.body != "" {
		body = strings.NewReader(t.body)
	}
	req, err := http.NewRequestWithContext(rctx, t.method, t.url, body)
	if err != nil {
		st.Failure(t.method, t.name, time.Since(start), 0, err.Error())
		return true
	}
	for k, v := range t.header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		st.Failure(t.method, t.name, time.Since(start), 0, describeError(err))
		return true
	}
	n, rerr := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	rt := time.Since(start)
	switch {
	case rerr != nil && ctx.Err() != nil:
		return false
	case rerr != nil:
		st.Failure(t.method, t.name, rt, n, describeError(rerr))
	case !t.req.Succeeded(resp.StatusCode):
		st.Failure(t.method, t.name, rt, n, fmt.Sprintf("HTTP %d", resp.StatusCode))
	default:
		st.Success(t.method, t.name, rt, n)
	}
	return true
}

// describeError shortens transport errors to what groups them: "connection
// reset by peer", "timeout", "EOF" rather than the full URL each time.
func describeError(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(msg, "Client.Timeout"):
		return "timeout"
	case strings.Contains(msg, "connection reset by peer"):
		return "connection reset by peer"
	case strings.Contains(msg, "connection refused"):
		return "connection refused"
	case errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(msg, "unexpected EOF"):
		return "unexpected EOF"
	case errors.Is(err, io.EOF) || strings.HasSuffix(msg, ": EOF"):
		return "EOF"
	}
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}

// Users is a pool of users that run a plan's tasks: each loops over its
// class's weighted tasks and waits, until the pool stops it.
type Users struct {
	*Pool
	pools map[string]*fastPool
}

// NewUsers prepares a pool for the plan; no user runs until SetCounts.
func NewUsers(p plan.Plan, st *stats.Stats, opts Options) (*Users, error) {
	classes, names, err := compileClasses(p, opts.Host)
	if err != nil {
		return nil, err
	}
	client := opts.Client
	pools := map[string]*fastPool{}
	if client == nil {
		client = NewClient(1024)
		// Plain http targets go through fasthttp (fast.go); an injected
		// client is used for everything.
		for _, c := range classes {
			for i := range c.targets {
				c.targets[i].fast = compileFast(&c.targets[i], pools)
			}
		}
	}
	u := &Users{pools: pools}
	u.Pool = NewPool(names, func(ctx context.Context, class string, r *rand.Rand) {
		loop(ctx, client, st, classes[class], r)
	}, opts.Seed)
	// Requests in flight through fasthttp take no context: StopAll
	// interrupts them on their connections once every user is told to stop.
	u.Pool.stopping = func() {
		for _, p := range pools {
			p.interrupt()
		}
	}
	return u, nil
}

// NewClient returns an HTTP client for load: keep-alive, maxConns idle
// connections per host, no redirects followed (a redirect is an answer).
func NewClient(maxConns int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = maxConns
	tr.MaxIdleConnsPerHost = maxConns
	tr.Proxy = nil // load goes to loopback, never through a proxy
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// StopAll stops every user, interrupting their requests in flight, and
// waits for them; the pool can then start users again.
func (u *Users) StopAll() {
	u.Pool.StopAll()
	for _, p := range u.pools {
		p.resume()
	}
}

// loop is one user's life: a task, a wait, until ctx ends.
func loop(ctx context.Context, client *http.Client, st *stats.Stats, cls *class, r *rand.Rand) {
	var fu fastUser
	defer fu.release()
	for ctx.Err() == nil {
		t := cls.pick(r)
		start := time.Now()
		var ok bool
		if t.fast != nil {
			ok = doFast(ctx, &fu, st, t, start)
		} else {
			ok = do(ctx, client, st, t, start)
		}
		if !ok {
			return
		}
		if w := cls.wait.Next(time.Since(start), r.Float64()); w > 0 {
			timer := time.NewTimer(w)
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
		}
	}
}

// Distribute splits n users over classes by weight, as evenly as whole
// numbers allow (largest remainders, ties to the earlier class), so every
// class with a weight gets its share.
func Distribute(p plan.Plan, n int) map[string]int {
	out := map[string]int{}
	if n <= 0 || len(p.Users) == 0 {
		return out
	}
	total := 0
	for _, u := range p.Users {
		total += max(1, u.Weight)
	}
	type rem struct {
		i    int
		frac float64
	}
	var rems []rem
	given := 0
	for i, u := range p.Users {
		exact := float64(n) * float64(max(1, u.Weight)) / float64(total)
		whole := int(exact)
		out[u.Name] = whole
		given += whole
		rems = append(rems, rem{i, exact - float64(whole)})
	}
	sort.SliceStable(rems, func(a, b int) bool { return rems[a].frac > rems[b].frac })
	for k := 0; given < n; k++ {
		out[p.Users[rems[k%len(rems)].i].Name]++
		given++
	}
	return out
}
