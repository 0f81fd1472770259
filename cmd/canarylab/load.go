package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/canarylab/canarylab/loadgen"
	"github.com/canarylab/canarylab/loadgen/locust"
	"github.com/canarylab/canarylab/loadgen/output"
	"github.com/canarylab/canarylab/loadgen/plan"
	"github.com/canarylab/canarylab/loadgen/stats"
	"github.com/canarylab/canarylab/loadgen/threshold"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
)

const loadEnvPrefix = "CANARYLAB_LOAD"

// exitThresholds is the exit code of a run whose thresholds broke (k6's).
const exitThresholds = 99

// thresholdError marks a run that finished but broke a threshold.
type thresholdError struct{ broken int }

func (e thresholdError) Error() string {
	return fmt.Sprintf("%d threshold(s) broken", e.broken)
}

type loadFlags struct {
	master              string
	printLocustfile     bool
	planPath, host      string
	users               int
	spawnRate           float64
	duration            time.Duration
	rate, rampFrom      float64
	stages              []string
	maxConcurrency      int
	jsonPath, csvPrefix string
	metricsListen       string
	thresholds          []string
	seed                uint64
	quiet               bool
	logFormat, logLevel string
	consoleEvery        time.Duration
}

func newLoadCmd() *cobra.Command {
	var f loadFlags
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Generate HTTP load: a worker of a Locust 2 master, or standalone (closed or open model)",
		Long: `Generate HTTP load from a plan (see loadgen/plans/ for ready ones).

As a worker of a Locust 2 master (the master's UI and CSVs show it like a
Python worker; give the master the plan's locustfile so class names match):
  canarylab load --print-locustfile --plan plan.yaml > locustfile.py
  locust -f locustfile.py --master &
  canarylab load --master 127.0.0.1:5557 --plan plan.yaml --host http://127.0.0.1:8080

Standalone, closed model (users that loop over tasks, as Locust):
  canarylab load --host http://127.0.0.1:8080 --users 20 --spawn-rate 5 --duration 1m
  canarylab load --host … --stage 30s:10:5 --stage 1m:50:10 --stage 30s:0:10

Standalone, open model (evenly paced arrivals, latency from the intended start):
  canarylab load --host http://127.0.0.1:8080 --rate 500 --duration 1m
  canarylab load --host … --rate 1000 --ramp-from 100 --duration 2m

With no --plan every user GETs / on --host. Load only goes to this machine
(127.0.0.0/8, ::1, localhost). Ctrl-C or the end of the run stops every user
and prints the summary; a broken --threshold makes the exit code 99.`,
		Example: `  canarylab load --host http://127.0.0.1:8080 --plan loadgen/plans/sample.yaml --users 20 --spawn-rate 10 --duration 30s \
    --threshold 'p99<500ms' --threshold 'errors<1%' --json out.json --csv out`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return bindEnv(cmd, loadEnvPrefix)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLoad(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.master, "master", "", "join the Locust 2 master at HOST:PORT as a worker (its --master-bind-port, 5557 by default)")
	fl.BoolVar(&f.printLocustfile, "print-locustfile", false, "print the locustfile a Locust master needs for the plan, and exit")
	fl.StringVar(&f.planPath, "plan", "", "load plan (YAML or JSON); default: GET / on --host")
	fl.StringVar(&f.host, "host", "", "base URL of the target, such as http://127.0.0.1:8080 (wins over the plan's host)")
	fl.IntVar(&f.users, "users", 0, "closed model: number of users")
	fl.Float64Var(&f.spawnRate, "spawn-rate", 0, "closed model: users started per second (0: all at once)")
	fl.DurationVar(&f.duration, "duration", 0, "length of the run")
	fl.Float64Var(&f.rate, "rate", 0, "open model: requests per second")
	fl.Float64Var(&f.rampFrom, "ramp-from", -1, "open model: start at this rate and ramp linearly to --rate over --duration")
	fl.StringArrayVar(&f.stages, "stage", nil, "closed model stage DURATION:USERS[:SPAWN_RATE], repeatable (instead of --users/--duration)")
	fl.IntVar(&f.maxConcurrency, "max-concurrency", 1000, "open model: bound on requests in flight; arrivals beyond it are dropped and counted")
	fl.StringVar(&f.jsonPath, "json", "", "write a JSON summary to this file")
	fl.StringVar(&f.csvPrefix, "csv", "", "write Locust's CSV files with this prefix (PREFIX_stats.csv, …)")
	fl.StringVar(&f.metricsListen, "metrics-listen", "", "serve Prometheus metrics on this address while the run lasts")
	fl.StringArrayVar(&f.thresholds, "threshold", nil, "pass/fail criterion, repeatable: p99<500ms, errors<1%, rps>=100, p95{name=/api}<300ms")
	fl.Uint64Var(&f.seed, "seed", 0, "seed for task choice and waits (default: random)")
	fl.BoolVar(&f.quiet, "quiet", false, "no live table, only the summary")
	fl.DurationVar(&f.consoleEvery, "console-interval", 2*time.Second, "how often the live table prints")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	envHelp(cmd, loadEnvPrefix)
	return cmd
}

func loadPlan(path string) (plan.Plan, error) {
	if path == "" {
		return plan.Default(), nil
	}
	return plan.Load(path)
}

// runLoad runs a standalone test and reports it.
func runLoad(cmd *cobra.Command, f loadFlags) error {
	log, err := newLogger(cmd.ErrOrStderr(), f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	p, err := loadPlan(f.planPath)
	if err != nil {
		return usageError{err}
	}
	if f.printLocustfile {
		_, err := io.WriteString(cmd.OutOrStdout(), locust.Locustfile(p))
		return err
	}
	var ths []threshold.Threshold
	for _, expr := range f.thresholds {
		th, err := threshold.Parse(expr)
		if err != nil {
			return usageError{fmt.Errorf("--threshold: %w", err)}
		}
		ths = append(ths, th)
	}
	if f.master != "" {
		if f.rate > 0 || f.users > 0 || len(f.stages) > 0 || f.duration > 0 {
			return usageError{errors.New("--master: the master decides users and duration; drop --users, --rate, --stage and --duration")}
		}
		return runWorker(cmd, f, p, ths, log)
	}
	open := f.rate > 0
	var stages []loadgen.Stage
	switch {
	case open && (f.users > 0 || len(f.stages) > 0):
		return usageError{errors.New("--rate (open model) and --users/--stage (closed model) exclude each other: choose one")}
	case open && f.duration <= 0:
		return usageError{errors.New("--rate needs --duration, such as --duration 1m")}
	case !open && len(f.stages) > 0:
		if f.users > 0 || f.duration > 0 {
			return usageError{errors.New("--stage replaces --users and --duration: give one or the other")}
		}
		for _, s := range f.stages {
			st, err := loadgen.ParseStage(s)
			if err != nil {
				return usageError{fmt.Errorf("--stage: %w", err)}
			}
			stages = append(stages, st)
		}
	case !open:
		if f.users <= 0 || f.duration <= 0 {
			return usageError{errors.New("give --users N --duration D (closed model), --rate R --duration D (open model), or --master HOST:PORT")}
		}
		stages = []loadgen.Stage{{Duration: f.duration, Users: f.users, SpawnRate: f.spawnRate}}
	}

	st := stats.New(nil)
	opts := loadgen.Options{Host: f.host, Seed: f.seed}
	var users *loadgen.Users
	if !open {
		if users, err = loadgen.NewUsers(p, st, opts); err != nil {
			return usageError{err}
		}
	}
	var openRes loadgen.OpenResult
	gauges := func() map[string]float64 {
		g := map[string]float64{}
		if users != nil {
			g["users"] = float64(users.Total())
		}
		return g
	}

	ctx := cmd.Context()
	stopMetrics, err := serveMetrics(f.metricsListen, st, gauges, log)
	if err != nil {
		return err
	}
	defer stopMetrics()

	var csvw *output.CSVWriter
	if f.csvPrefix != "" {
		if csvw, err = output.NewCSVWriter(f.csvPrefix); err != nil {
			return err
		}
		defer csvw.Close()
	}
	out := cmd.OutOrStdout()
	liveCtx, stopLive := context.WithCancel(ctx)
	liveDone := make(chan struct{})
	go func() {
		defer close(liveDone)
		live(liveCtx, out, st, csvw, gauges, f)
	}()

	start := time.Now()
	var runErr error
	if open {
		o := loadgen.OpenOptions{Stages: loadgen.ConstantRate(f.rate, f.duration), MaxConcurrency: f.maxConcurrency}
		if f.rampFrom >= 0 {
			from := f.rampFrom
			o.StartRate = &from
		}
		log.Info("open model", "rate", f.rate, "duration", f.duration, "host", f.host)
		openRes, runErr = loadgen.RunOpen(ctx, p, st, opts, o)
	} else {
		log.Info("closed model", "stages", len(stages), "host", f.host)
		runErr = loadgen.RunClosed(ctx, users, p, stages)
	}
	elapsed := time.Since(start)
	stopLive()
	<-liveDone
	if runErr != nil {
		return runErr
	}

	var openInfo map[string]any
	if open {
		openInfo = map[string]any{
			"intended": openRes.Intended, "sent": openRes.Sent, "late": openRes.Late, "dropped": openRes.Dropped,
			"achievedRate":    openRes.AchievedRate(),
			"sendErrorP99Ms":  float64(openRes.SendError.ValueAtQuantile(99)) / 1000,
			"sendErrorP999Ms": float64(openRes.SendError.ValueAtQuantile(99.9)) / 1000,
			"targetRate":      f.rate,
			"maxConcurrency":  f.maxConcurrency,
			"lateAfterMs":     1.0,
		}
		fmt.Fprintf(out, "\nOpen model: %d intended, %d sent (%.1f/s), %d late (> 1ms behind schedule), %d dropped (found all %d slots busy); send-time error p99 %.3f ms\n",
			openRes.Intended, openRes.Sent, openRes.AchievedRate(), openRes.Late, openRes.Dropped, f.maxConcurrency,
			float64(openRes.SendError.ValueAtQuantile(99))/1000)
	}
	model := "closed"
	if open {
		model = "open"
	}
	return report(out, st, f, ths, csvw, start, elapsed, model, openInfo)
}

// report prints the summary, writes the JSON and CSV files, and checks
// the thresholds (a thresholdError when any broke).
func report(out io.Writer, st *stats.Stats, f loadFlags, ths []threshold.Threshold, csvw *output.CSVWriter,
	start time.Time, elapsed time.Duration, model string, openInfo map[string]any) error {
	snap := st.Cumulative()
	fmt.Fprintln(out)
	output.ConsoleTable(out, snap, false)
	output.PercentileTable(out, snap)
	output.ErrorReport(out, snap)
	output.PreciseTable(out, snap, elapsed)
	results, passed := threshold.CheckAll(ths, snap, elapsed)
	for _, r := range results {
		mark := "ok  "
		if !r.Passed {
			mark = "FAIL"
		}
		fmt.Fprintf(out, "threshold %s %-30s actual %s\n", mark, r.Source, r.Display)
	}
	if csvw != nil {
		if err := csvw.Snapshot(snap); err != nil {
			return err
		}
	}
	if f.jsonPath != "" {
		total, entries := output.Summarize(snap, elapsed)
		sum := output.Summary{
			Start: start, End: start.Add(elapsed), Elapsed: elapsed.Seconds(), Model: model,
			Total: total, Entries: entries, Errors: errorList(snap), Passed: passed,
		}
		if ths != nil {
			sum.Thresholds = results
		}
		if openInfo != nil {
			sum.Open = openInfo
		}
		if err := output.WriteJSON(f.jsonPath, sum); err != nil {
			return err
		}
	}
	if !passed {
		broken := 0
		for _, r := range results {
			if !r.Passed {
				broken++
			}
		}
		return thresholdError{broken}
	}
	return nil
}

func errorList(snap stats.Snapshot) []*stats.Error {
	out := make([]*stats.Error, 0, len(snap.Errors))
	for _, e := range snap.Errors {
		out = append(out, e)
	}
	return out
}

// live prints Locust's table every interval and appends the CSV history
// every second, until ctx ends.
func live(ctx context.Context, out io.Writer, st *stats.Stats, csvw *output.CSVWriter, gauges func() map[string]float64, f loadFlags) {
	second := time.NewTicker(time.Second)
	defer second.Stop()
	var console <-chan time.Time
	if !f.quiet && f.consoleEvery > 0 {
		t := time.NewTicker(f.consoleEvery)
		defer t.Stop()
		console = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-second.C:
			if csvw != nil {
				_ = csvw.History(now, int(gauges()["users"]), st.Cumulative())
			}
		case <-console:
			output.ConsoleTable(out, st.Cumulative(), true)
		}
	}
}

// serveMetrics serves Prometheus metrics of the run on addr, if given,
// and returns the function that stops the server.
func serveMetrics(addr string, st *stats.Stats, gauges func() map[string]float64, log *slog.Logger) (func(), error) {
	if addr == "" {
		return func() {}, nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(output.NewCollector(st.Cumulative, gauges), collectors.NewGoCollector())
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// runWorker joins a Locust master and serves it until it quits or the
// command is stopped; the worker's own totals are reported at the end.
func runWorker(cmd *cobra.Command, f loadFlags, p plan.Plan, ths []threshold.Threshold, log *slog.Logger) error {
	st := stats.New(nil)
	var pool atomic.Pointer[loadgen.Users]
	w, err := locust.NewWorker(locust.Config{
		MasterAddr: f.master,
		Plan:       p,
		Stats:      st,
		Host:       f.host,
		Logger:     log,
		NewUsers: func(host string) (locust.Users, error) {
			u, err := loadgen.NewUsers(p, st, loadgen.Options{Host: host, Seed: f.seed})
			if err == nil {
				pool.Store(u)
			}
			return u, err
		},
	})
	if err != nil {
		return usageError{err}
	}
	gauges := func() map[string]float64 {
		if u := pool.Load(); u != nil {
			return map[string]float64{"users": float64(u.Total())}
		}
		return map[string]float64{"users": 0}
	}
	stopMetrics, err := serveMetrics(f.metricsListen, st, gauges, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	var csvw *output.CSVWriter
	if f.csvPrefix != "" {
		if csvw, err = output.NewCSVWriter(f.csvPrefix); err != nil {
			return err
		}
		defer csvw.Close()
	}
	log.Info("joining the Locust master", "master", f.master, "node", w.NodeID())
	// A worker's table is the master's to show; the CSV history is kept.
	quiet := f
	quiet.quiet = true
	liveCtx, stopLive := context.WithCancel(cmd.Context())
	liveDone := make(chan struct{})
	go func() {
		defer close(liveDone)
		live(liveCtx, cmd.OutOrStdout(), st, csvw, gauges, quiet)
	}()
	start := time.Now()
	runErr := w.Run(cmd.Context())
	elapsed := time.Since(start)
	stopLive()
	<-liveDone
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	return report(cmd.OutOrStdout(), st, f, ths, csvw, start, elapsed, "locust-worker", nil)
}
