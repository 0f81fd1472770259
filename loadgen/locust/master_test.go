//go:build unix

package locust_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/canarylab/canarylab/loadgen"
	"github.com/canarylab/canarylab/loadgen/internal/locusttest"
	"github.com/canarylab/canarylab/loadgen/locust"
	"github.com/canarylab/canarylab/loadgen/plan"
	"github.com/canarylab/canarylab/loadgen/stats"
	"github.com/canarylab/canarylab/mockserver"
)

// startMock runs canarylab's mock server on loopback.
func startMock(t *testing.T) *mockserver.Running {
	t.Helper()
	seed := uint64(7)
	srv, err := mockserver.New(mockserver.Config{Seed: &seed}, mockserver.Options{VersionLabel: "test"})
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

// integrationPlan has two weighted classes, a failing task and a POST.
func integrationPlan(t *testing.T) plan.Plan {
	t.Helper()
	p, err := plan.Parse([]byte(`
users:
- name: Browser
  weight: 3
  wait: between(50ms, 150ms)
  tasks:
  - {weight: 4, request: {path: /}}
  - {weight: 2, request: {path: /items/42, name: /items/:id}}
  - {weight: 1, request: {path: '/flaky?status=503', name: /flaky}}
- name: ApiClient
  weight: 1
  wait: constant(100ms)
  tasks:
  - {request: {method: POST, path: /api/orders, body: '{"id": 1}', expect: [200]}}
`))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func writeLocustfile(t *testing.T, p plan.Plan) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "locustfile.py")
	if err := os.WriteFile(path, []byte(locust.Locustfile(p)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}

// Two canarylab workers run a headless 15 s test of a real master: the
// master's CSV totals are the workers' own totals summed.
func TestRealMasterHeadlessRun(t *testing.T) {
	locusttest.NeedLocust(t)
	mock := startMock(t)
	p := integrationPlan(t)
	lf := writeLocustfile(t, p)
	port := locusttest.FreePort(t)
	csvPrefix := filepath.Join(t.TempDir(), "run")
	start := time.Now()
	master := locusttest.StartMaster(t, "master", "-f", lf, "--master", "--master-bind-host", "127.0.0.1",
		"--master-bind-port", strconv.Itoa(port), "--headless", "--expect-workers", "2",
		"-u", "20", "-r", "10", "-t", "15s", "--csv", csvPrefix, "--host", mock.URL())

	// Worker A builds its users for the host the master sends; worker B
	// has its own pool and host.
	stA, stB := stats.New(nil), stats.New(nil)
	var mu sync.Mutex
	var hostsA []string
	logA, _ := testLogger(t)
	logB, _ := testLogger(t)
	lastCounts := map[string]int64{}
	onMessage := func(name string) func(bool, locust.Message) {
		return func(sent bool, m locust.Message) {
			if sent && m.Type == locust.TypeSpawningComplete {
				n, _ := m.Data.(locust.Dict).Get("user_count")
				mu.Lock()
				lastCounts[name] = int64(n.(int))
				mu.Unlock()
			}
		}
	}
	wA, err := locust.NewWorker(locust.Config{
		MasterAddr: fmt.Sprintf("127.0.0.1:%d", port), Plan: p, Stats: stA, Logger: logA.With("worker", "A"),
		NewUsers: func(host string) (locust.Users, error) {
			mu.Lock()
			hostsA = append(hostsA, host)
			mu.Unlock()
			return loadgen.NewUsers(p, stA, loadgen.Options{Host: host})
		},
		OnMessage: onMessage("A"),
	})
	if err != nil {
		t.Fatal(err)
	}
	usersB, err := loadgen.NewUsers(p, stB, loadgen.Options{Host: mock.URL()})
	if err != nil {
		t.Fatal(err)
	}
	wB, err := locust.NewWorker(locust.Config{
		MasterAddr: fmt.Sprintf("127.0.0.1:%d", port), Plan: p, Stats: stB, Logger: logB.With("worker", "B"),
		Users: usersB, OnMessage: onMessage("B"),
	})
	if err != nil {
		t.Fatal(err)
	}
	_, doneA, errA := runWorker(t, wA)
	_, doneB, errB := runWorker(t, wB)

	// The master quits after its run time; so do the workers.
	for name, done := range map[string]<-chan struct{}{"A": doneA, "B": doneB} {
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatalf("worker %s did not end with the master's quit", name)
		}
	}
	if *errA != nil || *errB != nil {
		t.Errorf("Run: %v, %v (want nil after the master's quit)", *errA, *errB)
	}
	code := master.ExitCode(t, 30*time.Second)
	t.Logf("master ran %s, exit code %d", time.Since(start).Round(time.Millisecond), code)
	if code != 1 { // 1: the test had failures (--exit-code-on-error)
		t.Errorf("master exit code %d, want 1 (failures seen)", code)
	}

	log := master.Log.String()
	for _, w := range []*locust.Worker{wA, wB} {
		if !strings.Contains(log, "Worker "+w.NodeID()+" (index ") || !strings.Contains(log, "reported as ready") {
			t.Errorf("master log does not show worker %s as ready", w.NodeID())
		}
	}
	master.WaitLog(t, time.Second, "All users spawned")
	master.CheckLog(t)
	mu.Lock()
	if len(hostsA) != 1 || hostsA[0] != mock.URL() {
		t.Errorf("worker A built users for %q, want the master's --host %s", hostsA, mock.URL())
	}
	if lastCounts["A"]+lastCounts["B"] != 20 || lastCounts["A"] != 10 {
		t.Errorf("users at the end of the ramp: %v, want 10 + 10", lastCounts)
	}
	mu.Unlock()

	// The master's CSV is the sum of the workers' statistics.
	a, b := stA.Cumulative(), stB.Cumulative()
	merged := stA.Cumulative()
	merged.Merge(b)
	rows := locusttest.ReadCSV(t, csvPrefix+"_stats.csv")
	var agg map[string]string
	byName := map[string]map[string]string{}
	for _, r := range rows {
		if r["Name"] == "Aggregated" {
			agg = r
		} else {
			byName[r["Type"]+" "+r["Name"]] = r
		}
	}
	if agg == nil {
		t.Fatalf("no Aggregated row in %v", rows)
	}
	for _, r := range rows {
		t.Logf("master stats.csv: %s %s: %s requests, %s failures, median %s, avg %s, min %s, max %s", r["Type"], r["Name"],
			r["Request Count"], r["Failure Count"], r["Median Response Time"], r["Average Response Time"], r["Min Response Time"], r["Max Response Time"])
	}
	gotReq, gotFail := atoi(t, agg["Request Count"]), atoi(t, agg["Failure Count"])
	t.Logf("master CSV Aggregated: %d requests, %d failures; worker A %d/%d + worker B %d/%d = %d/%d",
		gotReq, gotFail, a.Total.NumRequests, a.Total.NumFailures, b.Total.NumRequests, b.Total.NumFailures,
		merged.Total.NumRequests, merged.Total.NumFailures)
	if gotReq != merged.Total.NumRequests || gotFail != merged.Total.NumFailures {
		t.Errorf("master CSV %d requests / %d failures, workers %d / %d", gotReq, gotFail, merged.Total.NumRequests, merged.Total.NumFailures)
	}
	if merged.Total.NumRequests < 1000 || merged.Total.NumFailures == 0 {
		t.Errorf("too little load for a meaningful comparison: %d requests, %d failures", merged.Total.NumRequests, merged.Total.NumFailures)
	}
	for _, e := range merged.Entries {
		r := byName[e.Method+" "+e.Name]
		if r == nil {
			t.Errorf("master CSV has no row %s %s", e.Method, e.Name)
			continue
		}
		if atoi(t, r["Request Count"]) != e.NumRequests || atoi(t, r["Failure Count"]) != e.NumFailures {
			t.Errorf("%s %s: master %s/%s, workers %d/%d", e.Method, e.Name, r["Request Count"], r["Failure Count"], e.NumRequests, e.NumFailures)
		}
		if e.Name == "/flaky" && e.NumFailures != e.NumRequests {
			t.Errorf("/flaky: %d failures of %d", e.NumFailures, e.NumRequests)
		}
	}
	if len(byName) != len(merged.Entries) {
		t.Errorf("master CSV rows %v, worker entries %d", byName, len(merged.Entries))
	}
	var occurrences int64
	for _, r := range locusttest.ReadCSV(t, csvPrefix+"_failures.csv") {
		t.Logf("master failures.csv: %v", r)
		occurrences += atoi(t, r["Occurrences"])
		if r["Name"] != "/flaky" || !strings.Contains(r["Error"], "HTTP 503") {
			t.Errorf("failure row %v", r)
		}
	}
	if occurrences != merged.Total.NumFailures {
		t.Errorf("failures.csv counts %d, workers %d", occurrences, merged.Total.NumFailures)
	}
	checkNoLeaks(t)
}

// msgLog records what a worker sent and received.
type msgLog struct {
	mu   sync.Mutex
	msgs []logged
}

type logged struct {
	sent bool
	m    locust.Message
}

func (l *msgLog) add(sent bool, m locust.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, logged{sent, m})
}

func (l *msgLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.msgs)
}

// since returns the messages from index i on.
func (l *msgLog) since(i int) []logged {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]logged(nil), l.msgs[i:]...)
}

// has reports whether, from index i on, the worker sent (or received) the
// types in this order, and where the last one is.
func (l *msgLog) has(i int, sent bool, types ...string) (bool, int) {
	msgs := l.since(i)
	k := 0
	for j, m := range msgs {
		if k < len(types) && m.sent == sent && m.m.Type == types[k] {
			k++
			if k == len(types) {
				return true, i + j
			}
		}
	}
	return false, -1
}

// statsWithRequests reports whether the worker sent, from index i on, a
// stats message whose interval has requests.
func (l *msgLog) statsWithRequests(i int) bool {
	for _, m := range l.since(i) {
		if !m.sent || m.m.Type != locust.TypeStats {
			continue
		}
		total, _ := m.m.Data.(locust.Dict).Get("stats_total")
		if n, _ := total.(locust.Dict).Get("num_requests"); n.(int64) > 0 {
			return true
		}
	}
	return false
}

func webPost(t *testing.T, u string, form url.Values) map[string]any {
	t.Helper()
	resp, err := http.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	return decodeJSON(t, resp)
}

func webGet(t *testing.T, u string) map[string]any {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	return decodeJSON(t, resp)
}

func decodeJSON(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %s", resp.Request.URL, resp.StatusCode, b)
	}
	return m
}

// One worker through a master's web UI session (start, stop, start), a
// reconnect the master asks for, and a master killed and restarted on the
// same ports, all without restarting the worker.
func TestRealMasterStopStartReconnectRestart(t *testing.T) {
	locusttest.NeedLocust(t)
	mock := startMock(t)
	p := integrationPlan(t)
	lf := writeLocustfile(t, p)
	mport, wport := locusttest.FreePort(t), locusttest.FreePort(t)
	args := []string{"-f", lf, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", strconv.Itoa(mport),
		"--web-host", "127.0.0.1", "--web-port", strconv.Itoa(wport)}
	web := fmt.Sprintf("http://127.0.0.1:%d", wport)
	m1 := locusttest.StartMaster(t, "first master", args...)

	st := stats.New(nil)
	var rec msgLog
	logger, wlog := testLogger(t)
	var poolMu sync.Mutex
	var pool *loadgen.Users
	userCounts := func() map[string]int {
		poolMu.Lock()
		defer poolMu.Unlock()
		if pool == nil {
			return nil
		}
		return nonZero(pool.Counts())
	}
	w, err := locust.NewWorker(locust.Config{
		MasterAddr: fmt.Sprintf("127.0.0.1:%d", mport), Plan: p, Stats: st, Logger: logger,
		NewUsers: func(host string) (locust.Users, error) {
			u, err := loadgen.NewUsers(p, st, loadgen.Options{Host: host})
			poolMu.Lock()
			pool = u
			poolMu.Unlock()
			return u, err
		},
		OnMessage: rec.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop, _, _ := runWorker(t, w)
	locusttest.WaitUntil(t, 30*time.Second, "the worker to join", func() bool { return w.Acks() == 1 })
	m1.WaitLog(t, 5*time.Second, "Worker "+w.NodeID()+" (index 0) reported as ready. 1 workers connected.")

	swarm := func(users int) {
		t.Helper()
		res := webPost(t, web+"/swarm", url.Values{"user_count": {strconv.Itoa(users)}, "spawn_rate": {strconv.Itoa(users)}, "host": {mock.URL()}})
		if res["success"] != true {
			t.Fatalf("swarm: %v", res)
		}
	}
	running := func(from, users int) int {
		t.Helper()
		var at int
		locusttest.WaitUntil(t, 20*time.Second, fmt.Sprintf("%d users running", users), func() bool {
			ok, i := rec.has(from, true, locust.TypeSpawning, locust.TypeSpawningComplete)
			if !ok || w.State() != locust.StateRunning {
				return false
			}
			n := 0
			for _, c := range userCounts() {
				n += c
			}
			at = i
			return n == users
		})
		locusttest.WaitUntil(t, 20*time.Second, "stats with requests", func() bool { return rec.statsWithRequests(at) })
		return at
	}

	// Test 1: ready → spawning → running.
	mark := rec.len()
	swarm(4)
	running(mark, 4)
	locusttest.WaitUntil(t, 10*time.Second, "the master to count requests", func() bool {
		s := webGet(t, web+"/stats/requests")
		return s["state"] == "running" && s["user_count"] == 4.0 && s["total_rps"].(float64) >= 0 && masterRequests(s) > 0
	})

	// Stop: client_stopped, then registered again.
	mark = rec.len()
	webGet(t, web+"/stop")
	locusttest.WaitUntil(t, 10*time.Second, "stop and re-registration", func() bool {
		ok, _ := rec.has(mark, true, locust.TypeStats, locust.TypeClientStopped, locust.TypeClientReady)
		return ok && w.Acks() == 2 && w.State() == locust.StateReady
	})
	if n := userCounts(); len(n) != 0 {
		t.Errorf("users after stop: %v", n)
	}

	// Test 2 in the same master session: statistics start from zero.
	mark = rec.len()
	before := st.Cumulative().Total.NumRequests
	swarm(2)
	locusttest.WaitUntil(t, 5*time.Second, "the second test", func() bool { ok, _ := rec.has(mark, true, locust.TypeSpawningComplete); return ok })
	if after := st.Cumulative().Total.NumRequests; after >= before {
		t.Errorf("statistics not reset at the second test: %d requests before, %d after its start", before, after)
	}
	running(mark, 2)
	ok, _ := rec.has(0, true, locust.TypeClientReady, locust.TypeSpawning, locust.TypeSpawningComplete,
		locust.TypeClientStopped, locust.TypeClientReady, locust.TypeSpawning, locust.TypeSpawningComplete)
	if !ok {
		t.Error("the worker did not go ready → running → ready → running")
	}
	locusttest.WaitUntil(t, 10*time.Second, "the master to see 2 users", func() bool {
		s := webGet(t, web+"/stats/requests")
		workers, _ := s["workers"].([]any)
		return s["user_count"] == 2.0 && len(workers) == 1 && workers[0].(map[string]any)["state"] == "running"
	})

	// A corrupt frame from another client makes this master send
	// `reconnect` to the last worker it heard from: this one.
	mark = rec.len()
	corrupt := zmq4.NewDealer(context.Background(), zmq4.WithID(zmq4.SocketIdentity("corruptor")))
	if err := corrupt.Dial(fmt.Sprintf("tcp://127.0.0.1:%d", mport)); err != nil {
		t.Fatal(err)
	}
	if err := corrupt.Send(zmq4.NewMsg([]byte{0x93, 0xa1, 'x', 0xc0, 0xa1, 'y', 0xc0})); err != nil {
		t.Fatal(err)
	}
	locusttest.WaitUntil(t, 10*time.Second, "a reconnect", func() bool { ok, _ := rec.has(mark, false, locust.TypeReconnect); return ok })
	_ = corrupt.Close()
	m1.WaitLog(t, time.Second, "Will reset client "+w.NodeID())
	mark = rec.len()
	locusttest.WaitUntil(t, 15*time.Second, "stats after the reconnect", func() bool { return rec.statsWithRequests(mark) })
	if w.State() != locust.StateRunning || w.Acks() != 2 {
		t.Errorf("after reconnect: state %s, %d acks", w.State(), w.Acks())
	}
	time.Sleep(2 * time.Second) // heartbeats keep the worker alive on the master
	if strings.Contains(m1.Log.String(), "failed to send heartbeat") {
		t.Error("the master lost the worker's heartbeats after the reconnect")
	}
	m1.CheckLog(t)

	// The master dies while the test runs; a new one comes up on the
	// same ports; the worker rejoins it.
	m1.Kill()
	locusttest.WaitUntil(t, 10*time.Second, "the worker to notice the dead master", func() bool {
		return w.State() == locust.StateReady && len(userCounts()) == 0
	})
	m2 := locusttest.StartMaster(t, "second master", args...)
	locusttest.WaitUntil(t, 30*time.Second, "the worker to rejoin", func() bool { return w.Acks() == 3 })
	m2.WaitLog(t, 5*time.Second, "Worker "+w.NodeID()+" (index 0) reported as ready. 1 workers connected.")
	if !strings.Contains(wlog.String(), "lost the connection to the Locust master") {
		t.Error("no log line about the lost master")
	}
	mark = rec.len()
	swarm(3)
	running(mark, 3)
	locusttest.WaitUntil(t, 10*time.Second, "the new master to count requests", func() bool {
		return masterRequests(webGet(t, web+"/stats/requests")) > 0
	})

	// The worker's own shutdown: quit reaches the master.
	if err := stop(); err != context.Canceled {
		t.Errorf("Run = %v", err)
	}
	m2.WaitLog(t, 5*time.Second, "Worker '"+w.NodeID()+"' (index 0) quit.")
	m2.CheckLog(t)
	checkNoLeaks(t)
}

func masterRequests(s map[string]any) float64 {
	rows, _ := s["stats"].([]any)
	for _, r := range rows {
		r := r.(map[string]any)
		if r["name"] == "Aggregated" {
			n, _ := r["num_requests"].(float64)
			return n
		}
	}
	return 0
}

func nonZero(m map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// A connection that breaks between worker and master while the master
// keeps its end open (a middlebox dropped it): the master ignores the
// worker's new connection under the same identity (libzmq ROUTER without
// handover), so the worker registers under a fresh one and serves the
// next test.
func TestRealMasterHalfOpenConnection(t *testing.T) {
	locusttest.NeedLocust(t)
	mock := startMock(t)
	p := integrationPlan(t)
	lf := writeLocustfile(t, p)
	mport, wport := locusttest.FreePort(t), locusttest.FreePort(t)
	web := fmt.Sprintf("http://127.0.0.1:%d", wport)
	m := locusttest.StartMaster(t, "master", "-f", lf, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", strconv.Itoa(mport),
		"--web-host", "127.0.0.1", "--web-port", strconv.Itoa(wport))
	px := startProxy(t, fmt.Sprintf("127.0.0.1:%d", mport))
	st := stats.New(nil)
	var rec msgLog
	logger, wlog := testLogger(t)
	w, err := locust.NewWorker(locust.Config{
		MasterAddr: px.addr(), Plan: p, Stats: st, Logger: logger, OnMessage: rec.add,
		NewUsers: func(host string) (locust.Users, error) {
			return loadgen.NewUsers(p, st, loadgen.Options{Host: host})
		},
		AckTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop, _, _ := runWorker(t, w)
	locusttest.WaitUntil(t, 30*time.Second, "the worker to join", func() bool { return w.Acks() == 1 })
	first := w.NodeID()
	swarm := url.Values{"user_count": {"2"}, "spawn_rate": {"2"}, "host": {mock.URL()}}
	webPost(t, web+"/swarm", swarm)
	locusttest.WaitUntil(t, 10*time.Second, "stats with requests", func() bool { return rec.statsWithRequests(0) })

	px.breakDownstream()
	locusttest.WaitUntil(t, 15*time.Second, "a registration under a fresh identity", func() bool { return w.Acks() == 2 })
	second := w.NodeID()
	if second == first {
		t.Fatalf("still %s", first)
	}
	m.WaitLog(t, 5*time.Second, "Worker "+second+" (index 1) reported as ready")
	m.WaitLog(t, 10*time.Second, "Worker "+first+" failed to send heartbeat, setting state to missing.")
	if !strings.Contains(wlog.String(), "registering under a fresh identity") {
		t.Error("no log line about the fresh identity")
	}
	mark := rec.len()
	webPost(t, web+"/swarm", swarm)
	locusttest.WaitUntil(t, 15*time.Second, "stats with requests after the rejoin", func() bool { return rec.statsWithRequests(mark) })
	locusttest.WaitUntil(t, 10*time.Second, "the master to count requests", func() bool {
		s := webGet(t, web+"/stats/requests")
		return s["user_count"] == 2.0 && masterRequests(s) > 0
	})
	_ = stop()
	m.CheckLog(t)
	px.close()
	checkNoLeaks(t)
}
