package loadgen

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/canarylab/canarylab/loadgen/plan"
	"github.com/canarylab/canarylab/loadgen/stats"
	"github.com/canarylab/canarylab/mockserver"
)

// startMock runs a real canarylab mock server on loopback for the test.
func startMock(t *testing.T, cfg mockserver.Config) *mockserver.Running {
	t.Helper()
	seed := uint64(7)
	cfg.Seed = &seed
	srv, err := mockserver.New(cfg, mockserver.Options{VersionLabel: "test"})
	if err != nil {
		t.Fatal(err)
	}
	run, err := mockserver.Start(srv, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = run.Shutdown(ctx)
	})
	return run
}

func mustPlan(t *testing.T, doc string) plan.Plan {
	t.Helper()
	p, err := plan.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestUsersGrowAndShrinkWithoutRestarting(t *testing.T) {
	run := startMock(t, mockserver.Config{})
	p := mustPlan(t, `
users:
- {name: A, weight: 1, wait: constant(5ms), tasks: [{request: {path: /a}}]}
- {name: B, weight: 1, wait: constant(5ms), tasks: [{request: {path: /b}}]}
`)
	st := stats.New(nil)
	users, err := NewUsers(p, st, Options{Host: run.URL(), Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer users.StopAll()
	ctx := context.Background()
	steps := []map[string]int{{"A": 2}, {"A": 3, "B": 1}, {"A": 1, "B": 4}, {"B": 2}, {}}
	for _, want := range steps {
		if err := users.SetCounts(ctx, want, ""); err != nil {
			t.Fatal(err)
		}
		got := users.Counts()
		for name, n := range want {
			if got[name] != n {
				t.Errorf("after SetCounts(%v): %s has %d users", want, name, got[name])
			}
		}
		if len(got) != len(want) {
			t.Errorf("after SetCounts(%v): counts %v", want, got)
		}
		before := st.Cumulative().Total.NumRequests
		if users.Total() > 0 {
			waitUntil(t, 5*time.Second, "more requests", func() bool { return st.Cumulative().Total.NumRequests > before+5 })
		}
	}
	all := st.Cumulative()
	if all.Total.NumFailures != 0 || all.Total.NumRequests == 0 {
		t.Errorf("%d requests, %d failures", all.Total.NumRequests, all.Total.NumFailures)
	}
	if err := users.SetCounts(ctx, map[string]int{"Nope": 1}, ""); err == nil || !strings.Contains(err.Error(), "Nope") {
		t.Errorf("an unknown class without a fallback: %v", err)
	}
	if err := users.SetCounts(ctx, map[string]int{"Nope": 2}, "A"); err != nil || users.Counts()["Nope"] != 2 {
		t.Errorf("an unknown class with a fallback runs the fallback's tasks: %v %v", err, users.Counts())
	}
	users.StopAll()
	if users.Total() != 0 {
		t.Errorf("StopAll left %d users", users.Total())
	}
	stopped := st.Cumulative().Total.NumRequests
	time.Sleep(50 * time.Millisecond)
	if after := st.Cumulative().Total.NumRequests; after != stopped {
		t.Errorf("requests went on after StopAll: %d then %d", stopped, after)
	}
}

func TestTaskWeightsAndFailures(t *testing.T) {
	run := startMock(t, mockserver.Config{})
	p := mustPlan(t, `
users:
- name: U
  tasks:
  - {weight: 3, request: {path: /ok}}
  - {weight: 1, request: {path: '/bad?status=503', name: /bad}}
  - {weight: 1, request: {path: '/teapot?status=418', name: /teapot, expect: [418]}}
`)
	st := stats.New(nil)
	users, err := NewUsers(p, st, Options{Host: run.URL(), Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := users.SetCounts(context.Background(), map[string]int{"U": 4}, ""); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "2000 requests", func() bool { return st.Cumulative().Total.NumRequests >= 2000 })
	users.StopAll()
	snap := st.Cumulative()
	n := float64(snap.Total.NumRequests)
	byName := map[string]*stats.Entry{}
	for _, e := range snap.Entries {
		byName[e.Name] = e
	}
	for name, share := range map[string]float64{"/ok": 0.6, "/bad": 0.2, "/teapot": 0.2} {
		got := float64(byName[name].NumRequests) / n
		if bound := 4 * math.Sqrt(share*(1-share)/n); math.Abs(got-share) > bound {
			t.Errorf("%s: share %.3f, want %.2f ± %.3f (task weights)", name, got, share, bound)
		}
	}
	if byName["/bad"].NumFailures != byName["/bad"].NumRequests || byName["/teapot"].NumFailures != 0 || byName["/ok"].NumFailures != 0 {
		t.Errorf("failures: /bad %d of %d, /teapot %d, /ok %d", byName["/bad"].NumFailures, byName["/bad"].NumRequests, byName["/teapot"].NumFailures, byName["/ok"].NumFailures)
	}
	if e := snap.Errors[stats.ErrorKey("GET", "/bad", "HTTP 503")]; e == nil || e.Occurrences != byName["/bad"].NumFailures {
		t.Errorf("errors %v: want all /bad failures under HTTP 503", snap.Errors)
	}
}

func TestConnectionFaultsAreFailures(t *testing.T) {
	run := startMock(t, mockserver.Config{})
	p := mustPlan(t, `
users:
- name: U
  tasks:
  - {request: {path: '/?fault=reset', name: reset}}
  - {request: {path: '/?fault=hang', name: hang, timeout: 100ms}}
`)
	st := stats.New(nil)
	users, err := NewUsers(p, st, Options{Host: run.URL(), Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	if err := users.SetCounts(context.Background(), map[string]int{"U": 2}, ""); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "both faults", func() bool {
		s := st.Cumulative()
		return s.Errors[stats.ErrorKey("GET", "reset", "connection reset by peer")] != nil &&
			s.Errors[stats.ErrorKey("GET", "hang", "timeout")] != nil
	})
	users.StopAll()
	if s := st.Cumulative(); s.Total.NumFailures != s.Total.NumRequests {
		t.Errorf("%d failures of %d requests: every request was a fault", s.Total.NumFailures, s.Total.NumRequests)
	}
}

func TestNoHostAndRemoteHostRefused(t *testing.T) {
	p := plan.Default()
	if _, err := NewUsers(p, stats.New(nil), Options{}); err == nil || !strings.Contains(err.Error(), "--host") {
		t.Errorf("no host: %v", err)
	}
	if _, err := NewUsers(p, stats.New(nil), Options{Host: "http://192.0.2.1:80"}); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("a remote host must be refused: %v", err)
	}
}

func TestDistribute(t *testing.T) {
	p := mustPlan(t, `
users:
- {name: A, weight: 3, tasks: [{request: {path: /}}]}
- {name: B, weight: 1, tasks: [{request: {path: /}}]}
- {name: C, tasks: [{request: {path: /}}]}
`)
	tests := []struct {
		n    int
		want map[string]int
	}{
		{0, map[string]int{}},
		{1, map[string]int{"A": 1, "B": 0, "C": 0}},
		{5, map[string]int{"A": 3, "B": 1, "C": 1}},
		{7, map[string]int{"A": 4, "B": 2, "C": 1}},
		{100, map[string]int{"A": 60, "B": 20, "C": 20}},
	}
	for _, tt := range tests {
		got := Distribute(p, tt.n)
		sum := 0
		for name, n := range tt.want {
			if got[name] != n {
				t.Errorf("Distribute(%d) = %v, want %v", tt.n, got, tt.want)
				break
			}
			sum += n
		}
		if sum != tt.n {
			t.Errorf("Distribute(%d) sums to %d", tt.n, sum)
		}
	}
}

func TestParseStage(t *testing.T) {
	good := map[string]Stage{
		"1m:50:10": {time.Minute, 50, 10},
		"30s:5":    {30 * time.Second, 5, 0},
		"10s:0:2":  {10 * time.Second, 0, 2},
	}
	for in, want := range good {
		if got, err := ParseStage(in); err != nil || got != want {
			t.Errorf("ParseStage(%q) = %+v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"1m", "x:5", "1m:-1", "1m:5:fast", "0s:5", "1m:5:1:2"} {
		if _, err := ParseStage(bad); err == nil {
			t.Errorf("ParseStage(%q) accepted", bad)
		}
	}
}

// TestRunClosedRampsAndStops: a ramp at 20 users a second reaches 4 users
// in about 0.2 s, holds, goes down to 1, and no user outlives the run.
func TestRunClosedRampsAndStops(t *testing.T) {
	run := startMock(t, mockserver.Config{})
	p := mustPlan(t, `users: [{name: A, weight: 3, wait: constant(10ms), tasks: [{request: {path: /}}]}, {name: B, wait: constant(10ms), tasks: [{request: {path: /}}]}]`)
	st := stats.New(nil)
	users, err := NewUsers(p, st, Options{Host: run.URL(), Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- RunClosed(context.Background(), users, p, []Stage{{400 * time.Millisecond, 4, 20}, {300 * time.Millisecond, 1, 0}})
	}()
	waitUntil(t, 5*time.Second, "4 users", func() bool { return users.Total() == 4 })
	if c := users.Counts(); c["A"] != 3 || c["B"] != 1 {
		t.Errorf("counts %v, want A 3 and B 1 (weights 3:1)", c)
	}
	waitUntil(t, 5*time.Second, "1 user", func() bool { return users.Total() == 1 })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if users.Total() != 0 {
		t.Errorf("%d users outlived the run", users.Total())
	}
	if st.Cumulative().Total.NumRequests == 0 {
		t.Error("no requests")
	}
}
