package locust_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/canarylab/canarylab/loadgen"
	"github.com/canarylab/canarylab/loadgen/internal/locusttest"
	"github.com/canarylab/canarylab/loadgen/locust"
)

// *loadgen.Users is what the worker drives in production.
var _ locust.Users = (*loadgen.Users)(nil)

// fakeMaster is a ZeroMQ ROUTER speaking the master's side of the
// protocol, for fast and exact tests of the worker.
type fakeMaster struct {
	t    *testing.T
	sock zmq4.Socket
	addr string
	done chan struct{}

	mu     sync.Mutex
	all    []got
	cursor int
}

type got struct {
	id string // the ZeroMQ routing id of the sender
	m  locust.Message
	at time.Time
}

func startFakeMaster(t *testing.T, addr string) *fakeMaster {
	t.Helper()
	sock := zmq4.NewRouter(context.Background(), zmq4.WithLogger(nil))
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		if err = sock.Listen("tcp://" + addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the port of a master that just closed
	}
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeMaster{t: t, sock: sock, addr: sock.Addr().String(), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for {
			msg, err := sock.Recv()
			if err != nil {
				return
			}
			if len(msg.Frames) != 2 {
				t.Errorf("master got %d frames", len(msg.Frames))
				continue
			}
			m, err := locust.DecodeMessage(msg.Frames[1])
			if err != nil {
				t.Errorf("master cannot decode %x: %v", msg.Frames[1], err)
				continue
			}
			f.mu.Lock()
			f.all = append(f.all, got{id: string(msg.Frames[0]), m: m, at: time.Now()})
			f.mu.Unlock()
		}
	}()
	t.Cleanup(f.close)
	return f
}

func (f *fakeMaster) close() {
	_ = f.sock.Close()
	<-f.done
}

func (f *fakeMaster) send(id, typ string, data any) {
	f.t.Helper()
	frame, err := locust.Message{Type: typ, Data: data, NodeID: id}.Encode()
	if err != nil {
		f.t.Fatal(err)
	}
	f.sendRaw(id, frame)
}

func (f *fakeMaster) sendRaw(id string, frame []byte) {
	f.t.Helper()
	if err := f.sock.Send(zmq4.NewMsgFrom([]byte(id), frame)); err != nil {
		f.t.Fatal(err)
	}
}

// next waits for the next message of one of the types after the cursor
// and moves the cursor past it.
func (f *fakeMaster) next(types ...string) got {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		for i := f.cursor; i < len(f.all); i++ {
			for _, typ := range types {
				if f.all[i].m.Type == typ {
					f.cursor = i + 1
					g := f.all[i]
					f.mu.Unlock()
					return g
				}
			}
		}
		f.mu.Unlock()
		if time.Now().After(deadline) {
			f.t.Fatalf("master: no %v message within 10s; got %v", types, f.types())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// last returns the last message of a type received so far.
func (f *fakeMaster) last(typ string) (got, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.all) - 1; i >= 0; i-- {
		if f.all[i].m.Type == typ {
			return f.all[i], true
		}
	}
	return got{}, false
}

// since returns the messages received after the cursor, without moving it.
func (f *fakeMaster) since() []got {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]got(nil), f.all[f.cursor:]...)
}

func (f *fakeMaster) types() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, g := range f.all {
		out = append(out, g.m.Type)
	}
	return out
}

func (f *fakeMaster) count(typ string) int {
	n := 0
	for _, t := range f.types() {
		if t == typ {
			n++
		}
	}
	return n
}

// fakeUsers records what the worker asks of its pool.
type fakeUsers struct {
	classes []string

	mu        sync.Mutex
	counts    map[string]int
	sets      []map[string]int
	fallbacks []string
	stopAlls  int
}

func newFakeUsers(classes ...string) *fakeUsers {
	return &fakeUsers{classes: classes, counts: map[string]int{}}
}

func (u *fakeUsers) SetCounts(_ context.Context, counts map[string]int, fallback string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	c := map[string]int{}
	for k, v := range counts {
		if v > 0 {
			c[k] = v
		}
	}
	u.counts = c
	u.sets = append(u.sets, counts)
	u.fallbacks = append(u.fallbacks, fallback)
	return nil
}

func (u *fakeUsers) Counts() map[string]int {
	u.mu.Lock()
	defer u.mu.Unlock()
	c := map[string]int{}
	for k, v := range u.counts {
		c[k] = v
	}
	return c
}

func (u *fakeUsers) StopAll() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.counts = map[string]int{}
	u.stopAlls++
}

func (u *fakeUsers) Has(name string) bool {
	for _, c := range u.classes {
		if c == name {
			return true
		}
	}
	return false
}

func (u *fakeUsers) Classes() []string { return append([]string(nil), u.classes...) }

func (u *fakeUsers) snapshot() (sets []map[string]int, fallbacks []string, stopAlls int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]map[string]int(nil), u.sets...), append([]string(nil), u.fallbacks...), u.stopAlls
}

func testLogger(t *testing.T) (*slog.Logger, *locusttest.LogBuffer) {
	b := &locusttest.LogBuffer{}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("LOCUST_TEST_LOG") != "" {
			t.Logf("worker log:\n%s", b.String())
		}
	})
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// runWorker runs w in the background. stop cancels it and returns Run's
// error; done is closed when Run returned, with that error in *runErr.
func runWorker(t *testing.T, w *locust.Worker) (stop func() error, done <-chan struct{}, runErr *error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan struct{})
	var err error
	go func() {
		defer close(finished)
		err = w.Run(ctx)
	}()
	stop = func() error {
		cancel()
		select {
		case <-finished:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return within 10s of its context's end")
		}
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop, finished, &err
}

// checkNoLeaks fails if goroutines of the worker or of zmq4 outlive the
// test: call it after Run returned and the fake master closed.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	if t.Failed() {
		return // a failed test may leave its fake master running
	}
	var leaked []string
	start := time.Now()
	defer func() {
		if d := time.Since(start); d > 50*time.Millisecond {
			t.Logf("worker and zmq4 goroutines took %s to end", d)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		leaked = leaked[:0]
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		stacks := strings.Split(string(buf), "\n\n")
		for _, s := range stacks[1:] { // [0] is this goroutine
			if strings.Contains(s, "github.com/go-zeromq/zmq4") || strings.Contains(s, "canarylab/loadgen/locust.") {
				leaked = append(leaked, s)
			}
		}
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines leaked:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tcpProxy forwards connections to a target and can break them all, as a
// network failure would.
type tcpProxy struct {
	ln       net.Listener
	target   atomic.Value // string
	accepted atomic.Int64
	keepUp   atomic.Bool
	mu       sync.Mutex
	conns    []net.Conn
	down     []net.Conn // the worker-facing halves
	wg       sync.WaitGroup
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln}
	p.target.Store(target)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target.Load().(string))
			if err != nil {
				c.Close()
				continue
			}
			p.accepted.Add(1)
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.down = append(p.down, c)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); _, _ = io.Copy(up, c); p.closeUpUnlessDown(up) }()
			go func() { defer p.wg.Done(); _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) breakAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// closeUpUnlessDown closes the master-facing half when its worker half
// ended, except after breakDownstream (then the master's end stays open).
func (p *tcpProxy) closeUpUnlessDown(up net.Conn) {
	if p.keepUp.Load() {
		return
	}
	up.Close()
}

// breakDownstream closes only the worker-facing connections: the master
// keeps its end open and notices nothing, as behind a middlebox that
// dropped a connection.
func (p *tcpProxy) breakDownstream() {
	p.keepUp.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.down {
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	p.down = nil
}

func (p *tcpProxy) close() {
	p.ln.Close()
	p.breakAll()
	p.wg.Wait()
}
