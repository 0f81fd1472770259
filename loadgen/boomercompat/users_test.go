package boomercompat

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/myzhan/boomer"

	"github.com/canarylab/canarylab/loadgen/stats"
)

// counted is what the tasks themselves know they recorded.
type counted struct {
	mu sync.Mutex
	n  map[string]int64 // "type name ok|fail" → count
}

func (c *counted) add(key string) {
	c.mu.Lock()
	c.n[key]++
	c.mu.Unlock()
}

// boomerStyleTasks are written against boomer's API only, as a team's
// code is: package-level RecordSuccess and RecordFailure, the legacy
// events (int64 and float64 response times), a TaskSet as a Fn, a task
// that panics.
func boomerStyleTasks(c *counted) []*boomer.Task {
	pause := func() { time.Sleep(200 * time.Microsecond) }
	ts := boomer.NewWeighingTaskSet()
	ts.AddTask(&boomer.Task{Weight: 1, Name: "inner", Fn: func() {
		pause()
		boomer.RecordSuccess("tcp", "inner", 2, 5)
		c.add("tcp inner ok")
	}})
	return []*boomer.Task{
		{Name: "ok", Weight: 4, Fn: func() {
			pause()
			boomer.RecordSuccess("http", "/ok", 12, 100)
			c.add("http /ok ok")
		}},
		{Name: "fail", Weight: 2, Fn: func() {
			pause()
			boomer.RecordFailure("http", "/fail", 30, "HTTP 503")
			c.add("http /fail fail")
		}},
		{Name: "legacy", Weight: 2, Fn: func() {
			pause()
			boomer.Events.Publish("request_success", "http", "/legacy", int64(7), int64(1))
			boomer.Events.Publish("request_failure", "http", "/legacy", 9.5, "timeout")
			c.add("http /legacy ok")
			c.add("http /legacy fail")
		}},
		{Name: "taskset", Weight: 1, Fn: ts.Run},
		{Name: "panics", Weight: 1, Fn: func() {
			pause()
			c.add("panic")
			panic("task bug")
		}},
	}
}

func TestUsersRecordWhatBoomerTasksRecord(t *testing.T) {
	c := &counted{n: map[string]int64{}}
	st := stats.New(nil)
	users, err := NewUsers(boomerStyleTasks(c), st, Options{Seed: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := users.SetCounts(context.Background(), map[string]int{"Dummy": 3, "Other": 1}, "Dummy"); err != nil {
		t.Fatal(err)
	}
	if got := users.Counts(); got["Dummy"] != 3 || got["Other"] != 1 {
		t.Fatalf("counts %v, want Dummy 3 and Other 1", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		done := c.n["http /fail fail"] >= 20 && c.n["tcp inner ok"] >= 10 && c.n["panic"] >= 12
		c.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tasks ran too little in 10s: %v", c.n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	users.Close()
	users.Close() // idempotent

	snap := st.Cumulative()
	got := map[string]int64{}
	for _, e := range snap.Entries {
		if ok := e.NumRequests - e.NumFailures; ok > 0 {
			got[e.Method+" "+e.Name+" ok"] = ok
		}
		if e.NumFailures > 0 {
			got[e.Method+" "+e.Name+" fail"] = e.NumFailures
		}
	}
	c.mu.Lock()
	want := map[string]int64{}
	for k, v := range c.n {
		if k != "panic" {
			want[k] = v
		}
	}
	panics := c.n["panic"]
	c.mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("entries %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: stats have %d, the tasks recorded %d", k, got[k], v)
		}
	}
	if users.Panics() != panics {
		t.Errorf("Panics() = %d, tasks panicked %d times", users.Panics(), panics)
	}
	for _, e := range snap.Entries {
		switch e.Name {
		case "/ok":
			if e.MinResponseTime != 12 || e.MaxResponseTime != 12 || e.TotalContentLength != 100*e.NumRequests {
				t.Errorf("/ok: min %v max %v length %d, want 12 ms and 100 bytes each", e.MinResponseTime, e.MaxResponseTime, e.TotalContentLength)
			}
		case "/legacy":
			if e.MinResponseTime != 7 || e.MaxResponseTime != 9.5 {
				t.Errorf("/legacy: min %v max %v, want 7 and 9.5 ms", e.MinResponseTime, e.MaxResponseTime)
			}
		}
	}
	var reasons []string
	for _, e := range snap.Errors {
		reasons = append(reasons, e.Error)
	}
	if s := strings.Join(reasons, ","); !strings.Contains(s, "HTTP 503") || !strings.Contains(s, "timeout") {
		t.Errorf("errors %q, want HTTP 503 and timeout", s)
	}

	// boomer has its default back: records go nowhere and block nothing,
	// and the next pool may take over.
	boomer.RecordSuccess("http", "/after", 1, 1)
	before := st.Cumulative().Total.NumRequests
	again, err := NewUsers(boomerStyleTasks(c), stats.New(nil), Options{})
	if err != nil {
		t.Fatalf("a pool after Close: %v", err)
	}
	again.Close()
	if st.Cumulative().Total.NumRequests != before {
		t.Error("a record after Close reached the closed pool's stats")
	}
}

func TestOnePoolAtATime(t *testing.T) {
	tasks := []*boomer.Task{{Fn: func() {}}}
	a, err := NewUsers(tasks, stats.New(nil), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := NewUsers(tasks, stats.New(nil), Options{}); err == nil || !strings.Contains(err.Error(), "close it first") {
		t.Fatalf("second pool: err %v, want a refusal", err)
	}
}

func TestNewUsersRefusesBadTasks(t *testing.T) {
	fn := func() {}
	for _, tc := range []struct {
		name  string
		tasks []*boomer.Task
		st    *stats.Stats
		want  string
	}{
		{"none", nil, stats.New(nil), "no tasks"},
		{"nil task", []*boomer.Task{{Fn: fn}, nil}, stats.New(nil), "tasks[1] is nil"},
		{"no Fn", []*boomer.Task{{Name: "x"}}, stats.New(nil), `tasks[0] ("x") has no Fn`},
		{"negative weight", []*boomer.Task{{Name: "x", Weight: -1, Fn: fn}}, stats.New(nil), "negative Weight"},
		{"no stats", []*boomer.Task{{Fn: fn}}, nil, "no stats"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := NewUsers(tc.tasks, tc.st, Options{})
			if err == nil {
				u.Close()
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want %q", err, tc.want)
			}
		})
	}
}

// alternate blocks every other Acquire, as a limiter out of tokens does.
type alternate struct {
	calls, blocked   atomic.Int64
	started, stopped atomic.Bool
}

func (a *alternate) Start() { a.started.Store(true) }
func (a *alternate) Stop()  { a.stopped.Store(true) }
func (a *alternate) Acquire() bool {
	n := a.calls.Add(1)
	if n%2 == 0 {
		a.blocked.Add(1)
		time.Sleep(100 * time.Microsecond)
		return true
	}
	return false
}

func TestRateLimiterGatesTasks(t *testing.T) {
	var runs atomic.Int64
	lim := &alternate{}
	users, err := NewUsers([]*boomer.Task{{Fn: func() { runs.Add(1); time.Sleep(100 * time.Microsecond) }}}, stats.New(nil), Options{RateLimiter: lim})
	if err != nil {
		t.Fatal(err)
	}
	if err := users.SetCounts(context.Background(), map[string]int{DefaultClass: 2}, ""); err != nil {
		t.Fatal(err)
	}
	for runs.Load() < 50 {
		time.Sleep(time.Millisecond)
	}
	users.Close()
	if !lim.started.Load() || !lim.stopped.Load() {
		t.Errorf("limiter started %v stopped %v, want both", lim.started.Load(), lim.stopped.Load())
	}
	if got, want := runs.Load(), lim.calls.Load()-lim.blocked.Load(); got != want {
		t.Errorf("tasks ran %d times, the limiter let %d through", got, want)
	}
}

func TestPick(t *testing.T) {
	a, b, c := &boomer.Task{Weight: 1}, &boomer.Task{Weight: 3}, &boomer.Task{}
	for _, tc := range []struct {
		name  string
		tasks []*boomer.Task
		want  map[*boomer.Task]float64
	}{
		{"weighted", []*boomer.Task{a, b, c}, map[*boomer.Task]float64{a: 0.25, b: 0.75}},
		{"no weights: uniform", []*boomer.Task{{}, {}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			total := 0
			for _, task := range tc.tasks {
				total += task.Weight
			}
			r := newRand(3)
			n := 40000
			got := map[*boomer.Task]int{}
			for range n {
				got[pick(tc.tasks, total, r)]++
			}
			want := tc.want
			if want == nil {
				want = map[*boomer.Task]float64{}
				for _, task := range tc.tasks {
					want[task] = 1 / float64(len(tc.tasks))
				}
			}
			for task, p := range want {
				// 5 binomial standard deviations.
				sd := 5 * sqrt(p*(1-p)/float64(n))
				if f := float64(got[task]) / float64(n); f < p-sd || f > p+sd {
					t.Errorf("weight %d: chosen %.4f of the time, want %.4f ± %.4f", task.Weight, f, p, sd)
				}
			}
			if tc.want != nil && got[c] != 0 {
				t.Errorf("a task of weight 0 among weighted ones ran %d times", got[c])
			}
		})
	}
}
