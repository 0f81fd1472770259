package boomercompat

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/myzhan/boomer"

	"github.com/canarylab/canarylab/loadgen/locust"
	"github.com/canarylab/canarylab/loadgen/output"
	"github.com/canarylab/canarylab/loadgen/stats"
)

// Config configures a worker that runs boomer tasks.
type Config struct {
	// MasterAddr is the Locust 2 master's host:port (boomer's
	// --master-host and --master-port).
	MasterAddr string
	// Options configure the users.
	Options
	// Worker, if set, adjusts the worker's configuration (intervals,
	// node ID, message hooks) before it starts.
	Worker func(*locust.Config)
}

// RunWorker joins a Locust 2 master and runs tasks as its users until the
// master sends quit (nil) or ctx ends (ctx's error), then stops every user
// and gives boomer's recording back.
func RunWorker(ctx context.Context, cfg Config, tasks ...*boomer.Task) error {
	st := stats.New(nil)
	users, err := NewUsers(tasks, st, cfg.Options)
	if err != nil {
		return err
	}
	defer users.Close()
	wc := locust.Config{MasterAddr: cfg.MasterAddr, Stats: st, Users: users, Logger: cfg.Logger}
	if cfg.Worker != nil {
		cfg.Worker(&wc)
	}
	w, err := locust.NewWorker(wc)
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

// Run is boomer.Run for canarylab: call it where the program called
// boomer.Run, with the same tasks. It reads boomer's own command-line flags
// (--master-host, --master-port, --max-rps, --request-increase-rate,
// --run-tasks), joins the Locust 2 master as a worker, and returns when the
// master sends quit; SIGINT or SIGTERM stop the users, tell the master and
// return. A configuration or connection error is logged and the program
// exits with status 1, as boomer does.
func Run(tasks ...*boomer.Task) {
	if !flag.Parsed() {
		flag.Parse()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := runFlags(ctx, flag.CommandLine, os.Stdout, tasks); err != nil {
		slog.Error("boomercompat", "err", err)
		stop()
		os.Exit(1)
	}
}

// runFlags is Run with its flags, output and context given.
func runFlags(ctx context.Context, fs *flag.FlagSet, out io.Writer, tasks []*boomer.Task) error {
	get := func(name string) string {
		if f := fs.Lookup(name); f != nil {
			return f.Value.String()
		}
		return ""
	}
	if names := get("run-tasks"); names != "" {
		return runOnce(out, tasks, strings.Split(names, ","))
	}
	limiter, err := rateLimiter(get("max-rps"), get("request-increase-rate"))
	if err != nil {
		return err
	}
	host, port := get("master-host"), get("master-port")
	if host == "" {
		host = "127.0.0.1"
	}
	if port == "" {
		port = "5557"
	}
	err = RunWorker(ctx, Config{MasterAddr: net.JoinHostPort(host, port), Options: Options{RateLimiter: limiter}}, tasks...)
	if errors.Is(err, context.Canceled) {
		return nil // a signal: the users stopped and the master was told
	}
	return err
}

// rateLimiter builds the limiter boomer's --max-rps and
// --request-increase-rate ask for (nil: none), as boomer does.
func rateLimiter(maxRPS, increase string) (boomer.RateLimiter, error) {
	limit := int64(0)
	if maxRPS != "" {
		v, err := strconv.ParseInt(maxRPS, 10, 64)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("--max-rps %q: want a whole number of requests a second, 0 for no limit", maxRPS)
		}
		limit = v
	}
	if increase != "" && increase != "-1" {
		if limit == 0 {
			limit = math.MaxInt64
		}
		l, err := boomer.NewRampUpRateLimiter(limit, increase, time.Second)
		if err != nil {
			return nil, fmt.Errorf("--request-increase-rate %q: %w (e.g. 100 or 100/1s)", increase, err)
		}
		return l, nil
	}
	if limit > 0 {
		return boomer.NewStableRateLimiter(limit, time.Second), nil
	}
	return nil, nil
}

// runOnce runs the named tasks once each, without a master, and prints
// what they recorded: boomer's --run-tasks, for debugging a task.
func runOnce(out io.Writer, tasks []*boomer.Task, names []string) error {
	st := stats.New(nil)
	rec, err := installRecorder(st)
	if err != nil {
		return err
	}
	ran := 0
	for _, name := range names {
		for _, t := range tasks {
			if t != nil && t.Name != "" && t.Name == strings.TrimSpace(name) {
				fmt.Fprintf(out, "Running %s\n", t.Name)
				t.Fn()
				ran++
			}
		}
	}
	rec.uninstall()
	if ran == 0 {
		return fmt.Errorf("--run-tasks %q: no task has that name", strings.Join(names, ","))
	}
	output.ConsoleTable(out, st.Cumulative(), false)
	return nil
}

// Locustfile returns a locustfile for the master that declares class, the
// user class boomer workers run as (DefaultClass if empty): boomer's
// dummy.py, which the master needs to learn the class it dispatches.
func Locustfile(class string) string {
	if class == "" {
		class = DefaultClass
	}
	return fmt.Sprintf(`# A locustfile for a Locust 2 master whose workers run boomer tasks with
# canarylab (loadgen/boomercompat). The master only learns the user class
# from it; the workers run the Go tasks.
from locust import User, task


class %s(User):
    @task(20)
    def hello(self):
        pass
`, class)
}
