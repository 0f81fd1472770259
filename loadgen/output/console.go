// Package output renders load-test statistics: Locust's console table and
// CSV files (so tools that read Locust's output read canarylab's), a JSON
// summary with microsecond percentiles, and Prometheus metrics while the
// test runs. It only reads statistics; it never drives the load.
package output

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/canarylab/canarylab/loadgen/stats"
)

// Widths of Locust's console columns (STATS_TYPE_WIDTH and the name
// column at an 80-column terminal).
const (
	typeWidth = 8
	nameWidth = 54
)

func truncate(s string, w int) string {
	if len(s) <= w {
		return s
	}
	return s[:w-3] + "..."
}

// ConsoleTable writes Locust's live statistics table: one row per request
// name, then the Aggregated row. With current, the rates are Locust's
// current ones (the last ~10 s); otherwise over the whole run.
func ConsoleTable(w io.Writer, snap stats.Snapshot, current bool) {
	head := fmt.Sprintf("%%-%ds %%-%ds %%7s %%12s |%%7s %%7s %%7s%%7s | %%7s %%11s\n", typeWidth, nameWidth)
	fmt.Fprintf(w, head, "Type", "Name", "# reqs", "# fails", "Avg", "Min", "Max", "Med", "req/s", "failures/s")
	sep := fmt.Sprintf("%s|%s|%s|%s|%s|%s|%s|%s|%s|%s\n", strings.Repeat("-", typeWidth), strings.Repeat("-", nameWidth+1),
		strings.Repeat("-", 7), strings.Repeat("-", 13), strings.Repeat("-", 7), strings.Repeat("-", 7), strings.Repeat("-", 7),
		strings.Repeat("-", 7), strings.Repeat("-", 8), strings.Repeat("-", 11))
	fmt.Fprint(w, sep)
	for _, e := range snap.Entries {
		consoleRow(w, e, snap.Total, current)
	}
	fmt.Fprint(w, sep)
	if snap.Total != nil {
		consoleRow(w, snap.Total, snap.Total, current)
	}
	fmt.Fprintln(w)
}

func consoleRow(w io.Writer, e, ref *stats.Entry, current bool) {
	rps, fps := e.TotalRPS(), e.TotalFailPerSec()
	if current {
		rps, fps = e.CurrentRPS(ref), e.CurrentFailPerSec(ref)
	}
	row := fmt.Sprintf("%%-%ds %%-%ds %%7d %%12s |%%7d %%7d %%7d%%7d | %%7.2f %%11.2f\n", typeWidth, nameWidth)
	fmt.Fprintf(w, row, e.Method, truncate(e.Name, nameWidth), e.NumRequests,
		fmt.Sprintf("%d(%.2f%%)", e.NumFailures, e.FailRatio()*100),
		int64(e.AvgResponseTime()), int64(e.MinResponseTime), int64(e.MaxResponseTime), int64(e.Median()), rps, fps)
}

// PercentileTable writes Locust's "Response time percentiles
// (approximated)" table, from Locust's rounded buckets.
func PercentileTable(w io.Writer, snap stats.Snapshot) {
	fmt.Fprintln(w, "Response time percentiles (approximated)")
	fmt.Fprintf(w, "%-*s %-*s", typeWidth, "Type", nameWidth, "Name")
	for _, p := range stats.Percentiles {
		fmt.Fprintf(w, " %6s", PercentileLabel(p))
	}
	fmt.Fprintf(w, " %6s\n", "# reqs")
	row := func(e *stats.Entry) {
		fmt.Fprintf(w, "%-*s %-*s", typeWidth, e.Method, nameWidth, truncate(e.Name, nameWidth))
		for _, p := range stats.Percentiles {
			fmt.Fprintf(w, " %6d", int64(e.Percentile(p)))
		}
		fmt.Fprintf(w, " %6d\n", e.NumRequests)
	}
	for _, e := range snap.Entries {
		row(e)
	}
	if snap.Total != nil {
		row(snap.Total)
	}
	fmt.Fprintln(w)
}

// PercentileLabel is Locust's label of a percentile ("99.9%").
func PercentileLabel(p float64) string {
	s := fmt.Sprintf("%g", p*100)
	return s + "%"
}

// ErrorReport writes Locust's error report.
func ErrorReport(w io.Writer, snap stats.Snapshot) {
	if len(snap.Errors) == 0 {
		return
	}
	fmt.Fprintln(w, "Error report")
	fmt.Fprintf(w, "%-18s %-100s\n", "# occurrences", "Error")
	for _, e := range sortedErrors(snap) {
		fmt.Fprintf(w, "%-18d %-100s\n", e.Occurrences, fmt.Sprintf("%s %s: %s", e.Method, e.Name, e.Error))
	}
	fmt.Fprintln(w)
}

// PreciseTable writes canarylab's own summary: percentiles from the HDR
// histograms, in milliseconds with microsecond resolution.
func PreciseTable(w io.Writer, snap stats.Snapshot, elapsed time.Duration) {
	qs := []float64{0.5, 0.9, 0.95, 0.99, 0.999}
	fmt.Fprintln(w, "Response times (ms, microsecond resolution)")
	fmt.Fprintf(w, "%-*s %-*s %9s %9s", typeWidth, "Type", nameWidth-20, "Name", "min", "mean")
	for _, q := range qs {
		fmt.Fprintf(w, " %9s", "p"+strings.TrimSuffix(PercentileLabel(q), "%"))
	}
	fmt.Fprintf(w, " %9s %9s\n", "max", "req/s")
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	row := func(e *stats.Entry) {
		fmt.Fprintf(w, "%-*s %-*s %9.3f %9.3f", typeWidth, e.Method, nameWidth-20, truncate(e.Name, nameWidth-20),
			e.MinResponseTime, e.AvgResponseTime())
		for _, q := range qs {
			fmt.Fprintf(w, " %9.3f", ms(e.Quantile(q)))
		}
		rps := 0.0
		if elapsed > 0 {
			rps = float64(e.NumRequests) / elapsed.Seconds()
		}
		fmt.Fprintf(w, " %9.3f %9.1f\n", e.MaxResponseTime, rps)
	}
	for _, e := range snap.Entries {
		row(e)
	}
	if snap.Total != nil {
		row(snap.Total)
	}
	fmt.Fprintln(w)
}
