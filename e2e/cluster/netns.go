package cluster

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/canarylab/canarylab/e2e/tools"
)

// Environment variables between the outer test process and the one it
// re-executes inside the network namespace.
const (
	envInNetns = "CANARYLAB_E2E_NETNS"   // "1" in the re-executed process
	envWorkDir = "CANARYLAB_E2E_WORKDIR" // root of the stacks' temporary dirs
	envNoStack = "CANARYLAB_E2E_NOSTACK" // why no stack can start (skip, or fail in CI)
	envFailure = "CANARYLAB_E2E_FAILURE" // why the stack must fail (a build error)
)

// Main is the TestMain of a package whose tests call Start:
//
//	func TestMain(m *testing.M) { cluster.Main(m) }
//
// Flagger listens on all interfaces, and the brief is loopback only. So the
// whole stack lives in a private network namespace that has nothing but lo,
// and the test process must live there too to reach it. Main therefore:
//
//  1. builds the tools (tools.Ensure) in the host namespace, where the Go
//     module proxy is reachable;
//  2. re-executes the test binary with the same arguments in a new network
//     namespace (CLONE_NEWNET; needs root), which brings lo up and runs the
//     tests;
//  3. forwards SIGINT/SIGTERM to it, and once it has exited kills whatever
//     is still running in that namespace and removes the stacks' temporary
//     root: a backstop for a test binary that died without its cleanup
//     (the -timeout panic, SIGKILL).
//
// Without root, or with -short, the tests run in place and Start skips them;
// with CI=true it fails them instead, so CI cannot go green without the stack.
func Main(m *testing.M) {
	os.Exit(mainExit(m))
}

func mainExit(m *testing.M) int {
	if os.Getenv(envInNetns) == "1" {
		if err := loopbackUp(); err != nil {
			fmt.Fprintf(os.Stderr, "cluster: bring lo up in the test's network namespace: %v\n", err)
			return 1
		}
		return m.Run()
	}
	flag.Parse()
	if testing.Short() {
		os.Setenv(envNoStack, "-short: the control plane is not started")
		return m.Run()
	}
	if os.Geteuid() != 0 {
		os.Setenv(envNoStack, "a private network namespace needs root (CLONE_NEWNET); run as root, "+
			"since Flagger listens on all interfaces and the stack must not appear on the host")
		return m.Run()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	set, err := tools.Ensure(ctx, tools.Options{Logf: func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}})
	stop()
	if err != nil {
		// A build that fails is a failure, not a missing environment.
		os.Setenv(envFailure, fmt.Sprintf("building the e2e tools failed: %v", err))
		return m.Run()
	}
	return runInNetns(m, set)
}

// runInNetns re-executes the test binary in a new network namespace and
// returns its exit code. If the namespace cannot be made, the tests run in
// place and Start reports why.
func runInNetns(m *testing.M, set *tools.Set) int {
	work, err := os.MkdirTemp("", "canarylab-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "cluster: create work dir: %v\n", err)
		return 1
	}
	defer os.RemoveAll(work)

	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Stdin = os.Stdin
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	cmd.Env = append(os.Environ(), envInNetns+"=1", envWorkDir+"="+work, tools.EnvDir+"="+set.Dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}

	// Catch signals before the child exists, so none is lost in between.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "cluster: re-execute the tests in a new network namespace: %v\n", err)
		if errors.Is(err, syscall.EPERM) {
			os.Setenv(envNoStack, fmt.Sprintf("cannot create a network namespace: %v", err))
		} else {
			os.Setenv(envFailure, fmt.Sprintf("cannot re-execute the tests in a network namespace: %v", err))
		}
		return m.Run()
	}
	netns, nsErr := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var waitErr error
	var escalate <-chan time.Time
loop:
	for {
		select {
		case waitErr = <-done:
			break loop
		case s := <-sigs:
			// The terminal already sent it to the child too (same process
			// group); a signal from kill(1) reaches only us, so forward it.
			_ = cmd.Process.Signal(s)
			if escalate == nil {
				escalate = time.After(30 * time.Second)
			}
		case <-escalate:
			fmt.Fprintln(os.Stderr, "cluster: the tests did not stop within 30 s of the signal; killing them")
			_ = cmd.Process.Kill()
		}
	}
	if nsErr == nil {
		if n := killNetns(netns); n > 0 {
			fmt.Fprintf(os.Stderr, "cluster: killed %d process(es) left in the test's network namespace\n", n)
		}
	}
	var exit *exec.ExitError
	switch {
	case waitErr == nil:
		return 0
	case errors.As(waitErr, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return exit.ExitCode()
	default:
		fmt.Fprintf(os.Stderr, "cluster: wait for the tests: %v\n", waitErr)
		return 1
	}
}

// killNetns SIGKILLs every process whose network namespace is netns (a
// "net:[inode]" link) and returns how many it found.
func killNetns(netns string) int {
	n := 0
	for _, pid := range pids() {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && l == netns {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				n++
			}
		}
	}
	return n
}

// pids lists the processes in /proc.
func pids() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// loopbackUp sets IFF_UP on lo: a new network namespace has lo down, and
// nothing binds 127.0.0.1 until it is up. An ioctl, so `ip` is not needed.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("ifreq: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS lo: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS lo: %w", err)
	}
	return nil
}

// inPrivateNetns reports whether this process runs in the namespace Main
// made: marked by Main, and not the namespace of PID 1.
func inPrivateNetns() bool {
	if os.Getenv(envInNetns) != "1" {
		return false
	}
	self, err1 := os.Readlink("/proc/self/ns/net")
	host, err2 := os.Readlink("/proc/1/ns/net")
	return err1 == nil && (err2 != nil || self != host)
}

// Netns returns this process's network namespace ("net:[inode]"): the
// namespace every process of the stack shares, for checks that none is left.
func Netns() (string, error) {
	l, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return "", fmt.Errorf("cluster: read own network namespace: %w", err)
	}
	return l, nil
}

// workRoot is where stacks put their temporary directories: the root Main
// removes after the tests, else the system's temporary directory.
func workRoot() string {
	if d := os.Getenv(envWorkDir); d != "" {
		return d
	}
	return filepath.Clean(os.TempDir())
}
