package locust

import (
	"context"
	"log"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
)

// The worker's connection carries TCP_USER_TIMEOUT = LostTimeout, so a
// master host that vanishes without a FIN or RST is noticed.
func TestUserTimeoutIsSet(t *testing.T) {
	router := zmq4.NewRouter(context.Background())
	defer router.Close()
	if err := router.Listen("tcp://127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	in := make(chan inbound, 1)
	l, err := dialLink(context.Background(), linkOptions{
		addr: router.Addr().String(), nodeID: "n", handshakeTimeout: time.Second,
		lostTimeout: 7 * time.Second, logger: log.Default(),
	}, in)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	raw, err := l.conn.Load().Conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		got, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout)
	}); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if got != 7000 {
		t.Errorf("TCP_USER_TIMEOUT = %d ms, want 7000", got)
	}
}
