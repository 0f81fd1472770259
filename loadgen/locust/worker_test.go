package locust_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canarylab/canarylab/loadgen/internal/locusttest"
	"github.com/canarylab/canarylab/loadgen/locust"
	"github.com/canarylab/canarylab/loadgen/plan"
	"github.com/canarylab/canarylab/loadgen/stats"
)

func twoClassPlan() plan.Plan {
	return plan.Plan{Users: []plan.UserClass{
		{Name: "A", Weight: 1, Tasks: []plan.Task{{Request: plan.Request{Path: "/a"}}}},
		{Name: "B", Weight: 1, Tasks: []plan.Task{{Request: plan.Request{Path: "/b"}}}},
	}}
}

// fastConfig has short intervals so tests take little time.
func fastConfig(t *testing.T, addr string, users locust.Users) (locust.Config, *locusttest.LogBuffer) {
	logger, logs := testLogger(t)
	return locust.Config{
		MasterAddr:        addr,
		NodeID:            "testnode_" + strings.Repeat("ab", 16),
		Plan:              twoClassPlan(),
		Stats:             stats.New(nil),
		Users:             users,
		Logger:            logger,
		HeartbeatInterval: 50 * time.Millisecond,
		ReportInterval:    100 * time.Millisecond,
		AckTimeout:        300 * time.Millisecond,
		ReconnectInterval: 20 * time.Millisecond,
	}, logs
}

func newWorker(t *testing.T, cfg locust.Config) *locust.Worker {
	t.Helper()
	w, err := locust.NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func spawnData(ts float64, counts map[string]int) map[string]any {
	ucc := map[string]any{}
	for k, v := range counts {
		ucc[k] = v
	}
	return map[string]any{"timestamp": ts, "user_classes_count": ucc, "host": nil, "stop_timeout": nil, "parsed_options": map[string]any{}}
}

func dataMap(t *testing.T, g got) map[string]any {
	t.Helper()
	m, ok := g.m.Data.(map[string]any)
	if !ok {
		t.Fatalf("%s data is %T", g.m.Type, g.m.Data)
	}
	return m
}

func countsOf(t *testing.T, v any) map[string]int {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("user_classes_count is %T", v)
	}
	out := map[string]int{}
	for k, n := range m {
		out[k] = int(n.(int64))
	}
	return out
}

func TestNewWorkerChecksConfig(t *testing.T) {
	st := stats.New(nil)
	u := newFakeUsers("A")
	factory := func(string) (locust.Users, error) { return u, nil }
	for name, cfg := range map[string]locust.Config{
		"no address":        {Stats: st, Users: u, Plan: twoClassPlan()},
		"no port":           {MasterAddr: "127.0.0.1", Stats: st, Users: u, Plan: twoClassPlan()},
		"no stats":          {MasterAddr: "127.0.0.1:5557", Users: u, Plan: twoClassPlan()},
		"no users":          {MasterAddr: "127.0.0.1:5557", Stats: st, Plan: twoClassPlan()},
		"users and factory": {MasterAddr: "127.0.0.1:5557", Stats: st, Users: u, NewUsers: factory, Plan: twoClassPlan()},
		"factory, no plan":  {MasterAddr: "127.0.0.1:5557", Stats: st, NewUsers: factory},
		"bad node id":       {MasterAddr: "127.0.0.1:5557", Stats: st, Users: u, Plan: twoClassPlan(), NodeID: "\xff"},
	} {
		if _, err := locust.NewWorker(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	w, err := locust.NewWorker(locust.Config{MasterAddr: "127.0.0.1:5557", Stats: st, Users: u})
	if err != nil {
		t.Fatal(err)
	}
	if id := w.NodeID(); !strings.Contains(id, "_") || len(id[strings.LastIndex(id, "_")+1:]) != 32 {
		t.Errorf("node id %q: want hostname_<32 hex>", id)
	}
	if w.State() != locust.StateReady || w.Index() != -1 {
		t.Errorf("new worker: %s %d", w.State(), w.Index())
	}
}

// The worker registers with client_ready -1 under its node id (routing id
// and message), sends it again when no ack comes, and heartbeats.
func TestJoinResendsClientReadyUntilAcked(t *testing.T) {
	defer checkNoLeaks(t)
	m := startFakeMaster(t, "127.0.0.1:0")
	cfg, _ := fastConfig(t, m.addr, newFakeUsers("A", "B"))
	w := newWorker(t, cfg)
	stop, _, _ := runWorker(t, w)

	first := m.next(locust.TypeClientReady)
	if first.id != w.NodeID() || first.m.NodeID != w.NodeID() {
		t.Errorf("routing id %q, node_id %q, want %q", first.id, first.m.NodeID, w.NodeID())
	}
	if first.m.Data != int64(-1) {
		t.Errorf("client_ready data %#v, want -1", first.m.Data)
	}
	second := m.next(locust.TypeClientReady) // not acked: sent again
	if d := second.at.Sub(first.at); d < 250*time.Millisecond {
		t.Errorf("client_ready resent after %s, want the ack timeout (300ms)", d)
	}
	m.send(w.NodeID(), locust.TypeAck, map[string]any{"index": 3})
	locusttest.WaitUntil(t, 5*time.Second, "the ack", func() bool { return w.Index() == 3 && w.Acks() == 1 })
	n := m.count(locust.TypeClientReady)
	hb := dataMap(t, m.next(locust.TypeHeartbeat))
	hb = dataMap(t, m.next(locust.TypeHeartbeat))
	if hb["state"] != "ready" {
		t.Errorf("heartbeat state %v", hb["state"])
	}
	if _, ok := hb["current_cpu_usage"].(float64); !ok {
		t.Errorf("current_cpu_usage %#v", hb["current_cpu_usage"])
	}
	if rss, ok := hb["current_memory_usage"].(int64); !ok || rss < 1<<20 {
		t.Errorf("current_memory_usage %#v, want the RSS in bytes", hb["current_memory_usage"])
	}
	time.Sleep(400 * time.Millisecond)
	if m.count(locust.TypeClientReady) != n {
		t.Error("client_ready sent again after the ack")
	}
	// A second ack (a master answering a late client_ready) is harmless.
	m.send(w.NodeID(), locust.TypeAck, map[string]any{"index": 3})
	m.next(locust.TypeHeartbeat)
	if w.Acks() != 1 {
		t.Errorf("acks = %d", w.Acks())
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v", err)
	}
	if q := m.next(locust.TypeQuit); q.m.Data != nil {
		t.Errorf("quit data %v", q.m.Data)
	}
	m.close()
}

// The CPU usage reported is the process's, measured over the interval.
func TestHeartbeatMeasuresCPU(t *testing.T) {
	defer checkNoLeaks(t)
	m := startFakeMaster(t, "127.0.0.1:0")
	cfg, _ := fastConfig(t, m.addr, newFakeUsers("A", "B"))
	cfg.HeartbeatInterval = 200 * time.Millisecond
	w := newWorker(t, cfg)
	stop, _, _ := runWorker(t, w)
	m.next(locust.TypeClientReady)
	m.next(locust.TypeHeartbeat)
	// Burn one core for a few intervals: the heartbeats sent a whole
	// interval after the burn began show it.
	burn := make(chan struct{})
	burnStart := time.Now()
	go func() {
		for {
			select {
			case <-burn:
				return
			default:
			}
			for i := 0; i < 1e5; i++ {
				_ = i * i
			}
		}
	}()
	after := func(from time.Time) float64 {
		for {
			g := m.next(locust.TypeHeartbeat)
			if g.at.After(from.Add(cfg.HeartbeatInterval + 20*time.Millisecond)) {
				return dataMap(t, g)["current_cpu_usage"].(float64)
			}
		}
	}
	busy := after(burnStart)
	close(burn)
	idle := after(time.Now())
	// A spinning goroutine shows as 60–100% on a quiet machine, and less
	// when other processes (other test packages) share the cores: the
	// reading must only rise clearly with the burn, and fall after it.
	if busy-idle < 10 || busy < 3*idle {
		t.Errorf("cpu usage busy %.1f%%, idle %.1f%%: want a busy core, then little", busy, idle)
	}
	t.Logf("cpu usage: busy %.1f%%, idle %.1f%%", busy, idle)
	_ = stop()
	m.close()
}

// A ramp (absolute counts, newer timestamps) changes the pool without
// resetting statistics; an older spawn is dropped; a class the plan does
// not know runs the first class with one warning; stop reports the last
// interval, sends client_stopped and registers again; the next test
// resets the statistics.
func TestSpawnRampStopAndStartAgain(t *testing.T) {
	defer checkNoLeaks(t)
	m := startFakeMaster(t, "127.0.0.1:0")
	users := newFakeUsers("A", "B")
	cfg, logs := fastConfig(t, m.addr, users)
	st := cfg.Stats
	w := newWorker(t, cfg)
	stop, _, _ := runWorker(t, w)
	id := w.NodeID()
	m.next(locust.TypeClientReady)
	m.send(id, locust.TypeAck, map[string]any{"index": 0})

	st.Success("GET", "/before", time.Millisecond, 1) // before the test: reset at its start
	m.send(id, locust.TypeSpawn, spawnData(100.5, map[string]int{"A": 1, "B": 0}))
	m.next(locust.TypeSpawning)
	sc := dataMap(t, m.next(locust.TypeSpawningComplete))
	if got := countsOf(t, sc["user_classes_count"]); !reflect.DeepEqual(got, map[string]int{"A": 1, "B": 0}) {
		t.Errorf("spawning_complete counts %v", got)
	}
	if sc["user_count"] != int64(1) {
		t.Errorf("user_count %v", sc["user_count"])
	}
	if w.State() != locust.StateRunning {
		t.Errorf("state %s", w.State())
	}
	if c := st.Cumulative(); c.Total.NumRequests != 0 {
		t.Errorf("stats not reset at test start: %d requests", c.Total.NumRequests)
	}
	st.Success("GET", "/during", time.Millisecond, 1)

	m.send(id, locust.TypeSpawn, spawnData(101.5, map[string]int{"A": 2, "B": 1}))
	m.next(locust.TypeSpawning)
	sc = dataMap(t, m.next(locust.TypeSpawningComplete))
	if got := countsOf(t, sc["user_classes_count"]); !reflect.DeepEqual(got, map[string]int{"A": 2, "B": 1}) {
		t.Errorf("spawning_complete counts %v", got)
	}
	if c := st.Cumulative(); c.Total.NumRequests != 1 {
		t.Errorf("a ramp step reset the statistics (%d requests, want 1)", c.Total.NumRequests)
	}

	// Older and equal timestamps: spawning, then nothing.
	m.send(id, locust.TypeSpawn, spawnData(101.0, map[string]int{"A": 9}))
	m.send(id, locust.TypeSpawn, spawnData(101.5, map[string]int{"A": 9}))
	m.next(locust.TypeSpawning)
	m.next(locust.TypeSpawning)
	m.next(locust.TypeStats) // a report later: nothing else happened
	for _, g := range m.since() {
		if g.m.Type == locust.TypeSpawningComplete {
			t.Error("an old spawn was answered")
		}
	}

	// An unknown class: run with the fallback, warn once per name.
	m.send(id, locust.TypeSpawn, spawnData(102.5, map[string]int{"A": 1, "B": 1, "Zed": 2}))
	m.next(locust.TypeSpawningComplete)
	m.send(id, locust.TypeSpawn, spawnData(103.5, map[string]int{"A": 1, "B": 1, "Zed": 3}))
	sc = dataMap(t, m.next(locust.TypeSpawningComplete))
	if got := countsOf(t, sc["user_classes_count"]); !reflect.DeepEqual(got, map[string]int{"A": 1, "B": 1, "Zed": 3}) {
		t.Errorf("spawning_complete counts %v", got)
	}
	if n := logs.Count("class=Zed"); n != 1 {
		t.Errorf("%d log lines about Zed, want 1 warning", n)
	}
	sets, fallbacks, _ := users.snapshot()
	if len(sets) != 4 || fallbacks[len(fallbacks)-1] != "A" {
		t.Errorf("SetCounts calls %v fallbacks %v", sets, fallbacks)
	}

	// Stats flow every report interval with Locust's keys.
	st.Failure("GET", "/during", 2*time.Millisecond, 0, "HTTP 503")
	var rep map[string]any
	for {
		rep = dataMap(t, m.next(locust.TypeStats))
		if len(rep["errors"].(map[string]any)) > 0 {
			break
		}
	}
	if got := countsOf(t, rep["user_classes_count"]); !reflect.DeepEqual(got, map[string]int{"A": 1, "B": 1, "Zed": 3}) {
		t.Errorf("stats user_classes_count %v", got)
	}
	if rep["user_count"] != int64(5) {
		t.Errorf("stats user_count %v", rep["user_count"])
	}

	// Stop: the last interval, client_stopped, client_ready; no more stats.
	st.Success("GET", "/last", time.Millisecond, 1)
	m.send(id, locust.TypeStop, nil)
	last := dataMap(t, m.next(locust.TypeStats, locust.TypeClientStopped))
	for last["stats_total"].(map[string]any)["num_requests"] == int64(0) {
		last = dataMap(t, m.next(locust.TypeStats, locust.TypeClientStopped))
	}
	if e := last["stats"].([]any); len(e) != 1 || e[0].(map[string]any)["name"] != "/last" {
		t.Errorf("final stats entries %v", e)
	}
	if got := countsOf(t, last["user_classes_count"]); got["A"]+got["B"]+got["Zed"] != 0 {
		t.Errorf("final stats user counts %v", got)
	}
	m.next(locust.TypeClientStopped)
	m.next(locust.TypeClientReady)
	locusttest.WaitUntil(t, time.Second, "state ready", func() bool { return w.State() == locust.StateReady })
	m.send(id, locust.TypeAck, map[string]any{"index": 0})
	locusttest.WaitUntil(t, time.Second, "the second ack", func() bool { return w.Acks() == 2 })
	time.Sleep(300 * time.Millisecond)
	for _, g := range m.since() {
		if g.m.Type == locust.TypeStats {
			t.Error("stats sent while ready")
		}
	}

	// A new test: statistics reset again.
	m.send(id, locust.TypeSpawn, spawnData(200.5, map[string]int{"B": 2}))
	sc = dataMap(t, m.next(locust.TypeSpawningComplete))
	if got := countsOf(t, sc["user_classes_count"]); !reflect.DeepEqual(got, map[string]int{"B": 2}) {
		t.Errorf("second test counts %v", got)
	}
	if c := st.Cumulative(); c.Total.NumRequests != 0 {
		t.Errorf("stats not reset at the second test: %d", c.Total.NumRequests)
	}
	_ = stop()
	m.close()
}

// stop_timeout delays the new client_ready as in a Python worker.
func TestStopWaitsStopTimeoutBeforeReady(t *testing.T) {
	defer checkNoLeaks(t)
	m := startFakeMaster(t, "127.0.0.1:0")
	cfg, _ := fastConfig(t, m.addr, newFakeUsers("A", "B"))
	w := newWorker(t, cfg)
	stop, _, _ := runWorker(t, w)
	m.next(locust.TypeClientReady)
	m.send(w.NodeID(), locust.TypeAck, map[string]any{"index": 0})
	sd := spawnData(1.5, map[string]int{"A": 1})
	sd["stop_timeout"] = 1
	m.send(w.NodeID(), locust.TypeSpawn, sd)
	m.next(locust.TypeSpawningComplete)
	m.send(w.NodeID(), locust.TypeStop, nil)
	stopped := m.next(locust.TypeClientStopped)
	locusttest.WaitUntil(t, time.Second, "state stopped", func() bool { return w.State() == locust.StateStopped })
	if hb := dataMap(t, m.next(locust.TypeHeartbeat)); hb["state"] != "stopped" {
		t.Errorf("heartbeat state %v while waiting", hb["state"])
	}
	ready := m.next(locust.TypeClientReady)
	if d := ready.at.Sub(stopped.at); d < 900*time.Millisecond || d > 3*time.Second {
		t.Errorf("client_ready %s after client_stopped, want the stop_timeout of 1s", d)
	}
	_ = stop()
	m.close()
}

// quit: users stop, a last stats report goes out, Run returns nil.
func TestQuitFromMaster(t *testing.T) {
	defer checkNoLeaks(t)
	m := startFakeMaster(t, "127.0.0.1:0")
	users := newFakeUsers("A", "B")
	cfg, _ := fastConfig(t, m.addr, users)
	cfg.ReportInterval = time.Hour
	w := newWorker(t, cfg)
	_, done, runErr := runWorker(t, w)
	m.next(locust.TypeClientReady)
	m.send(w.NodeID(), locust.TypeAck, map[string]any{"index": 0})
	m.send(w.NodeID(), locust.TypeSpawn, spawnData(1.5, map[string]int{"A": 2}))
	m.next(locust.TypeSpawningComplete)
	cfg.Stats.Success("GET", "/x", time.Millisecond, 1)
	m.send(w.NodeID(), locust.TypeQuit, nil)
	select {
	case <-done:
		if *runErr != nil {
			t.Errorf("Run = %v, want nil after the master's quit", *runErr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after quit")
	}
	final := dataMap(t, m.next(locust.TypeStats))
	if final["stats_total"].(map[string]any)["num_requests"] != int64(1) {
		t.Errorf("final stats %v", final)
	}
	if _, _, stops := users.snapshot(); stops == 0 || len(users.Counts()) != 0 {
		t.Error("users not stopped")
	}
	time.Sleep(50 * time.Millisecond)
	if m.count(locust.TypeQuit) != 0 {
		t.Error("the worker echoed quit to a quitting master")
	}
	m.close()
}

// The worker's own end: users stop, last stats, quit to the master.
func TestShutdownSendsQuit(t *testing.T) {
	defer checkNoLeaks(t)
	m := startFakeMaster(t, "127.0.0.1:0")
	users := newFakeUsers("A", "B")
	cfg, _ := fastConfig(t, m.addr, users)
	cfg.ReportInterval = time.Hour
	w := newWorker(t, cfg)
	stop, _, _ := runWorker(t, w)
	m.next(locust.TypeClientReady)
	m.send(w.NodeID(), locust.TypeAck, map[string]any{"index": 0})
	m.send(w.NodeID(), locust.TypeSpawn, spawnData(1.5, map[string]int{"A": 2}))
	m.next(locust.TypeSpawningComplete)
	cfg.Stats.Success("GET", "/x", time.Millisecond, 1)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v", err)
	}
	final := dataMap(t, m.next(locust.TypeStats))
	if final["stats_total"].(map[string]any)["num_requests"] != int64(1) {
		t.Errorf("final stats %v", final)
	}
	m.next(locust.TypeQuit)
	if len(users.Counts()) != 0 {
		t.Error("users still running")
	}
	m.close()
}

// Garbage, unknown and custom messages and master heartbeats are
// ignored; the worker keeps serving.
func TestIgnoresGarbageAndUnknownMessages(t *testing.T) {
	defer checkNoLeaks(t)
	m := startFakeMaster(t, "127.0.0.1:0")
	cfg, logs := fastConfig(t, m.addr, newFakeUsers("A", "B"))
	w := newWorker(t, cfg)
	stop, done, runErr := runWorker(t, w)
	id := w.NodeID()
	m.next(locust.TypeClientReady)
	m.send(id, locust.TypeAck, map[string]any{"index": 0})
	m.sendRaw(id, []byte("not msgpack at all"))
	m.sendRaw(id, []byte{0x93, 0xa3, 'a', 'c', 'k', 0xc0}) // truncated
	m.send(id, "heartbeat", nil)                           // newer masters reply to heartbeats
	m.send(id, "my_custom_message", map[string]any{"x": []any{1, "two"}})
	m.send(id, "update_user_class", map[string]any{"user_class_name": "A"})
	m.send(id, locust.TypeSpawn, "not a dict")
	m.send(id, locust.TypeAck, "odd ack")
	m.send(id, locust.TypeSpawn, spawnData(1.5, map[string]int{"A": 1}))
	m.next(locust.TypeSpawningComplete)
	select {
	case <-done:
		t.Fatalf("Run ended: %v", *runErr)
	default:
	}
	if logs.Count("my_custom_message") != 1 || logs.Count("not a message") != 2 {
		t.Errorf("log:\n%s", logs.String())
	}
	_ = stop()
	m.close()
}

// reconnect re-creates the socket (a new TCP connection) without
// registering again; a worker still waiting for its ack sends
// client_ready again on the new socket.
func TestReconnectMessage(t *testing.T) {
	defer checkNoLeaks(t)
	m := startFakeMaster(t, "127.0.0.1:0")
	p := startProxy(t, m.addr)
	users := newFakeUsers("A", "B")
	cfg, _ := fastConfig(t, p.addr(), users)
	cfg.AckTimeout = time.Hour
	w := newWorker(t, cfg)
	stop, _, _ := runWorker(t, w)
	id := w.NodeID()

	// Not acked yet: reconnect, then client_ready again at once.
	m.next(locust.TypeClientReady)
	m.send(id, locust.TypeReconnect, nil)
	m.next(locust.TypeClientReady)
	locusttest.WaitUntil(t, 5*time.Second, "a second connection", func() bool { return p.accepted.Load() == 2 })
	m.send(id, locust.TypeAck, map[string]any{"index": 1})
	locusttest.WaitUntil(t, 5*time.Second, "the ack", func() bool { return w.Acks() == 1 })

	m.send(id, locust.TypeSpawn, spawnData(1.5, map[string]int{"A": 2}))
	m.next(locust.TypeSpawningComplete)
	n := m.count(locust.TypeClientReady)
	m.send(id, locust.TypeReconnect, nil)
	locusttest.WaitUntil(t, 5*time.Second, "a third connection", func() bool { return p.accepted.Load() == 3 })
	m.next(locust.TypeHeartbeat)
	m.next(locust.TypeStats)
	hb := dataMap(t, m.next(locust.TypeHeartbeat))
	if hb["state"] != "running" || len(users.Counts()) != 1 {
		t.Errorf("after reconnect: state %v, users %v", hb["state"], users.Counts())
	}
	if m.count(locust.TypeClientReady) != n {
		t.Error("client_ready sent after a reconnect while registered")
	}
	_ = stop()
	m.close()
}

// A broken connection (master gone) stops the users; the worker
// reconnects and registers again with the master that comes back on the
// same address.
func TestRejoinsRestartedMaster(t *testing.T) {
	defer checkNoLeaks(t)
	m := startFakeMaster(t, "127.0.0.1:0")
	addr := m.addr
	users := newFakeUsers("A", "B")
	cfg, logs := fastConfig(t, addr, users)
	w := newWorker(t, cfg)
	stop, _, _ := runWorker(t, w)
	id := w.NodeID()
	m.next(locust.TypeClientReady)
	m.send(id, locust.TypeAck, map[string]any{"index": 0})
	m.send(id, locust.TypeSpawn, spawnData(1.5, map[string]int{"A": 2}))
	m.next(locust.TypeSpawningComplete)
	cfg.Stats.Success("GET", "/lost", time.Millisecond, 1)

	m.close() // the master dies
	locusttest.WaitUntil(t, 5*time.Second, "the worker to notice", func() bool {
		return w.State() == locust.StateReady && len(users.Counts()) == 0
	})
	time.Sleep(100 * time.Millisecond) // it keeps trying to connect meanwhile
	m2 := startFakeMaster(t, addr)
	r := m2.next(locust.TypeClientReady)
	if r.id != id || r.m.Data != int64(-1) {
		t.Errorf("rejoin: %+v", r)
	}
	m2.send(id, locust.TypeAck, map[string]any{"index": 0})
	locusttest.WaitUntil(t, 5*time.Second, "the second ack", func() bool { return w.Acks() == 2 })
	if hb := dataMap(t, m2.next(locust.TypeHeartbeat)); hb["state"] != "ready" {
		t.Errorf("state after rejoin %v", hb["state"])
	}
	if !strings.Contains(logs.String(), "lost the connection") {
		t.Error("no log line about the lost connection")
	}
	// A test on the new master runs normally.
	m2.send(id, locust.TypeSpawn, spawnData(2.5, map[string]int{"B": 1}))
	m2.next(locust.TypeSpawningComplete)
	_ = stop()
	m2.close()
}

// A network failure between worker and master (connections reset while
// the master lives) is the same as a master restart for the worker.
func TestRejoinsAfterBrokenConnection(t *testing.T) {
	defer checkNoLeaks(t)
	m := startFakeMaster(t, "127.0.0.1:0")
	p := startProxy(t, m.addr)
	cfg, _ := fastConfig(t, p.addr(), newFakeUsers("A", "B"))
	w := newWorker(t, cfg)
	stop, _, _ := runWorker(t, w)
	m.next(locust.TypeClientReady)
	m.send(w.NodeID(), locust.TypeAck, map[string]any{"index": 0})
	locusttest.WaitUntil(t, 5*time.Second, "ack", func() bool { return w.Acks() == 1 })
	for i := 2; i <= 4; i++ {
		p.breakAll()
		m.next(locust.TypeClientReady)
		m.send(w.NodeID(), locust.TypeAck, map[string]any{"index": 0})
		locusttest.WaitUntil(t, 5*time.Second, fmt.Sprintf("ack %d", i), func() bool { return w.Acks() == i })
	}
	_ = stop()
	p.close()
	m.close()
}

// Without a master the worker keeps trying and ends cleanly with ctx.
func TestNoMasterEndsWithContext(t *testing.T) {
	defer checkNoLeaks(t)
	cfg, logs := fastConfig(t, "127.0.0.1:1", newFakeUsers("A"))
	w := newWorker(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := w.Run(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run = %v", err)
	}
	if logs.Count("cannot reach the Locust master") < 2 {
		t.Errorf("log:\n%s", logs)
	}
	if err := w.Run(context.Background()); err == nil {
		t.Error("a second Run did not fail")
	}
}

// With a factory, the pool is built per test for the master's host unless
// the worker has its own; a failure is reported to the master.
func TestUsersFactoryAndHost(t *testing.T) {
	defer checkNoLeaks(t)
	m := startFakeMaster(t, "127.0.0.1:0")
	cfg, _ := fastConfig(t, m.addr, nil)
	var mu sync.Mutex
	var hosts []string
	pools := 0
	factoryHosts := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), hosts...) }
	cfg.NewUsers = func(host string) (locust.Users, error) {
		mu.Lock()
		defer mu.Unlock()
		hosts = append(hosts, host)
		if host == "http://bad" {
			return nil, errors.New("not loopback")
		}
		pools++
		return newFakeUsers("A", "B"), nil
	}
	w := newWorker(t, cfg)
	stop, _, _ := runWorker(t, w)
	id := w.NodeID()
	m.next(locust.TypeClientReady)
	m.send(id, locust.TypeAck, map[string]any{"index": 0})
	test := func(ts float64, host string) map[string]any {
		sd := spawnData(ts, map[string]int{"A": 1})
		if host != "" {
			sd["host"] = host
		}
		m.send(id, locust.TypeSpawn, sd)
		sc := dataMap(t, m.next(locust.TypeSpawningComplete))
		m.send(id, locust.TypeStop, nil)
		m.next(locust.TypeClientReady)
		return sc
	}
	test(1.5, "http://127.0.0.1:1111")
	test(2.5, "http://127.0.0.1:1111") // same host: same pool
	test(3.5, "")                      // no host from the master: the plan's
	sc := test(4.5, "http://bad")
	if sc["user_count"] != int64(0) {
		t.Errorf("spawning_complete after a failed pool: %v", sc)
	}
	g, ok := m.last(locust.TypeException)
	if !ok {
		t.Fatal("no exception message")
	}
	exc := dataMap(t, g)
	if !strings.Contains(exc["msg"].(string), "not loopback") {
		t.Errorf("exception %v", exc)
	}
	if _, ok := exc["traceback"].(string); !ok {
		t.Errorf("exception without traceback: %v", exc)
	}
	mu.Lock()
	np := pools
	mu.Unlock()
	if want := []string{"http://127.0.0.1:1111", "", "http://bad"}; !reflect.DeepEqual(factoryHosts(), want) || np != 2 {
		t.Errorf("factory hosts %q (%d pools), want %q", factoryHosts(), np, want)
	}
	_ = stop()
	m.close()

	// The worker's own host wins.
	m = startFakeMaster(t, "127.0.0.1:0")
	cfg.MasterAddr = m.addr
	cfg.Host = "http://127.0.0.1:2222"
	mu.Lock()
	hosts = nil
	mu.Unlock()
	w = newWorker(t, cfg)
	stop, _, _ = runWorker(t, w)
	m.next(locust.TypeClientReady)
	m.send(w.NodeID(), locust.TypeAck, map[string]any{"index": 0})
	sd := spawnData(1.5, map[string]int{"A": 1})
	sd["host"] = "http://127.0.0.1:1111"
	m.send(w.NodeID(), locust.TypeSpawn, sd)
	m.next(locust.TypeSpawningComplete)
	if got := factoryHosts(); !reflect.DeepEqual(got, []string{"http://127.0.0.1:2222"}) {
		t.Errorf("factory hosts %q", got)
	}
	_ = stop()
	m.close()
}

// A master that never answers client_ready on a connection (a libzmq
// ROUTER ignores a second connection with an identity it still holds)
// gets the worker under a fresh identity after two tries.
func TestFreshIdentityWhenTheMasterIgnoresTheWorker(t *testing.T) {
	defer checkNoLeaks(t)
	for _, explicit := range []bool{false, true} {
		m := startFakeMaster(t, "127.0.0.1:0")
		cfg, logs := fastConfig(t, m.addr, newFakeUsers("A", "B"))
		if !explicit {
			cfg.NodeID = ""
		}
		w := newWorker(t, cfg)
		first := w.NodeID()
		stop, _, _ := runWorker(t, w)
		a := m.next(locust.TypeClientReady)
		b := m.next(locust.TypeClientReady)
		c := m.next(locust.TypeClientReady)
		if a.id != first || b.id != first || c.id == first || c.m.NodeID != c.id {
			t.Errorf("identities %q %q %q, want two tries as %q, then a fresh one", a.id, b.id, c.id, first)
		}
		if explicit && c.id != first+"_1" {
			t.Errorf("fresh identity %q, want %q", c.id, first+"_1")
		}
		if !explicit {
			host, hexID, ok := strings.Cut(c.id, "_")
			if !ok || host == "" || len(hexID) != 32 {
				t.Errorf("fresh identity %q, want hostname_<32 hex>", c.id)
			}
		}
		m.send(c.id, locust.TypeAck, map[string]any{"index": 1})
		locusttest.WaitUntil(t, 5*time.Second, "the ack", func() bool { return w.Acks() == 1 && w.NodeID() == c.id })
		if hb := m.next(locust.TypeHeartbeat); hb.id != c.id {
			t.Errorf("heartbeat from %q", hb.id)
		}
		if logs.Count("fresh identity") != 1 {
			t.Errorf("log:\n%s", logs)
		}
		_ = stop()
		m.close()
	}
}

// A master's last words before its connection closes are served: quit
// followed at once by EOF ends Run, it does not wait for a new master.
func TestQuitThenEOF(t *testing.T) {
	defer checkNoLeaks(t)
	for i := range 10 {
		m := startFakeMaster(t, "127.0.0.1:0")
		cfg, _ := fastConfig(t, m.addr, newFakeUsers("A", "B"))
		w := newWorker(t, cfg)
		_, done, runErr := runWorker(t, w)
		m.next(locust.TypeClientReady)
		m.send(w.NodeID(), locust.TypeAck, map[string]any{"index": 0})
		m.send(w.NodeID(), locust.TypeSpawn, spawnData(1.5, map[string]int{"A": 1}))
		m.send(w.NodeID(), locust.TypeQuit, nil)
		m.close()
		select {
		case <-done:
			if *runErr != nil {
				t.Errorf("round %d: Run = %v", i, *runErr)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: Run did not end after quit and EOF", i)
		}
	}
}

// A spawn while the worker waits out stop_timeout: client_ready first, as
// a Python worker (blocked in its sleep) would send it, then a new test.
func TestSpawnDuringStopTimeout(t *testing.T) {
	defer checkNoLeaks(t)
	m := startFakeMaster(t, "127.0.0.1:0")
	cfg, _ := fastConfig(t, m.addr, newFakeUsers("A", "B"))
	w := newWorker(t, cfg)
	stop, _, _ := runWorker(t, w)
	m.next(locust.TypeClientReady)
	m.send(w.NodeID(), locust.TypeAck, map[string]any{"index": 0})
	sd := spawnData(1.5, map[string]int{"A": 1})
	sd["stop_timeout"] = 30
	m.send(w.NodeID(), locust.TypeSpawn, sd)
	m.next(locust.TypeSpawningComplete)
	m.send(w.NodeID(), locust.TypeStop, nil)
	m.next(locust.TypeClientStopped)
	m.send(w.NodeID(), locust.TypeSpawn, spawnData(2.5, map[string]int{"B": 1}))
	m.next(locust.TypeClientReady)
	m.next(locust.TypeSpawning)
	sc := dataMap(t, m.next(locust.TypeSpawningComplete))
	if got := countsOf(t, sc["user_classes_count"]); !reflect.DeepEqual(got, map[string]int{"B": 1}) {
		t.Errorf("counts %v", got)
	}
	time.Sleep(200 * time.Millisecond)
	if w.State() != locust.StateRunning {
		t.Errorf("state %s", w.State())
	}
	_ = stop()
	m.close()
}
