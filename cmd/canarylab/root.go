package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// buildInfo is what the version command prints.
type buildInfo struct {
	Version string
	Commit  string
}

// usageError marks a mistake in the command line or the config: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func newRootCmd(info buildInfo) *cobra.Command {
	root := &cobra.Command{
		Use:   "canarylab",
		Short: "A testbed for progressive delivery: mock server, load generator, canary orchestrator",
		Long: `canarylab shows and tests how a canary analysis (Flagger on Istio) reacts when a new
version is healthy, slow or broken.

  canarylab run       run a canary scenario end to end and check its outcome (no cluster needed)
  canarylab mock      a flexible HTTP mock server with latency, errors and connection faults
  canarylab load      HTTP load from a plan: closed or open model, Locust-compatible statistics`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see %s --help)", err, c.CommandPath())}
	})
	root.AddCommand(newRunCmd(), newSweepCmd(), newValidateCmd(), newSchemaCmd(), newScenariosCmd(), newRenderCmd(),
		newMockCmd(), newLoadCmd(), newVersionCmd(info))
	return root
}

func newVersionCmd(info buildInfo) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of canarylab",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, c := info.Version, info.Commit
			if bi, ok := debug.ReadBuildInfo(); ok {
				if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
					v = bi.Main.Version
				}
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" && c == "" {
						c = s.Value
					}
				}
			}
			if c == "" {
				c = "unknown"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "canarylab %s (commit %s, %s, %s/%s)\n", v, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}

// bindEnv gives every flag of cmd an environment variable,
// PREFIX_FLAG_NAME (--version-label: CANARYLAB_MOCK_VERSION_LABEL). A flag
// on the command line wins over the variable.
func bindEnv(cmd *cobra.Command, prefix string) error {
	var errs []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		name := envName(prefix, f.Name)
		v, ok := os.LookupEnv(name)
		if !ok {
			return
		}
		if err := f.Value.Set(v); err != nil {
			errs = append(errs, fmt.Sprintf("%s=%q is not a valid --%s (%s): %v", name, v, f.Name, f.Value.Type(), err))
			return
		}
		f.Changed = true
	})
	if len(errs) > 0 {
		return usageError{fmt.Errorf("environment: %s", strings.Join(errs, "; "))}
	}
	return nil
}

func envName(prefix, flag string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// envHelp appends the environment variable of each flag to its usage.
func envHelp(cmd *cobra.Command, prefix string) {
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		f.Usage += " [$" + envName(prefix, f.Name) + "]"
	})
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Errorf("--log-level %q: use debug, info, warn or error", level)}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageError{fmt.Errorf("--log-format %q: use text or json", format)}
}
