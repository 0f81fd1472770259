package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// process is one component of the stack, running in a process group of its
// own so that stopping it reaches anything it forks, and so that a Ctrl-C
// from the terminal goes to the test (which stops the stack in order)
// rather than to the components directly.
type process struct {
	name    string
	path    string
	args    []string
	logPath string
	ports   []int

	cmd  *exec.Cmd
	log  *os.File
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, valid after done
}

// start launches the process with its output in its log file. Pdeathsig
// kills it if the test process dies without running its cleanup (a panic on
// `go test -timeout`, a SIGKILL).
func (p *process) start() error {
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: open log: %w", p.name, err)
	}
	p.log = f
	cmd := exec.Command(p.path, p.args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Env = componentEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(f, "# %s %s\n", p.path, strings.Join(p.args, " "))
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("%s: start %s: %w", p.name, p.path, err)
	}
	p.cmd = cmd
	p.done = make(chan struct{})
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return nil
}

// exited reports a process that has stopped on its own, with its status.
func (p *process) exited() error {
	if p.done == nil {
		return nil
	}
	select {
	case <-p.done:
		return fmt.Errorf("%s exited early (%v); log tail:\n%s", p.name, p.err, p.tail(30))
	default:
		return nil
	}
}

// stop sends SIGTERM to the process group, and SIGKILL after grace. It
// returns once the process has been reaped.
func (p *process) stop(grace time.Duration) error {
	if p.cmd == nil {
		return nil
	}
	defer p.log.Close()
	pgid := p.cmd.Process.Pid // Setpgid made it the group leader
	select {
	case <-p.done:
	default:
		if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("%s: SIGTERM: %w", p.name, err)
		}
		select {
		case <-p.done:
		case <-time.After(grace):
			if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("%s: SIGKILL: %w", p.name, err)
			}
			<-p.done
		}
	}
	// Anything the leader left in its group goes too.
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%s: SIGKILL group: %w", p.name, err)
	}
	return nil
}

// tail returns the last n lines of the log.
func (p *process) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// componentEnv is the test's environment without what would steer a
// component elsewhere: etcd reads every ETCD_* variable as a flag (and warns
// on unknown ones), client-go tools read KUBECONFIG, and proxies must not
// see loopback traffic.
func componentEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "ETCD_"), k == "KUBECONFIG",
			strings.EqualFold(k, "http_proxy"), strings.EqualFold(k, "https_proxy"), strings.EqualFold(k, "all_proxy"):
			continue
		}
		env = append(env, kv)
	}
	return append(env, "NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost")
}
