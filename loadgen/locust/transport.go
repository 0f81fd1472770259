package locust

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/transport"
)

// zmq4 does not report a lost peer to a DEALER's user in any dependable
// way: when the TCP connection dies its reader queues one error and the
// connection is dropped, after which Send succeeds without sending
// anything and Recv blocks forever. So the worker dials through a
// transport of its own, registered with zmq4 under watchedTCP, that wraps
// each net.Conn: any read or write error (EOF when the master exits or is
// killed, a reset, a write stuck longer than lostTimeout, data left
// unacknowledged as long: TCP_USER_TIMEOUT on Linux) closes the link's
// lost channel, and the worker re-creates the socket.
const watchedTCP = "canarylab-locust-tcp"

var registerOnce sync.Once

func registerTransport() {
	registerOnce.Do(func() {
		if err := zmq4.RegisterTransport(watchedTCP, watchedTransport{}); err != nil {
			panic(err) // only a second registration could fail, and Once prevents it
		}
	})
}

type linkKey struct{}

type watchedTransport struct{}

func (watchedTransport) Dial(ctx context.Context, dialer transport.Dialer, addr string) (net.Conn, error) {
	l, _ := ctx.Value(linkKey{}).(*link)
	c, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil || l == nil {
		return c, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		setUserTimeout(tc, l.lostTimeout)
	}
	// The ZMTP handshake must not hang on a listener that never answers.
	_ = c.SetDeadline(time.Now().Add(l.handshakeTimeout))
	wc := &watchedConn{Conn: c, l: l}
	// Closing the socket's context (socket Close, or the worker's context
	// during the handshake) closes the connection.
	wc.stop = context.AfterFunc(ctx, func() { _ = c.Close() })
	l.conn.Store(wc)
	return wc, nil
}

func (watchedTransport) Listen(ctx context.Context, addr string) (net.Listener, error) {
	return nil, errors.New("locust: the worker transport only dials")
}

func (watchedTransport) Addr(ep string) (string, error) {
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, port), nil
}

type watchedConn struct {
	net.Conn
	l    *link
	stop func() bool
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.l.markLost(fmt.Errorf("read: %w", err))
	}
	return n, err
}

func (c *watchedConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.l.lostTimeout))
	n, err := c.Conn.Write(p)
	if err != nil {
		c.l.markLost(fmt.Errorf("write: %w", err))
	}
	return n, err
}

func (c *watchedConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// inbound is a frame the master sent on a link.
type inbound struct {
	l     *link
	frame []byte
}

// link is one DEALER socket connected to the master, with the goroutine
// that receives from it.
type link struct {
	nodeID           string
	sock             zmq4.Socket
	cancel           context.CancelFunc
	handshakeTimeout time.Duration
	lostTimeout      time.Duration
	conn             atomic.Pointer[watchedConn]

	lost     chan struct{} // closed when the connection failed
	lostOnce sync.Once
	lostErr  atomic.Pointer[error]
	closing  atomic.Bool
	closed   chan struct{} // closed by close()
	done     chan struct{} // closed when the receiver ends
}

type linkOptions struct {
	addr, nodeID     string
	handshakeTimeout time.Duration
	lostTimeout      time.Duration
	logger           *log.Logger
}

// dialLink connects a new DEALER with identity nodeID to the master and
// starts its receiver, which delivers frames to in. ctx only bounds the
// dial: the link lives until close.
func dialLink(ctx context.Context, o linkOptions, in chan<- inbound) (*link, error) {
	registerTransport()
	l := &link{
		nodeID:           o.nodeID,
		handshakeTimeout: o.handshakeTimeout,
		lostTimeout:      o.lostTimeout,
		lost:             make(chan struct{}),
		closed:           make(chan struct{}),
		done:             make(chan struct{}),
	}
	base, cancel := context.WithCancel(context.WithValue(context.WithoutCancel(ctx), linkKey{}, l))
	l.cancel = cancel
	stopDial := context.AfterFunc(ctx, cancel)
	l.sock = zmq4.NewDealer(base,
		zmq4.WithID(zmq4.SocketIdentity(o.nodeID)),
		zmq4.WithDialerMaxRetries(0),
		zmq4.WithDialerTimeout(o.handshakeTimeout),
		zmq4.WithTimeout(o.lostTimeout),
		zmq4.WithLogger(o.logger),
	)
	err := l.sock.Dial(watchedTCP + "://" + o.addr)
	if !stopDial() || err != nil {
		l.closing.Store(true)
		_ = l.sock.Close()
		cancel()
		if err == nil {
			err = ctx.Err()
		}
		return nil, err
	}
	if c := l.conn.Load(); c != nil {
		_ = c.Conn.SetReadDeadline(time.Time{})
	}
	go l.receive(in)
	return l, nil
}

func (l *link) receive(in chan<- inbound) {
	defer close(l.done)
	for {
		msg, err := l.sock.Recv()
		if err != nil {
			l.markLost(fmt.Errorf("receive: %w", err))
			return
		}
		if msg.Type == zmq4.CmdMsg {
			continue
		}
		for _, f := range msg.Frames {
			select {
			case in <- inbound{l, f}:
			case <-l.closed:
				return
			}
		}
	}
}

// send writes one frame; the write has finished (into the kernel's
// buffer) when it returns.
func (l *link) send(frame []byte) error {
	if err := l.sock.Send(zmq4.NewMsg(frame)); err != nil {
		l.markLost(fmt.Errorf("send: %w", err))
		return err
	}
	return nil
}

func (l *link) markLost(err error) {
	if l.closing.Load() {
		return
	}
	l.lostOnce.Do(func() {
		l.lostErr.Store(&err)
		close(l.lost)
	})
}

// err is why the link was lost.
func (l *link) err() error {
	if p := l.lostErr.Load(); p != nil {
		return *p
	}
	return nil
}

// close closes the socket and waits for the receiver to end.
func (l *link) close() {
	if l.closing.Swap(true) {
		<-l.done
		return
	}
	close(l.closed)
	_ = l.sock.Close()
	l.cancel()
	<-l.done
}
