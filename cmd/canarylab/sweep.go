package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/canarylab/canarylab/mockserver/behavior"
	"github.com/canarylab/canarylab/orchestrator/sweep"
)

type sweepFlags struct {
	varies   []string
	runs     int
	workers  int
	seed     uint64
	healthy  bool
	csvPath  string
	jsonPath string
	htmlPath string
	quiet    bool
}

func newSweepCmd() *cobra.Command {
	var f sweepFlags
	cmd := &cobra.Command{
		Use:   "sweep [flags] SCENARIO --vary PATH=SPEC ... --runs N",
		Short: "Run a scenario many times in virtual time over a grid of values: how often and how fast the analysis decides",
		Long: `Run a scenario many times on the sim engine (virtual time) for each point of a
grid of field values, and say for each point how often the canary is promoted and
rolled back, how often a healthy canary is rolled back (false rollbacks), how long
the decision takes and how many checks had failed at a rollback — with 95 %
confidence intervals.

SCENARIO is a file or the name of a ready scenario. Each --vary is a scenario field
by its path as written in the YAML (canary.errors.rate, analysis.threshold,
analysis.metrics[0].thresholdRange.min, load.rate, analysis.interval, ...) and its
values: a numeric grid a:b:step (b included) or a list v1,v2,... (numbers, strings,
true/false; quote a value with a comma: "503:0.1,500:0.1"). The grid is every
combination of the varies' values; every point is checked as a scenario file would
be before anything runs.

The runs' seeds derive from --seed, so a sweep is reproducible whatever --workers.
--healthy (the default) also runs each point with the canary behaving as the stable
version; points that differ only in the canary share those runs.

Exit code: 0 when the sweep ran, 2 for invalid input (a bad flag, path or value,
or a scenario the sim engine cannot run).`,
		Example: `  canarylab sweep failure-errors --vary canary.errors.rate=0:0.05:0.01 --runs 200
  canarylab sweep my-scenario.yaml --vary canary.errors.rate=0:0.05:0.005 --vary analysis.threshold=2,5,10 --runs 500 --csv sweep.csv
  canarylab sweep success --vary load.rate=2,5,20 --vary analysis.interval=30s,1m --json sweep.json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("give one SCENARIO (a file or a ready scenario), got %d (see %s --help)", len(args), cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := bindEnv(cmd, "CANARYLAB_SWEEP"); err != nil {
				return err
			}
			return runSweep(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.varies, "vary", nil, "a field and its values, PATH=a:b:step or PATH=v1,v2,... (repeatable; required)")
	fl.IntVar(&f.runs, "runs", sweep.DefaultRuns, "runs per point")
	fl.IntVar(&f.workers, "workers", 0, "runs at once (default: one per CPU)")
	fl.Uint64Var(&f.seed, "seed", 0, "seed the runs' seeds derive from (0: random, printed)")
	fl.BoolVar(&f.healthy, "healthy", true, "also run each point with the canary behaving as the stable version, for the false-rollback rate")
	fl.StringVar(&f.csvPath, "csv", "", "write one row per point as CSV to this file")
	fl.StringVar(&f.jsonPath, "json", "", "write the result as JSON to this file")
	fl.StringVar(&f.htmlPath, "report", "", "write a self-contained HTML report to this file (detection and false rollbacks against the varied fault, time-to-decision distributions, every point)")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no progress line")
	envHelp(cmd, "CANARYLAB_SWEEP")
	return cmd
}

func runSweep(ctx context.Context, out, errOut io.Writer, f sweepFlags, arg string) error {
	if len(f.varies) == 0 {
		return usageError{errors.New("--vary is required: the field to vary and its values, such as --vary canary.errors.rate=0:0.05:0.01")}
	}
	if f.runs < 1 {
		return usageError{fmt.Errorf("--runs %d: give 1 or more runs per point", f.runs)}
	}
	if f.workers < 0 {
		return usageError{fmt.Errorf("--workers %d: give 1 or more, or 0 for one per CPU", f.workers)}
	}
	s, _, err := loadScenario(arg)
	if err != nil {
		return err
	}
	var varies []sweep.Vary
	for _, spec := range f.varies {
		v, err := sweep.ParseVary(spec)
		if err != nil {
			return usageError{err}
		}
		varies = append(varies, v)
	}
	prog := newProgress(errOut, f.quiet)
	opts := sweep.Options{Runs: f.runs, Workers: f.workers, Seed: f.seed, Healthy: f.healthy, Progress: prog.update}
	start := time.Now()
	res, err := sweep.Run(ctx, s, varies, opts)
	var ve *sweep.VaryError
	switch {
	case errors.As(err, &ve):
		return usageError{err}
	case errors.Is(err, context.Canceled):
		prog.end()
		return fmt.Errorf("interrupted after %d of %d runs", prog.done, prog.total)
	case err != nil:
		return err
	}
	prog.end()
	if err := printSweep(out, res, prog.total); err != nil {
		return err
	}
	if f.csvPath != "" {
		if err := writeSweepCSV(f.csvPath, res); err != nil {
			return err
		}
	}
	if f.jsonPath != "" {
		data, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return fmt.Errorf("encode the sweep: %w", err)
		}
		if err := os.WriteFile(f.jsonPath, append(data, '\n'), 0o644); err != nil {
			return fmt.Errorf("write --json: %w", err)
		}
	}
	if f.htmlPath != "" {
		if err := writeSweepHTML(f.htmlPath, res, f, arg, time.Since(start)); err != nil {
			return err
		}
	}
	errs, runs := 0, 0
	first := ""
	for _, p := range res.Points {
		errs, runs = errs+p.Errors, runs+p.Runs
		if first == "" {
			first = p.Error
		}
	}
	if errs == runs {
		return usageError{fmt.Errorf("every run ended in an error, the sim engine cannot run this scenario: %s", first)}
	}
	return nil
}

// writeSweepHTML writes the HTML report, with the command that gives the
// same numbers again (the seed included).
func writeSweepHTML(path string, res *sweep.Result, f sweepFlags, arg string, elapsed time.Duration) error {
	cmdline := []string{"canarylab", "sweep", shellQuote(arg)}
	for _, v := range f.varies {
		cmdline = append(cmdline, "--vary", shellQuote(v))
	}
	cmdline = append(cmdline, "--runs", strconv.Itoa(res.Runs), "--seed", strconv.FormatUint(res.Seed, 10))
	if !res.Healthy {
		cmdline = append(cmdline, "--healthy=false")
	}
	var b strings.Builder
	if err := sweep.WriteHTML(&b, res, sweep.HTMLOptions{Command: strings.Join(cmdline, " "), Elapsed: elapsed}); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write --report: %w", err)
	}
	return nil
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:=/,@%+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// progress writes the progress line: rewritten in place on a terminal, a
// line every 10 % otherwise.
type progress struct {
	w           io.Writer
	quiet, tty  bool
	start, last time.Time
	done, total int
	tenth       int
}

func newProgress(w io.Writer, quiet bool) *progress {
	p := &progress{w: w, quiet: quiet, start: time.Now()}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) update(done, total int) {
	p.done, p.total = done, total
	if p.quiet {
		return
	}
	now := time.Now()
	if p.tty {
		if now.Sub(p.last) < 100*time.Millisecond && done < total {
			return
		}
		p.last = now
		fmt.Fprintf(p.w, "\rsweep: %s", p.line(now))
		return
	}
	if t := done * 10 / total; t > p.tenth && done < total {
		p.tenth = t
		fmt.Fprintf(p.w, "sweep: %s\n", p.line(now))
	}
}

func (p *progress) line(now time.Time) string {
	el := now.Sub(p.start)
	rate := float64(p.done) / max(el.Seconds(), 1e-9)
	s := fmt.Sprintf("%d/%d runs (%d%%), %.0f runs/s", p.done, p.total, p.done*100/max(1, p.total), rate)
	if p.done > 0 && p.done < p.total {
		switch left := time.Duration(float64(p.total-p.done) / rate * float64(time.Second)); {
		case left < time.Second:
			s += ", under a second left"
		default:
			s += ", about " + left.Round(time.Second).String() + " left"
		}
	}
	return s
}

func (p *progress) end() {
	if p.quiet {
		return
	}
	el := time.Since(p.start)
	msg := fmt.Sprintf("sweep: %d runs in %s (%.0f runs/s)", p.done, el.Round(time.Millisecond), float64(p.done)/max(el.Seconds(), 1e-9))
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\033[K\n", msg)
		return
	}
	fmt.Fprintln(p.w, msg)
}

// formatDecision formats a scenario time as 8m30s, rounded to 100 ms.
func formatDecision(d time.Duration) string {
	return behavior.FormatDuration(d.Round(100 * time.Millisecond))
}

// pct formats an estimate as 12.3% [4.5, 67.8].
func pct(e sweep.Estimate) string {
	return fmt.Sprintf("%.1f%% [%.1f, %.1f]", 100*e.Value, 100*e.Lo, 100*e.Hi)
}

func printSweep(out io.Writer, res *sweep.Result, total int) error {
	healthy := ""
	if res.Healthy {
		healthy = fmt.Sprintf(" (%d with a healthy canary)", total-len(res.Points)*res.Runs)
	}
	fmt.Fprintf(out, "%s: %d points × %d runs, %d runs in all%s, seed %d\n\n", res.Scenario, len(res.Points), res.Runs, total, healthy, res.Seed)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	var head []string
	for _, v := range res.Varies {
		head = append(head, v.Path)
	}
	head = append(head, "runs", "P(promote)", "P(rollback)", "false rollback", "decision p50 / p90", "failed checks")
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	timedOut, errs := 0, 0
	firstErr := ""
	for _, p := range res.Points {
		var row []string
		for _, v := range res.Varies {
			row = append(row, sweep.FormatValue(p.Values[v.Path]))
		}
		fr, dec, fc := "-", "-", "-"
		if p.HealthyRuns > 0 {
			fr = pct(p.FalseRollback)
		}
		if p.Promoted+p.RolledBack > 0 {
			dec = formatDecision(p.DecisionP50.Value) + " / " + formatDecision(p.DecisionP90.Value)
		}
		if p.RolledBack > 0 {
			fc = strconv.FormatFloat(p.FailedChecksMean, 'f', 1, 64)
		}
		row = append(row, strconv.Itoa(p.Runs), pct(p.PPromote), pct(p.PRollback), fr, dec, fc)
		fmt.Fprintln(tw, strings.Join(row, "\t"))
		timedOut += p.TimedOut
		errs += p.Errors
		if firstErr == "" {
			firstErr = p.Error
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write the table: %w", err)
	}
	fmt.Fprintln(out, "\nP: share of runs, with its 95 % interval (Wilson); false rollback: runs with the canary behaving as the stable")
	fmt.Fprintln(out, "version that rolled back; decision: scenario time from the new revision to promotion or rollback;")
	fmt.Fprintln(out, "failed checks: the mean status.failedChecks when a rollback started.")
	if timedOut > 0 {
		fmt.Fprintf(out, "%d runs reached no verdict within the scenario's timeout.\n", timedOut)
	}
	if errs > 0 {
		fmt.Fprintf(out, "%d runs ended in an error; the first: %s\n", errs, firstErr)
	}
	return nil
}

func writeSweepCSV(path string, res *sweep.Result) error {
	var b strings.Builder
	w := csv.NewWriter(&b)
	var head []string
	for _, v := range res.Varies {
		head = append(head, v.Path)
	}
	head = append(head, "runs", "promoted", "rolledBack", "timedOut", "errors",
		"pPromote", "pPromoteLo", "pPromoteHi", "pRollback", "pRollbackLo", "pRollbackHi",
		"healthyRuns", "healthyRolledBack", "falseRollback", "falseRollbackLo", "falseRollbackHi",
		"decisionP50Seconds", "decisionP50LoSeconds", "decisionP50HiSeconds",
		"decisionP90Seconds", "decisionP90LoSeconds", "decisionP90HiSeconds",
		"failedChecksMean", "error")
	if err := w.Write(head); err != nil {
		return fmt.Errorf("write --csv: %w", err)
	}
	num := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	est := func(e sweep.Estimate, ok bool) []string {
		if !ok {
			return []string{"", "", ""}
		}
		return []string{num(e.Value), num(e.Lo), num(e.Hi)}
	}
	dur := func(d sweep.DurationEstimate, ok bool) []string {
		if !ok {
			return []string{"", "", ""}
		}
		return []string{num(d.Value.Seconds()), num(d.Lo.Seconds()), num(d.Hi.Seconds())}
	}
	for _, p := range res.Points {
		var row []string
		for _, v := range res.Varies {
			row = append(row, sweep.FormatValue(p.Values[v.Path]))
		}
		decided := p.Promoted+p.RolledBack > 0
		row = append(row, strconv.Itoa(p.Runs), strconv.Itoa(p.Promoted), strconv.Itoa(p.RolledBack), strconv.Itoa(p.TimedOut), strconv.Itoa(p.Errors))
		row = append(row, est(p.PPromote, p.Runs > 0)...)
		row = append(row, est(p.PRollback, p.Runs > 0)...)
		row = append(row, strconv.Itoa(p.HealthyRuns), strconv.Itoa(p.HealthyRolledBack))
		row = append(row, est(p.FalseRollback, p.HealthyRuns > 0)...)
		row = append(row, dur(p.DecisionP50, decided)...)
		row = append(row, dur(p.DecisionP90, decided)...)
		fc := ""
		if p.RolledBack > 0 {
			fc = num(p.FailedChecksMean)
		}
		row = append(row, fc, p.Error)
		if err := w.Write(row); err != nil {
			return fmt.Errorf("write --csv: %w", err)
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return fmt.Errorf("write --csv: %w", err)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write --csv: %w", err)
	}
	return nil
}
