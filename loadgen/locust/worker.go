// Package locust is a canarylab worker for a Locust 2 master: it joins a
// real master (Locust 2.12.1, as Debian ships it) over ZeroMQ exactly as a
// Python worker does, runs the users the master dispatches to it with
// canarylab's own user pool, and reports statistics in Locust's format,
// so the master's web UI, console and CSV files show canarylab's load.
//
// The protocol (see the project's reference locust-protocol.md): a DEALER
// socket whose identity is the node id sends msgpack arrays [type, data,
// node_id]. The worker registers with client_ready -1 until the master
// acks, heartbeats every second, answers spawn (absolute user counts per
// class) with spawning and spawning_complete, reports stats every 3 s
// while a test runs, and handles stop, quit and reconnect. When the
// connection to the master breaks (the master exited or was restarted) it
// stops its users, reconnects and registers again, without a restart.
//
// The master needs a locustfile whose User classes have the plan's class
// names; Locustfile writes one.
package locust

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/canarylab/canarylab/loadgen/plan"
	"github.com/canarylab/canarylab/loadgen/stats"
)

// Users is the pool of simulated users the worker controls.
// *loadgen.Users implements it.
type Users interface {
	// SetCounts starts and stops users until each class runs the given
	// absolute number (classes not named go to zero) without restarting
	// the users that stay; users of a class the pool does not know run
	// the tasks of fallback.
	SetCounts(ctx context.Context, counts map[string]int, fallback string) error
	// Counts returns the users running per class.
	Counts() map[string]int
	// StopAll stops every user and waits for them.
	StopAll()
	// Has reports whether the pool knows a class.
	Has(name string) bool
	// Classes returns the pool's class names in plan order.
	Classes() []string
}

// State is the worker state a heartbeat reports, with Locust's names.
type State string

// The worker states.
const (
	StateReady    State = "ready"
	StateSpawning State = "spawning"
	StateRunning  State = "running"
	StateStopped  State = "stopped"
)

// Protocol timing, as Locust 2.12.1 has it.
const (
	DefaultHeartbeatInterval = time.Second     // HEARTBEAT_INTERVAL
	DefaultReportInterval    = 3 * time.Second // WORKER_REPORT_INTERVAL
	DefaultAckTimeout        = 5 * time.Second // CONNECT_TIMEOUT
	DefaultReconnectInterval = 500 * time.Millisecond
	DefaultLostTimeout       = 15 * time.Second
)

// Config configures a Worker.
type Config struct {
	// MasterAddr is the master's host:port (its --master-bind-port,
	// 5557 by default).
	MasterAddr string
	// NodeID is the worker's identity on the master; default: hostname
	// + "_" + 32 random hex digits, as Python workers name themselves.
	NodeID string
	// Plan is the load plan the users run. Its first class is the
	// fallback: a class name the master sends that the plan does not know
	// runs that class's tasks (with one warning per name).
	Plan plan.Plan
	// Stats receives the users' requests; the worker reports and clears
	// its interval every ReportInterval and resets it when a test starts.
	Stats *stats.Stats

	// Users is a ready pool, built with its host by the caller (the
	// worker's own --host). The master's host is then ignored.
	Users Users
	// NewUsers builds the pool when a test starts, for a host: Host if
	// set, else the host in the master's spawn message ("" when the
	// master has none; the plan's hosts then apply). The pool is kept
	// while the host stays the same and rebuilt when a later test brings
	// another. Give Users or NewUsers, not both.
	NewUsers func(host string) (Users, error)
	// Host is the worker's own --host; it wins over the master's.
	Host string

	// Logger receives the worker's log (default slog.Default()).
	Logger *slog.Logger
	// OnMessage, if set, sees every message the worker sends (sent) or
	// receives, from the worker's goroutine; it must not block.
	OnMessage func(sent bool, m Message)

	// HeartbeatInterval, ReportInterval and AckTimeout are Locust's 1 s,
	// 3 s and 5 s by default: heartbeats, stats reports, and the wait for
	// an ack before client_ready goes out again.
	HeartbeatInterval time.Duration
	ReportInterval    time.Duration
	AckTimeout        time.Duration
	// ReconnectInterval is the pause between two attempts to reach the
	// master, and before re-creating the socket on reconnect (500 ms).
	ReconnectInterval time.Duration
	// LostTimeout is how long a write may block, or data sent stay
	// unacknowledged by the master's host (TCP_USER_TIMEOUT, on Linux),
	// before the connection counts as lost (15 s).
	LostTimeout time.Duration
}

// Worker is a Locust 2 worker. Create it with NewWorker and call Run once.
type Worker struct {
	cfg      Config
	baseLog  *slog.Logger
	log      *slog.Logger
	fallback string
	in       chan inbound
	// defaultID: the node id was generated, so a fresh one may be too.
	defaultID bool

	// Owned by Run's goroutine.
	link        *link
	users       Users
	usersHost   string
	lastSpawn   float64
	stopTimeout float64
	spawnCounts map[string]int
	warned      map[string]bool
	awaitingAck bool
	readyTries  int // client_ready sent on this socket without an ack
	generation  int // identities used before this one
	ackC        <-chan time.Time
	readyC      <-chan time.Time
	cpu         cpuMeter
	cpuWarned   bool
	hostNoted   bool

	nodeID atomic.Value // string
	state  atomic.Value // State
	index  atomic.Int64
	acks   atomic.Int64
	ran    atomic.Bool
}

// NewWorker checks cfg and returns a worker that is not yet connected.
func NewWorker(cfg Config) (*Worker, error) {
	if _, _, err := net.SplitHostPort(cfg.MasterAddr); err != nil {
		return nil, fmt.Errorf("locust: master address %q must be host:port: %w", cfg.MasterAddr, err)
	}
	if cfg.Stats == nil {
		return nil, errors.New("locust: Config.Stats is required")
	}
	if (cfg.Users == nil) == (cfg.NewUsers == nil) {
		return nil, errors.New("locust: give Config.Users (a pool with its host) or Config.NewUsers (built per test with the master's host), not both or neither")
	}
	defaultID := cfg.NodeID == ""
	if defaultID {
		cfg.NodeID = DefaultNodeID()
	}
	if !utf8.ValidString(cfg.NodeID) || len(cfg.NodeID) > 255 {
		return nil, fmt.Errorf("locust: node id %q must be UTF-8 of at most 255 bytes", cfg.NodeID)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.HeartbeatInterval, DefaultHeartbeatInterval)
	def(&cfg.ReportInterval, DefaultReportInterval)
	def(&cfg.AckTimeout, DefaultAckTimeout)
	def(&cfg.ReconnectInterval, DefaultReconnectInterval)
	def(&cfg.LostTimeout, DefaultLostTimeout)

	w := &Worker{
		cfg:       cfg,
		baseLog:   cfg.Logger,
		in:        make(chan inbound, 64),
		users:     cfg.Users,
		warned:    map[string]bool{},
		defaultID: defaultID,
	}
	w.setNodeID(cfg.NodeID)
	switch {
	case len(cfg.Plan.Users) > 0:
		w.fallback = cfg.Plan.Users[0].Name
	case cfg.Users != nil && len(cfg.Users.Classes()) > 0:
		w.fallback = cfg.Users.Classes()[0]
	default:
		return nil, errors.New("locust: Config.Plan has no user class (the first one runs classes the plan does not know)")
	}
	w.state.Store(StateReady)
	w.index.Store(-1)
	return w, nil
}

// DefaultNodeID is hostname + "_" + 32 random hex digits, as Locust names
// its workers.
func DefaultNodeID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "canarylab"
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return host + "_" + hex.EncodeToString(b[:])
}

// NodeID is the worker's identity on the master. It changes only when
// the worker had to register under a fresh identity (see Run).
func (w *Worker) NodeID() string { return w.nodeID.Load().(string) }

func (w *Worker) setNodeID(id string) {
	w.nodeID.Store(id)
	w.log = w.baseLog.With("node", id)
}

// freshNodeID is the identity for the next registration after the master
// ignored this one: a new default id, or the configured one with a
// generation suffix.
func (w *Worker) freshNodeID() string {
	w.generation++
	if w.defaultID {
		return DefaultNodeID()
	}
	return w.cfg.NodeID + "_" + strconv.Itoa(w.generation)
}

// State is the state the worker reports to the master.
func (w *Worker) State() State { return w.state.Load().(State) }

// Index is the index the master gave the worker in its last ack (-1
// before the first).
func (w *Worker) Index() int { return int(w.index.Load()) }

// Acks counts the acks received: 1 after joining, one more each time the
// worker registers again (after a stop or a reconnect to a restarted
// master).
func (w *Worker) Acks() int { return int(w.acks.Load()) }

func (w *Worker) setState(s State) {
	old := w.State()
	w.state.Store(s)
	if old != s {
		w.log.Debug("worker state", "from", string(old), "to", string(s))
	}
}

func (w *Worker) active() bool {
	s := w.State()
	return s == StateSpawning || s == StateRunning
}

// Run joins the master and serves it until the master sends quit (Run
// then returns nil) or ctx ends (Run stops the users, sends a last stats
// report and quit to the master, and returns ctx's error).
//
// A master that goes away (its connection fails: EOF, reset, a write that
// blocks or stays unacknowledged for LostTimeout) is waited for and
// rejoined: the users stop, the worker reconnects and sends client_ready
// until acked. If two client_ready on one connection stay unanswered, the
// worker re-registers under a fresh identity (see NodeID).
//
// Every goroutine Run starts has ended when it returns; users are stopped.
func (w *Worker) Run(ctx context.Context) error {
	if !w.ran.CompareAndSwap(false, true) {
		return errors.New("locust: Run may be called once per Worker")
	}
	defer func() {
		w.stopUsers()
		if w.link != nil {
			w.link.close()
			w.link = nil
		}
	}()
	if err := w.connect(ctx, false); err != nil {
		return err
	}
	w.sendReady()

	hb := time.NewTicker(w.cfg.HeartbeatInterval)
	defer hb.Stop()
	report := time.NewTicker(w.cfg.ReportInterval)
	defer report.Stop()
	for {
		var lost <-chan struct{}
		if w.link != nil {
			lost = w.link.lost
		}
		select {
		case <-ctx.Done():
			w.shutdown()
			return ctx.Err()
		case <-lost:
			quit, err := w.drainLost(ctx)
			if err != nil {
				return err
			}
			if quit {
				return nil
			}
			if w.link != nil && isClosed(w.link.lost) {
				if err := w.onLost(ctx); err != nil {
					return err
				}
			}
		case in := <-w.in:
			quit, err := w.handle(ctx, in)
			if err != nil {
				return err
			}
			if quit {
				return nil
			}
		case <-hb.C:
			w.heartbeat()
		case <-report.C:
			if w.active() {
				w.sendStats()
			}
		case <-w.ackC:
			w.ackC = nil
			if w.awaitingAck {
				if err := w.onNoAck(ctx); err != nil {
					return err
				}
			}
		case <-w.readyC:
			w.readyC = nil
			w.sendReady()
		}
	}
}

// connect dials the master until a socket is up or ctx ends; pause
// waits ReconnectInterval before the first attempt.
func (w *Worker) connect(ctx context.Context, pause bool) error {
	logger := log.New(&slogWriter{w.log}, "", 0)
	w.readyTries = 0
	var warned time.Time
	for attempt := 1; ; attempt++ {
		if pause || attempt > 1 {
			t := time.NewTimer(w.cfg.ReconnectInterval)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		l, err := dialLink(ctx, linkOptions{
			addr: w.cfg.MasterAddr, nodeID: w.NodeID(),
			handshakeTimeout: w.cfg.AckTimeout, lostTimeout: w.cfg.LostTimeout, logger: logger,
		}, w.in)
		if err == nil {
			w.link = l
			w.log.Debug("connected to the Locust master", "master", w.cfg.MasterAddr, "attempts", attempt)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch {
		case attempt == 1:
			w.log.Info("waiting for the Locust master", "master", w.cfg.MasterAddr, "retry_every", w.cfg.ReconnectInterval, "err", err)
			warned = time.Now()
		case time.Since(warned) >= 30*time.Second:
			w.log.Warn("still cannot reach the Locust master", "master", w.cfg.MasterAddr, "attempts", attempt, "err", err)
			warned = time.Now()
		default:
			w.log.Debug("cannot reach the Locust master", "master", w.cfg.MasterAddr, "attempt", attempt, "err", err)
		}
	}
}

// onNoAck handles a client_ready the master did not answer within
// AckTimeout: it goes out again; after the second unanswered one on a
// socket the worker re-creates the socket under a fresh identity. A libzmq
// ROUTER ignores a connection whose identity it still has on another
// connection (no ROUTER_HANDOVER in Locust), which is what a master sees
// when the worker's old connection broke without the master noticing: the
// new one would never be heard.
func (w *Worker) onNoAck(ctx context.Context) error {
	if w.readyTries < 2 {
		w.log.Warn("no ack from the Locust master yet; sending client_ready again", "master", w.cfg.MasterAddr, "after", w.cfg.AckTimeout)
		w.sendReady()
		return nil
	}
	old := w.NodeID()
	w.link.close()
	w.link = nil
	w.setNodeID(w.freshNodeID())
	w.log.Warn("the Locust master ignores this worker's connection (it may still hold an earlier one of the same identity); registering under a fresh identity",
		"master", w.cfg.MasterAddr, "old_node", old)
	if err := w.connect(ctx, false); err != nil {
		return err
	}
	w.sendReady()
	return nil
}

// slogWriter turns zmq4's log lines into debug records.
type slogWriter struct{ l *slog.Logger }

func (s *slogWriter) Write(p []byte) (int, error) {
	s.l.Debug("zmq4: " + string(p))
	return len(p), nil
}

// send encodes and sends one message; a failure marks the link lost.
func (w *Worker) send(typ string, data any) {
	m := Message{Type: typ, Data: data, NodeID: w.NodeID()}
	frame, err := m.Encode()
	if err != nil {
		w.log.Error("cannot encode a message for the Locust master", "type", typ, "err", err)
		return
	}
	if w.link == nil {
		w.log.Debug("not connected; message dropped", "type", typ)
		return
	}
	if w.cfg.OnMessage != nil {
		w.cfg.OnMessage(true, m)
	}
	if err := w.link.send(frame); err != nil {
		w.log.Debug("send failed", "type", typ, "err", err)
	}
}

// sendReady registers with the master (again) and waits for its ack.
func (w *Worker) sendReady() {
	w.setState(StateReady)
	w.send(TypeClientReady, ClientReadyVersion)
	w.readyTries++
	w.awaitingAck = true
	w.ackC = time.After(w.cfg.AckTimeout)
}

func (w *Worker) heartbeat() {
	cpu := w.cpu.sample(time.Now())
	if cpu > 90 && !w.cpuWarned && w.active() {
		w.cpuWarned = true
		w.log.Warn("CPU usage above 90%: the worker may not keep up with its users", "cpu_percent", cpu)
	}
	w.send(TypeHeartbeat, Dict{
		{"state", string(w.State())},
		{"current_cpu_usage", cpu},
		{"current_memory_usage", processRSS()},
	})
}

// runningCounts are the users running per class, with every class of the
// last spawn (0 when none run), as a Python worker's user_classes_count.
func (w *Worker) runningCounts() map[string]int {
	out := map[string]int{}
	for k := range w.spawnCounts {
		out[k] = 0
	}
	if w.users != nil {
		for k, v := range w.users.Counts() {
			out[k] = v
		}
	}
	return out
}

func (w *Worker) sendStats() {
	w.send(TypeStats, StatsData(w.cfg.Stats.TakeInterval(), w.runningCounts()))
}

func (w *Worker) stopUsers() {
	if w.users != nil {
		w.users.StopAll()
	}
}

// handle serves one frame from the master; quit reports the master's quit.
func (w *Worker) handle(ctx context.Context, in inbound) (quit bool, err error) {
	if in.l.nodeID != w.NodeID() {
		// Sent to the identity the worker gave up (onNoAck): an ack there
		// does not register this one.
		w.log.Debug("dropping a frame sent to an earlier identity", "to", in.l.nodeID)
		return false, nil
	}
	m, err := DecodeMessage(in.frame)
	if err != nil {
		w.log.Warn("ignoring a frame from the Locust master that is not a message", "err", err, "bytes", len(in.frame))
		return false, nil
	}
	if w.cfg.OnMessage != nil {
		w.cfg.OnMessage(false, m)
	}
	switch m.Type {
	case TypeAck:
		w.onAck(m.Data)
	case TypeSpawn:
		w.onSpawn(ctx, m.Data)
	case TypeStop:
		w.onStop()
	case TypeQuit:
		w.log.Info("the Locust master quit; stopping")
		w.stopUsers()
		w.sendStats()
		w.setState(StateStopped)
		return true, nil
	case TypeReconnect:
		return false, w.onReconnect(ctx)
	case TypeHeartbeat:
		// Masters from 2.19 answer each heartbeat; 2.12.1 sends none.
		w.log.Debug("heartbeat from the master")
	default:
		w.log.Debug("ignoring a message type the worker does not handle", "type", m.Type)
	}
	return false, nil
}

func (w *Worker) onAck(data any) {
	a := ParseAck(data)
	if a.HasIndex {
		w.index.Store(int64(a.Index))
	}
	if !w.awaitingAck {
		w.log.Debug("ack while registered", "index", a.Index)
		return
	}
	w.awaitingAck = false
	w.readyTries = 0
	w.ackC = nil
	w.acks.Add(1)
	w.log.Info("joined the Locust master", "master", w.cfg.MasterAddr, "index", w.Index())
}

func (w *Worker) onSpawn(ctx context.Context, data any) {
	if w.readyC != nil {
		// Still waiting out stop_timeout after a stop: a Python worker
		// would have sent client_ready before reading this spawn.
		w.readyC = nil
		w.sendReady()
	}
	// A Python worker answers every spawn with spawning, even one it then
	// discards.
	w.send(TypeSpawning, nil)
	sp, err := ParseSpawn(data)
	if err != nil {
		w.log.Error("ignoring a spawn message the worker cannot read", "err", err)
		return
	}
	if sp.Timestamp <= w.lastSpawn {
		w.log.Info("discarding a spawn message not newer than the previous one", "timestamp", sp.Timestamp, "previous", w.lastSpawn)
		return
	}
	w.lastSpawn = sp.Timestamp
	w.stopTimeout = sp.StopTimeout
	var setupErr error
	if !w.active() {
		// A test starts: fresh statistics, a pool for the test's host.
		w.cfg.Stats.Reset()
		w.cpuWarned = false
		setupErr = w.ensureUsers(sp.Host)
		w.log.Info("test starting", "users", sp.UserClassesCount)
	}
	w.setState(StateSpawning)
	w.spawnCounts = sp.UserClassesCount
	if setupErr == nil && w.users == nil {
		setupErr = errors.New("no user pool (it could not be built when the test started)")
	}
	if setupErr == nil {
		for _, name := range sortedNames(sp.UserClassesCount) {
			if !w.users.Has(name) && !w.warned[name] {
				w.warned[name] = true
				w.log.Warn("the master sent a user class the plan does not have; its users run the plan's first class", "class", name, "runs", w.fallback)
			}
		}
		setupErr = w.users.SetCounts(ctx, sp.UserClassesCount, w.fallback)
	}
	if setupErr != nil {
		w.log.Error("cannot run the users the master asked for", "err", setupErr)
		w.send(TypeException, Dict{{"msg", "canarylab worker: " + setupErr.Error()}, {"traceback", ""}})
	}
	counts := w.runningCounts()
	n := 0
	for _, c := range counts {
		n += c
	}
	w.send(TypeSpawningComplete, Dict{{"user_classes_count", counts}, {"user_count", n}})
	w.setState(StateRunning)
}

// ensureUsers builds the pool for a test's host when the caller gave a
// factory.
func (w *Worker) ensureUsers(spawnHost string) error {
	if w.cfg.NewUsers == nil {
		if spawnHost != "" && !w.hostNoted {
			w.hostNoted = true
			w.log.Info("the worker's users have their own host; ignoring the master's", "master_host", spawnHost)
		}
		return nil
	}
	host := w.cfg.Host
	if host == "" {
		host = spawnHost
	} else if spawnHost != "" && spawnHost != host && !w.hostNoted {
		w.hostNoted = true
		w.log.Info("the worker's --host wins over the master's", "host", host, "master_host", spawnHost)
	}
	if w.users != nil && host == w.usersHost {
		return nil
	}
	if w.users != nil {
		w.users.StopAll()
		w.users = nil
	}
	u, err := w.cfg.NewUsers(host)
	if err != nil {
		return fmt.Errorf("build the users for host %q: %w", host, err)
	}
	w.users, w.usersHost = u, host
	return nil
}

func sortedNames(m map[string]int) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// onStop stops the test: users stop, the last interval is reported, the
// master is told (client_stopped removes the worker from its list) and
// the worker registers again as ready, after the master's stop_timeout
// and $LOCUST_WORKER_ADDITIONAL_WAIT_BEFORE_READY_AFTER_STOP seconds as a
// Python worker waits.
func (w *Worker) onStop() {
	wasActive := w.active()
	w.stopUsers()
	if wasActive {
		w.sendStats()
	}
	w.log.Info("the Locust master stopped the test")
	w.setState(StateStopped)
	w.send(TypeClientStopped, nil)
	wait := time.Duration(w.stopTimeout * float64(time.Second))
	if s := os.Getenv("LOCUST_WORKER_ADDITIONAL_WAIT_BEFORE_READY_AFTER_STOP"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			wait += time.Duration(n) * time.Second
		}
	}
	w.awaitingAck, w.ackC = false, nil
	if wait <= 0 {
		w.sendReady()
		return
	}
	w.readyC = time.After(wait)
}

// onReconnect re-creates the socket as a Python worker does when the
// master could not read one of its frames. The master still knows the
// worker, so it does not register again, unless it was still waiting for
// an ack: then client_ready goes out again at once on the new socket. The
// new socket dials after ReconnectInterval, so that the master has dropped
// the old connection (it would ignore a second one of the same identity).
func (w *Worker) onReconnect(ctx context.Context) error {
	w.log.Warn("the Locust master asked the worker to reconnect; re-creating the socket")
	w.link.close()
	w.link = nil
	if err := w.connect(ctx, true); err != nil {
		return err
	}
	if w.awaitingAck {
		w.sendReady()
	}
	return nil
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// drainLost serves the frames the master sent before its connection
// broke (its last words may be quit), for up to a second while the
// receiver still delivers them.
func (w *Worker) drainLost(ctx context.Context) (quit bool, err error) {
	l := w.link
	deadline := time.NewTimer(time.Second)
	defer deadline.Stop()
	for {
		select {
		case in := <-w.in:
			if quit, err := w.handle(ctx, in); quit || err != nil {
				return quit, err
			}
			if w.link != l {
				return false, nil // re-created meanwhile (reconnect)
			}
		case <-l.done:
			for {
				select {
				case in := <-w.in:
					if quit, err := w.handle(ctx, in); quit || err != nil || w.link != l {
						return quit, err
					}
				default:
					return false, nil
				}
			}
		case <-deadline.C:
			return false, nil
		case <-ctx.Done():
			return false, nil
		}
	}
}

// onLost handles a broken connection: the master exited, was killed or
// restarted. The users stop (a test without its master is not
// controlled), their unreported requests are dropped (a restarted master
// would merge them into its next test), and the worker reconnects and
// registers again.
func (w *Worker) onLost(ctx context.Context) error {
	err := w.link.err()
	w.link.close()
	w.link = nil
	running := 0
	if w.users != nil {
		for _, c := range w.users.Counts() {
			running += c
		}
	}
	w.stopUsers()
	dropped := w.cfg.Stats.TakeInterval().Total
	w.log.Warn("lost the connection to the Locust master; users stopped, reconnecting",
		"master", w.cfg.MasterAddr, "err", err, "users_stopped", running, "requests_unreported", dropped.NumRequests)
	w.spawnCounts = nil
	w.readyC = nil
	w.setState(StateReady)
	if err := w.connect(ctx, false); err != nil {
		return err
	}
	w.sendReady()
	return nil
}

// shutdown is the worker's own end (ctx done): users stop, the last
// interval is reported and the master is told the worker quits.
func (w *Worker) shutdown() {
	wasActive := w.active()
	w.stopUsers()
	if w.link != nil {
		if wasActive {
			w.sendStats()
		}
		w.send(TypeQuit, nil)
	}
	w.setState(StateStopped)
	w.log.Info("left the Locust master", "master", w.cfg.MasterAddr)
}
