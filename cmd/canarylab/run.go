package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/canarylab/canarylab/orchestrator/local"
	runreport "github.com/canarylab/canarylab/orchestrator/report"
	"github.com/canarylab/canarylab/orchestrator/scenario"
	"github.com/canarylab/canarylab/scenarios"
)

// expectationError marks runs that ended but did not do what their
// scenarios expect: exit code 1.
type expectationError struct{ failed, total int }

func (e expectationError) Error() string {
	return fmt.Sprintf("%d of %d scenario runs did not meet their expectations", e.failed, e.total)
}

type runFlags struct {
	engine       string
	speed        float64
	timeout      time.Duration
	jsonPath     string
	junitPath    string
	loadExternal bool
	scrape       time.Duration
	seed         uint64
	quiet        bool
	logFormat    string
	logLevel     string
}

// engines are the values of --engine; local is built, kube and sim come
// with the real-cluster and virtual-time engines.
var engines = []string{local.Name, "kube", "sim"}

func newRunCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [flags] SCENARIO...",
		Short: "Run canary scenarios end to end and check their expected outcome",
		Long: `Run canary scenarios end to end and check that each ends as it expects.

A SCENARIO is a file or the name of a ready scenario (canarylab scenarios lists
them). The local engine (the default) needs no cluster: it starts a primary and
a canary mock server, a router that splits traffic by the canary weights and
reports Istio's telemetry, an embedded Prometheus, and the scenario's load, and
decides each analysis tick as Flagger does, on Flagger's own queries.

--speed N runs the analysis N times faster than real time: intervals and PromQL
windows shrink N-fold and the load's rate grows N-fold, so each window sees the
requests it would see in real time.

Exit code: 0 when every expectation holds, 1 when one does not, 2 for invalid input.`,
		Example: `  canarylab run failure-errors --speed 30
  canarylab run success failure-errors --speed 30 --junit report.xml
  canarylab run my-scenario.yaml --json run.json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := bindEnv(cmd, "CANARYLAB_RUN"); err != nil {
				return err
			}
			return runScenarios(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), f, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.engine, "engine", local.Name, "engine: "+strings.Join(engines, ", "))
	fl.Float64Var(&f.speed, "speed", 1, "run the analysis this many times faster than real time")
	fl.DurationVar(&f.timeout, "timeout", 0, "bound each run in real time (default: the scenario's timeout divided by --speed)")
	fl.StringVar(&f.jsonPath, "json", "", "write the runs (ticks, weights, metric values, events, expectations) as JSON to this file")
	fl.StringVar(&f.junitPath, "junit", "", "write the runs as JUnit XML to this file")
	fl.BoolVar(&f.loadExternal, "load-external", false, "send no load; a Locust master with canarylab workers (or any client) drives the router")
	fl.DurationVar(&f.scrape, "scrape-interval", 5*time.Second, "the embedded Prometheus' scrape interval, in scenario time")
	fl.Uint64Var(&f.seed, "seed", 0, "seed of the mock servers' and the router's draws (0: random)")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print only each run's verdict, not the live view")
	fl.StringVar(&f.logFormat, "log-format", "text", "engine log format: text or json (to stderr)")
	fl.StringVar(&f.logLevel, "log-level", "error", "engine log level: debug, info, warn, error")
	envHelp(cmd, "CANARYLAB_RUN")
	return cmd
}

// loadScenario reads a file, or a ready scenario by name.
func loadScenario(arg string) (*scenario.Scenario, string, error) {
	if _, err := os.Stat(arg); err == nil || strings.ContainsAny(arg, `/\`) || filepath.Ext(arg) != "" {
		s, err := scenario.LoadFile(arg)
		if err != nil {
			return nil, arg, usageError{err}
		}
		return s, arg, nil
	}
	data, err := scenarios.Get(arg)
	if err != nil {
		return nil, "", usageError{fmt.Errorf("%s is neither a file nor a ready scenario: %w", arg, err)}
	}
	s, err := scenario.Parse(data)
	if err != nil {
		return nil, "", fmt.Errorf("ready scenario %s: %w", arg, err)
	}
	return s, "scenarios/" + arg + ".yaml", nil
}

func runScenarios(ctx context.Context, out, errOut io.Writer, f runFlags, args []string) error {
	switch f.engine {
	case local.Name:
	case "kube", "sim":
		return usageError{fmt.Errorf("--engine %s: this build has the local engine only; kube (a real cluster with Flagger) and sim (virtual time) are not built yet", f.engine)}
	default:
		return usageError{fmt.Errorf("--engine %q: use one of %s", f.engine, strings.Join(engines, ", "))}
	}
	if f.speed <= 0 {
		return usageError{fmt.Errorf("--speed %v: must be a positive factor, such as 30", f.speed)}
	}
	logger, err := newLogger(errOut, f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	// Validate every scenario before running any.
	type job struct {
		s    *scenario.Scenario
		file string
	}
	var jobs []job
	for _, a := range args {
		s, file, err := loadScenario(a)
		if err != nil {
			return err
		}
		jobs = append(jobs, job{s, file})
	}
	eng, err := local.New(local.Options{Speed: f.speed, Timeout: f.timeout, ScrapeInterval: f.scrape,
		LoadExternal: f.loadExternal, Seed: f.seed, Logger: logger})
	if err != nil {
		return usageError{err}
	}
	var runs []runreport.Run
	failed := 0
	for i, j := range jobs {
		if ctx.Err() != nil {
			break
		}
		if i > 0 {
			fmt.Fprintln(out)
		}
		var next runreport.Observer
		if !f.quiet {
			next = runreport.NewLive(out, max(1, j.s.Analysis.Threshold), 0)
		}
		rec := runreport.NewRecorder(j.s, j.file, f.engine, f.speed, next)
		start := time.Now()
		err := eng.Run(ctx, j.s, rec)
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted")
		}
		run := rec.Finish(j.s, time.Since(start), err)
		runs = append(runs, run)
		if !f.quiet {
			fmt.Fprintln(out)
		}
		runreport.Summary(out, run)
		if !run.Passed {
			failed++
		}
	}
	if f.jsonPath != "" {
		if err := runreport.WriteJSON(f.jsonPath, runs); err != nil {
			return err
		}
	}
	if f.junitPath != "" {
		if err := runreport.WriteJUnit(f.junitPath, runs); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return errors.New("interrupted: every run stopped and cleaned up")
	}
	if failed > 0 {
		return expectationError{failed, len(runs)}
	}
	return nil
}

func newValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check scenario files: every problem, with its field path and the fix",
		Long:  "Check scenario files strictly, as canarylab run does before it starts. Exit code 2 when a file is invalid.",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bad := 0
			for _, a := range args {
				if _, _, err := loadScenario(a); err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), err)
					bad++
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: valid\n", a)
			}
			if bad > 0 {
				return usageError{fmt.Errorf("%d of %d scenarios are invalid", bad, len(args))}
			}
			return nil
		},
	}
}

func newSchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of the scenario format (for editors)",
		Long: `Print the JSON Schema of canarylab's scenario format. Editors use it to complete
and check scenario files, e.g. with a first line in the YAML:

  # yaml-language-server: $schema=./scenario.schema.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := scenario.Schema()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(append(data, '\n'))
			return err
		},
	}
}

func newScenariosCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "scenarios",
		Short: "List the ready scenarios (canarylab run NAME runs one)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tEXPECT\tDESCRIPTION")
			for _, name := range scenarios.Names() {
				s, _, err := loadScenario(name)
				if err != nil {
					return err
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", name, s.Expect.Outcome, s.Metadata.Description)
			}
			return tw.Flush()
		},
	}
}
