//go:build linux

package loadgen

import (
	"context"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// timerfdWaiter sleeps until an arrival with a Linux timerfd, which the Go
// runtime's poller waits on like a socket. Go's own timers are only as
// precise as the poller's epoll_wait timeout, whole milliseconds: a
// 200 µs sleep (5,000 rps) ends up to a millisecond late whenever no
// network event happens to wake the poller first. A timerfd has
// nanosecond resolution and no timer slack, so the arrival wakes the
// dispatcher within microseconds.
type timerfdWaiter struct {
	f    *os.File
	rc   syscall.RawConn
	stop func() bool
}

func newArrivalWaiter(ctx context.Context) arrivalWaiter {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return newTimerWaiter(ctx)
	}
	// A non-blocking descriptor: os.NewFile registers it with the poller.
	f := os.NewFile(uintptr(fd), "timerfd")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return newTimerWaiter(ctx)
	}
	w := &timerfdWaiter{f: f, rc: rc}
	w.stop = context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Unix(1, 0)) })
	return w
}

// wait arms the timer inside the poller's read wait, after the poller
// forgot any earlier readiness, so the expiry cannot be missed; and with
// raw system calls (both return at once), which do not wake the runtime's
// sysmon thread as blocking ones do: waking it 5,000 times a second costs
// more than the requests.
func (w *timerfdWaiter) wait(ctx context.Context, d time.Duration) bool {
	armed, failed := false, false
	var buf [8]byte
	err := w.rc.Read(func(fd uintptr) bool {
		if !armed {
			armed = true
			spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
			_, _, e := unix.RawSyscall6(unix.SYS_TIMERFD_SETTIME, fd, 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0)
			if e != 0 {
				failed = true
				return true
			}
			return false // wait for the expiry
		}
		_, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		return e != unix.EAGAIN && e != unix.EINTR
	})
	if err != nil {
		return false
	}
	if failed {
		time.Sleep(d)
	}
	return ctx.Err() == nil
}

func (w *timerfdWaiter) close() {
	w.stop()
	_ = w.f.Close()
}
