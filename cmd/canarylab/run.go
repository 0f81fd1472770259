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
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/canarylab/canarylab/orchestrator/kube"
	"github.com/canarylab/canarylab/orchestrator/local"
	runreport "github.com/canarylab/canarylab/orchestrator/report"
	"github.com/canarylab/canarylab/orchestrator/scenario"
	"github.com/canarylab/canarylab/orchestrator/sim"
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
	htmlPath     string
	loadExternal bool
	scrape       time.Duration
	seed         uint64
	quiet        bool
	logFormat    string
	logLevel     string
	kube         kubeFlags
}

// kubeFlags are the kube engine's flags (also canarylab render's).
type kubeFlags struct {
	metrics     string
	kubeconfig  string
	context     string
	namespace   string
	image       string
	locustImage string
	keep        bool
}

func (k *kubeFlags) register(fl *pflag.FlagSet, engine bool) {
	fl.StringVar(&k.namespace, "namespace", "", "namespace of the canary (default: the scenario's target.namespace)")
	fl.StringVar(&k.image, "image", kube.DefaultImage, "canarylab's container image, for the mock servers and the load workers")
	fl.StringVar(&k.locustImage, "locust-image", kube.DefaultLocustImage, "the Locust master's container image")
	fl.StringVar(&k.metrics, "metrics-server", "http://prometheus.istio-system:9090", "the Prometheus MetricTemplates query when they name no address")
	if engine {
		fl.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (--engine kube; default: $KUBECONFIG, ~/.kube/config)")
		fl.StringVar(&k.context, "context", "", "kubeconfig context (--engine kube)")
		fl.BoolVar(&k.keep, "keep", false, "leave the canary's objects in the cluster after the run (--engine kube; the load is always removed)")
	}
}

func (k *kubeFlags) render() kube.RenderOptions {
	return kube.RenderOptions{Image: k.image, LocustImage: k.locustImage, Namespace: k.namespace, MetricsServer: k.metrics}
}

// engines are the values of --engine.
var engines = []string{local.Name, kube.Name, sim.Name}

// engine runs one scenario.
type engine interface {
	Run(ctx context.Context, s *scenario.Scenario, obs runreport.Observer) error
}

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
  canarylab run my-scenario.yaml --json run.json
  canarylab run failure-latency --engine sim --report run.html`,
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
	fl.StringVar(&f.htmlPath, "report", "", "write the runs as a self-contained HTML page to this file (canary weight, each metric against its threshold range, failed checks, events)")
	fl.BoolVar(&f.loadExternal, "load-external", false, "send no load; a Locust master with canarylab workers (or any client) drives the router")
	fl.DurationVar(&f.scrape, "scrape-interval", 5*time.Second, "the embedded Prometheus' scrape interval, in scenario time")
	fl.Uint64Var(&f.seed, "seed", 0, "seed of the mock servers' and the router's draws (0: random)")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print only each run's verdict, not the live view")
	fl.StringVar(&f.logFormat, "log-format", "text", "engine log format: text or json (to stderr)")
	fl.StringVar(&f.logLevel, "log-level", "error", "engine log level: debug, info, warn, error")
	f.kube.register(fl, true)
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
	if _, err := scenarios.Get(arg); err != nil {
		return nil, "", usageError{fmt.Errorf("%s is neither a file nor a ready scenario: %w", arg, err)}
	}
	s, err := scenarios.Load(arg)
	if err != nil {
		return nil, "", err
	}
	return s, "scenarios/" + arg + ".yaml", nil
}

func runScenarios(ctx context.Context, out, errOut io.Writer, f runFlags, args []string) error {
	switch f.engine {
	case local.Name:
	case kube.Name:
		if f.speed != 1 {
			return usageError{fmt.Errorf("--speed %v: the kube engine runs Flagger in real time (its analysis interval is at least 10s)", f.speed)}
		}
	case sim.Name:
		if f.speed != 1 {
			return usageError{fmt.Errorf("--speed %v: the sim engine runs in virtual time, as fast as it can", f.speed)}
		}
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
	var eng engine
	switch f.engine {
	case sim.Name:
		eng = sim.New(sim.Options{Seed: f.seed, ScrapeInterval: f.scrape})
	case kube.Name:
		k, err := kube.New(kube.Options{Kubeconfig: f.kube.kubeconfig, Context: f.kube.context, Render: f.kube.render(),
			Timeout: f.timeout, Keep: f.kube.keep, Logger: logger})
		if err != nil {
			return err
		}
		eng = k
	default:
		l, err := local.New(local.Options{Speed: f.speed, Timeout: f.timeout, ScrapeInterval: f.scrape,
			LoadExternal: f.loadExternal, Seed: f.seed, Logger: logger})
		if err != nil {
			return usageError{err}
		}
		eng = l
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
	if f.htmlPath != "" {
		if err := runreport.WriteHTMLFile(f.htmlPath, runs); err != nil {
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

func newRenderCmd() *cobra.Command {
	var k kubeFlags
	cmd := &cobra.Command{
		Use:   "render [flags] SCENARIO",
		Short: "Print the Kubernetes manifests the kube engine applies for a scenario",
		Long: `Print, as a YAML stream, the objects canarylab run --engine kube applies for a
scenario: the namespace, the mock server's config, its Deployment (stable), the
MetricTemplates and the Canary; the load (a Locust master and canarylab workers);
and last the Deployment with the canary's pod template, the new revision that
starts the analysis. kubectl apply -f works on each part.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, _, err := loadScenario(args[0])
			if err != nil {
				return err
			}
			r, err := kube.Render(s, k.render())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, part := range []struct {
				title string
				objs  []*unstructured.Unstructured
			}{
				{"the canary, before its new revision", r.App},
				{"the load", r.Load},
				{"the new revision: apply it once the Canary is Initialized", []*unstructured.Unstructured{r.Revision}},
			} {
				if len(part.objs) == 0 {
					continue
				}
				data, err := kube.YAML(part.objs)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "# %s\n---\n%s---\n", part.title, data)
			}
			return nil
		},
	}
	k.register(cmd.Flags(), false)
	return cmd
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
