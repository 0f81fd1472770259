package locust

import (
	"net"
	"syscall"
	"time"
)

// tcpUserTimeout is TCP_USER_TIMEOUT from linux/tcp.h (not in syscall).
const tcpUserTimeout = 0x12

// setUserTimeout makes the kernel abort the connection when sent data
// stays unacknowledged for d: a master host that vanished without closing
// the connection (no FIN, no RST) then shows as a read or write error.
func setUserTimeout(c *net.TCPConn, d time.Duration) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, int(d/time.Millisecond))
	})
}
