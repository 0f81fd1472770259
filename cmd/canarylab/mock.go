package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/canarylab/canarylab/mockserver"
	"github.com/canarylab/canarylab/mockserver/behavior"
	"github.com/spf13/cobra"
)

const mockEnvPrefix = "CANARYLAB_MOCK"

type mockFlags struct {
	listen, adminListen string
	configPath          string
	versionLabel        string
	seed                uint64
	latency, latencyCap string
	errors, faults      string
	requestFaults       bool
	maxInFlight         int
	adminToken          string
	watch, accessLog    bool
	logFormat, logLevel string
	printConfig         bool
}

func newMockCmd() *cobra.Command {
	var f mockFlags
	cmd := &cobra.Command{
		Use:   "mock",
		Short: "Run the flexible HTTP mock server",
		Long: `Run the mock server: it answers HTTP on --listen as its config says, injects
latency, errors and connection faults, and serves its admin API and Prometheus
metrics on --admin-listen.

With no config every path answers 200, and a request can shape itself:
  curl 'http://127.0.0.1:8080/?delay=lognormal(50ms,400ms)&status=503:0.2'

The common knobs work without a file, so a Deployment's env alone can turn the
stable version into a broken canary:
  CANARYLAB_MOCK_ERRORS=503:0.1 CANARYLAB_MOCK_LATENCY='lognormal(50ms,400ms)' canarylab mock

Every flag is also an environment variable, shown after its description.`,
		Example: `  canarylab mock --config scenarios/mock/broken-canary.yaml --version-label canary
  canarylab mock --errors 503:0.1 --faults reset:0.01,hang:0.01
  canarylab mock --latency 'percentiles(p50=20ms,p99=250ms)' --latency-cap 2s`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return bindEnv(cmd, mockEnvPrefix)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMock(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8080", "address of the mock's HTTP listener (:8080 for every interface)")
	fl.StringVar(&f.adminListen, "admin-listen", "127.0.0.1:9090", "address of the admin API and /metrics")
	fl.StringVar(&f.configPath, "config", "", "YAML or JSON config file (see docs/mockserver.md)")
	fl.StringVar(&f.versionLabel, "version-label", "v1", "version this server plays (stable, canary, v2): X-Canarylab-Version header and metric label")
	fl.Uint64Var(&f.seed, "seed", 0, "seed for a reproducible sequence of injected outcomes (default: random, shown in /status)")
	fl.StringVar(&f.latency, "latency", "", `latency of every request: 50ms, uniform(10ms,50ms), normal(50ms,10ms), lognormal(50ms,400ms), "5ms:0.9,2s:0.1", percentiles(p50=…,p99=…), or none`)
	fl.StringVar(&f.latencyCap, "latency-cap", "", "upper bound of the latency (a capped delay is counted)")
	fl.StringVar(&f.errors, "errors", "", "error mix of every request: 503:0.1 or 503:0.2,500:0.1 (probabilities), or none")
	fl.StringVar(&f.faults, "faults", "", "connection faults: reset:0.01,close:0.01,hang(10s):0.01,slowBody(5s):0.05,truncate(0.5):0.01, or none")
	fl.BoolVar(&f.requestFaults, "request-faults", true, "let requests shape themselves with ?delay=, ?status=, ?fault= (and X-Canarylab-* headers)")
	fl.IntVar(&f.maxInFlight, "max-in-flight", 0, "bound on concurrent requests; excess ones get 503 (default 10000)")
	fl.StringVar(&f.adminToken, "admin-token", "", "bearer token the admin API requires (all but /metrics, /healthz, /readyz)")
	fl.BoolVar(&f.watch, "watch", true, "reload the config file when it changes (SIGHUP always reloads)")
	fl.BoolVar(&f.accessLog, "access-log", false, "log every request")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fl.BoolVar(&f.printConfig, "print-config", false, "print the effective config (file, flags and environment) and exit")
	envHelp(cmd, mockEnvPrefix)
	return cmd
}

// loadMockConfig reads the config file, if any, and lays the flags over it.
func loadMockConfig(f mockFlags) (mockserver.Config, error) {
	var cfg mockserver.Config
	if f.configPath != "" {
		var err error
		if cfg, err = mockserver.LoadConfig(f.configPath); err != nil {
			return cfg, err
		}
	}
	p := &cfg.Profile
	if f.latency != "" {
		if f.latency == "none" {
			p.Latency = nil
		} else {
			l, err := behavior.ParseLatency(f.latency)
			if err != nil {
				return cfg, fmt.Errorf("--latency %q: %w", f.latency, err)
			}
			p.Latency = &l
		}
	}
	if f.latencyCap != "" {
		c, err := behavior.ParseDuration(f.latencyCap)
		if err != nil {
			return cfg, fmt.Errorf("--latency-cap: %w", err)
		}
		if p.Latency == nil {
			return cfg, fmt.Errorf("--latency-cap needs a latency to cap: give --latency or a profile.latency in the config")
		}
		l := *p.Latency
		l.Cap = behavior.Duration(c)
		p.Latency = &l
	}
	if f.errors != "" {
		if f.errors == "none" {
			p.Errors = nil
		} else {
			e, err := behavior.ParseErrors(f.errors)
			if err != nil {
				return cfg, fmt.Errorf("--errors %q: %w", f.errors, err)
			}
			p.Errors = &e
		}
	}
	if f.faults != "" {
		if f.faults == "none" {
			p.Faults = nil
		} else {
			fs, err := behavior.ParseFaults(f.faults)
			if err != nil {
				return cfg, fmt.Errorf("--faults %q: %w", f.faults, err)
			}
			p.Faults = &fs
		}
	}
	if !f.requestFaults {
		cfg.RequestFaults.Disabled = true
	}
	if f.maxInFlight > 0 {
		cfg.Server.MaxInFlight = f.maxInFlight
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func runMock(cmd *cobra.Command, f mockFlags) error {
	log, err := newLogger(cmd.ErrOrStderr(), f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	cfg, err := loadMockConfig(f)
	if err != nil {
		return usageError{err}
	}
	if f.printConfig {
		_, err := cmd.OutOrStdout().Write(cfg.Marshal())
		return err
	}
	opts := mockserver.Options{
		VersionLabel: f.versionLabel,
		AdminToken:   f.adminToken,
		Logger:       log,
		AccessLog:    f.accessLog,
	}
	if cmd.Flags().Changed("seed") {
		seed := f.seed
		opts.Seed = &seed
	}
	srv, err := mockserver.New(cfg, opts)
	if err != nil {
		return usageError{err}
	}
	srv.SetReloader(func() (mockserver.Config, error) { return loadMockConfig(f) })
	run, err := mockserver.Start(srv, f.listen, f.adminListen)
	if err != nil {
		return err
	}
	log.Info("canarylab mock serving", "version", f.versionLabel, "url", run.URL(), "admin", run.AdminURL(),
		"seed", srv.Seed(), "profile", cfg.Profile.String())

	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if f.configPath != "" && f.watch {
		if err := mockserver.WatchFile(ctx, f.configPath, func() { _ = srv.Reload(mockserver.SourceFile) }); err != nil {
			log.Warn("config file changes will not be seen; SIGHUP still reloads", "error", err)
		}
	}

	var serveErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			_ = srv.Reload(mockserver.SourceSignal)
		case err := <-run.Errors():
			serveErr = err
			break loop
		}
	}
	log.Info("shutting down: draining requests in flight", "timeout", run.ShutdownTimeout())
	sctx, scancel := context.WithTimeout(context.Background(), run.ShutdownTimeout())
	defer scancel()
	if err := run.Shutdown(sctx); err != nil {
		serveErr = errors.Join(serveErr, err)
	}
	return serveErr
}
