package loadgen

// Benchmarks of the load generator's hot path, in process.
//
//	go test -run='^$' -bench=. -benchmem ./loadgen/
//
//   - Stats*: recording one answered request (both tables, Locust's buckets
//     and the µs HDR histogram), from one goroutine and from many.
//   - UserLoop*: one iteration of a user's loop (pick a task, send it, read
//     the answer, record it, compute the wait) against an in-process
//     net/http server on 127.0.0.1 that answers what bench/baseline answers,
//     through fasthttp (and *NetHTTP: through net/http, as the open model
//     and injected clients do);
//     the server's own work is in the numbers too, so compare rows with each
//     other, not with bench/loadgen.sh's requests per CPU-second.
//   - OpenDispatch: the open model's dispatcher flat out (every arrival
//     already due): the schedule, the class and task choice, the
//     concurrency slot, a goroutine per request, the send-time error
//     histogram, and the request itself through an in-memory transport that
//     answers at once, so the network is not in it.
//   - OpenSchedule: computing one arrival time.
//
// The side-by-side comparison with boomer, wrk and Locust is
// bench/loadgen.sh (docs/benchmarks.md).

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canarylab/canarylab/bench/bare"
	"github.com/canarylab/canarylab/loadgen/plan"
	"github.com/canarylab/canarylab/loadgen/stats"
)

func BenchmarkStatsSuccess(b *testing.B) {
	st := stats.New(nil)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		st.Success(http.MethodGet, "/", time.Duration(300+i%700)*time.Microsecond, 45)
	}
}

// BenchmarkStatsSuccessNames spreads the requests over 8 names, as a plan
// with several tasks does.
func BenchmarkStatsSuccessNames(b *testing.B) {
	st := stats.New(nil)
	names := []string{"/", "/items/:id", "/orders", "/api/status", "/a", "/b", "/c", "/d"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		st.Success(http.MethodGet, names[i%len(names)], time.Duration(300+i%700)*time.Microsecond, 45)
	}
}

func BenchmarkStatsFailure(b *testing.B) {
	st := stats.New(nil)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		st.Failure(http.MethodGet, "/", time.Duration(300+i%700)*time.Microsecond, 0, "HTTP 503")
	}
}

// BenchmarkStatsSuccessParallel records from 32 goroutines at once (16 per
// GOMAXPROCS), as 32 users do: they all take the one lock.
func BenchmarkStatsSuccessParallel(b *testing.B) {
	st := stats.New(nil)
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			st.Success(http.MethodGet, "/", time.Duration(300+i%700)*time.Microsecond, 45)
			i++
		}
	})
}

func BenchmarkEntryLog(b *testing.B) {
	e := stats.NewEntry("/", http.MethodGet, time.Now())
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		e.Log(now, time.Duration(300+i%700)*time.Microsecond, 45, false)
	}
}

// benchUsers compiles the plan for the in-process server and returns its
// one class, a client as NewUsers makes it, and empty statistics; with
// lean, its requests are compiled for fasthttp, as NewUsers does.
func benchUsers(b *testing.B, doc string, lean bool) (*class, *http.Client, *stats.Stats) {
	b.Helper()
	srv := httptest.NewServer(bare.Handler())
	b.Cleanup(srv.Close)
	p, err := plan.Parse([]byte(doc))
	if err != nil {
		b.Fatal(err)
	}
	classes, names, err := compileClasses(p, srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	client := NewClient(1024)
	b.Cleanup(client.CloseIdleConnections)
	cls := classes[names[0]]
	if lean {
		pools := map[string]*fastPool{}
		for i := range cls.targets {
			cls.targets[i].fast = compileFast(&cls.targets[i], pools)
		}
		b.Cleanup(func() {
			for _, p := range pools {
				p.resume()
			}
		})
	}
	return cls, client, stats.New(nil)
}

// iterate is the body of loop (users.go), once: a task, its request, the
// wait it asks for (not slept).
func iterate(ctx context.Context, b *testing.B, client *http.Client, fu *fastUser, st *stats.Stats, cls *class, r *rand.Rand) {
	t := cls.pick(r)
	start := time.Now()
	var ok bool
	if t.fast != nil {
		ok = doFast(ctx, fu, st, t, start)
	} else {
		ok = do(ctx, client, st, t, start)
	}
	if !ok {
		b.Fatal("request cancelled")
	}
	_ = cls.wait.Next(time.Since(start), r.Float64())
}

func checkStats(b *testing.B, st *stats.Stats) {
	b.Helper()
	snap := st.Cumulative()
	if snap.Total.NumFailures > 0 {
		b.Fatalf("%d of %d requests failed: %v", snap.Total.NumFailures, snap.Total.NumRequests, snap.Errors)
	}
}

const benchPlanOne = `
users:
- {name: Bench, tasks: [{request: {path: /}}]}
`

// benchPlanMix is a plan with a header, a POST with a body, expected
// statuses and task weights.
const benchPlanMix = `
users:
- name: Bench
  tasks:
  - {weight: 5, request: {path: /, headers: {Accept: application/json}}}
  - {weight: 3, request: {path: /items/42, name: /items/:id, expect: [2xx]}}
  - {weight: 1, request: {method: POST, path: /orders, headers: {Content-Type: application/json}, body: '{"item": 42, "quantity": 1}'}}
`

func benchUserLoop(b *testing.B, doc string, lean bool) {
	cls, client, st := benchUsers(b, doc, lean)
	r := rand.New(rand.NewPCG(1, 2))
	ctx := context.Background()
	var fu fastUser
	defer fu.release()
	iterate(ctx, b, client, &fu, st, cls, r) // open the connection
	b.ReportAllocs()
	for b.Loop() {
		iterate(ctx, b, client, &fu, st, cls, r)
	}
	checkStats(b, st)
}

func BenchmarkUserLoop(b *testing.B)                 { benchUserLoop(b, benchPlanOne, true) }
func BenchmarkUserLoopNetHTTP(b *testing.B)          { benchUserLoop(b, benchPlanOne, false) }
func BenchmarkUserLoopMixedPlan(b *testing.B)        { benchUserLoop(b, benchPlanMix, true) }
func BenchmarkUserLoopMixedPlanNetHTTP(b *testing.B) { benchUserLoop(b, benchPlanMix, false) }

// benchUserLoop32 runs 32 users (16 per GOMAXPROCS) sharing the client
// and the statistics, as `canarylab load --users 32` does.
func benchUserLoop32(b *testing.B, lean bool) {
	cls, client, st := benchUsers(b, benchPlanOne, lean)
	ctx := context.Background()
	var seq atomic.Uint64
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(1, seq.Add(1)))
		var fu fastUser
		defer fu.release()
		for pb.Next() {
			iterate(ctx, b, client, &fu, st, cls, r)
		}
	})
	checkStats(b, st)
}

func BenchmarkUserLoop32(b *testing.B)        { benchUserLoop32(b, true) }
func BenchmarkUserLoop32NetHTTP(b *testing.B) { benchUserLoop32(b, false) }

// instantTransport answers every request at once with bench/baseline's
// answer, without a network.
type instantTransport struct{}

func (instantTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		_ = req.Body.Close()
	}
	return &http.Response{
		StatusCode:    http.StatusOK,
		Status:        "200 OK",
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		ContentLength: int64(len(bare.Body)),
		Body:          io.NopCloser(strings.NewReader(bare.Body)),
		Request:       req,
	}, nil
}

// BenchmarkOpenDispatch runs the open model with b.N arrivals all due
// within the first millisecond, so the dispatcher never sleeps: ns/op is
// what one arrival costs, request bookkeeping included, network excluded.
func BenchmarkOpenDispatch(b *testing.B) {
	p, err := plan.Parse([]byte(benchPlanOne))
	if err != nil {
		b.Fatal(err)
	}
	st := stats.New(nil)
	opts := Options{Host: "http://127.0.0.1:9", Client: &http.Client{Transport: instantTransport{}}, Seed: 1}
	n := b.N
	o := OpenOptions{
		Stages:         ConstantRate(float64(n)*1000, time.Millisecond),
		MaxConcurrency: 1 << 16,
	}
	b.ReportAllocs()
	b.ResetTimer()
	res, err := RunOpen(context.Background(), p, st, opts, o)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if d := res.Intended - int64(n); d < -1 || d > 1 {
		b.Fatalf("%d arrivals intended, want %d", res.Intended, n)
	}
	b.ReportMetric(float64(res.Dropped)/float64(res.Intended), "dropped/op")
	checkStats(b, st)
}

func BenchmarkOpenSchedule(b *testing.B) {
	from := 100.0
	s, err := newSchedule(OpenOptions{StartRate: &from, Stages: []RateStage{
		{Duration: time.Minute, Target: 5000}, {Duration: time.Hour, Target: 5000},
	}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var n int64
	for b.Loop() {
		if _, ok := s.at(n); !ok {
			n = 0
		}
		n++
	}
}
