package output

import (
	"encoding/csv"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/canarylab/canarylab/loadgen/stats"
)

// pyFloat formats a float as Python's repr does for ordinary values
// (Locust writes its CSVs with str(float)): shortest round trip, with a
// ".0" on whole numbers.
func pyFloat(v float64) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.ContainsAny(s, ".eEnN") {
		s += ".0"
	}
	return s
}

// pyNumber writes a whole number as an int (Locust writes int response
// times from FastHttpUser and "or 0" defaults) and others as pyFloat.
func pyNumber(v float64) string {
	if v == float64(int64(v)) {
		return strconv.FormatInt(int64(v), 10)
	}
	return pyFloat(v)
}

func percentileHeader() []string {
	out := make([]string, len(stats.Percentiles))
	for i, p := range stats.Percentiles {
		out[i] = PercentileLabel(p)
	}
	return out
}

// StatsHeader is the header of Locust's PREFIX_stats.csv.
func StatsHeader() []string {
	return append([]string{"Type", "Name", "Request Count", "Failure Count", "Median Response Time",
		"Average Response Time", "Min Response Time", "Max Response Time", "Average Content Size",
		"Requests/s", "Failures/s"}, percentileHeader()...)
}

func statsRow(e *stats.Entry, method string) []string {
	row := []string{method, e.Name, strconv.FormatInt(e.NumRequests, 10), strconv.FormatInt(e.NumFailures, 10),
		pyNumber(e.Median()), pyFloat(e.AvgResponseTime()), pyNumber(e.MinResponseTime), pyNumber(e.MaxResponseTime),
		pyFloat(e.AvgContentLength()), pyFloat(e.TotalRPS()), pyFloat(e.TotalFailPerSec())}
	for _, p := range stats.Percentiles {
		if e.NumRequests == 0 {
			row = append(row, "N/A")
		} else {
			row = append(row, strconv.FormatInt(int64(e.Percentile(p)), 10))
		}
	}
	return row
}

// CSVWriter writes Locust's four CSV files under a prefix:
// PREFIX_stats.csv, PREFIX_stats_history.csv, PREFIX_failures.csv and
// PREFIX_exceptions.csv, with CRLF line ends as Python's csv module.
type CSVWriter struct {
	prefix  string
	history *os.File
	hist    *csv.Writer
}

// NewCSVWriter creates the files (truncating old ones) and writes the
// history header.
func NewCSVWriter(prefix string) (*CSVWriter, error) {
	f, err := os.Create(prefix + "_stats_history.csv")
	if err != nil {
		return nil, fmt.Errorf("csv: %w", err)
	}
	w := &CSVWriter{prefix: prefix, history: f, hist: csv.NewWriter(f)}
	w.hist.UseCRLF = true
	header := append([]string{"Timestamp", "User Count", "Type", "Name", "Requests/s", "Failures/s"}, percentileHeader()...)
	header = append(header, "Total Request Count", "Total Failure Count", "Total Median Response Time",
		"Total Average Response Time", "Total Min Response Time", "Total Max Response Time", "Total Average Content Size")
	if err := w.hist.Write(header); err != nil {
		f.Close()
		return nil, fmt.Errorf("csv: %w", err)
	}
	for _, name := range []string{"_stats.csv", "_failures.csv", "_exceptions.csv"} {
		if err := writeCSVFile(prefix+name, nil); err != nil {
			f.Close()
			return nil, err
		}
	}
	return w, nil
}

// History appends the Aggregated row of snap at now to the history file.
func (w *CSVWriter) History(now time.Time, users int, snap stats.Snapshot) error {
	e := snap.Total
	row := []string{strconv.FormatInt(now.Unix(), 10), strconv.Itoa(users), "", stats.AggregatedName,
		strconv.FormatFloat(e.CurrentRPS(e), 'f', 6, 64), strconv.FormatFloat(e.CurrentFailPerSec(e), 'f', 6, 64)}
	for _, p := range stats.Percentiles {
		if e.NumRequests == 0 {
			row = append(row, "N/A")
		} else {
			row = append(row, strconv.FormatInt(int64(e.Percentile(p)), 10))
		}
	}
	row = append(row, strconv.FormatInt(e.NumRequests, 10), strconv.FormatInt(e.NumFailures, 10),
		pyNumber(e.Median()), pyFloat(e.AvgResponseTime()), pyNumber(e.MinResponseTime), pyNumber(e.MaxResponseTime),
		pyFloat(e.AvgContentLength()))
	if err := w.hist.Write(row); err != nil {
		return fmt.Errorf("csv history: %w", err)
	}
	w.hist.Flush()
	return w.hist.Error()
}

// Snapshot rewrites the stats, failures and exceptions files.
func (w *CSVWriter) Snapshot(snap stats.Snapshot) error {
	rows := [][]string{StatsHeader()}
	for _, e := range snap.Entries {
		rows = append(rows, statsRow(e, e.Method))
	}
	if snap.Total != nil {
		rows = append(rows, statsRow(snap.Total, ""))
	}
	if err := writeCSVFile(w.prefix+"_stats.csv", rows); err != nil {
		return err
	}
	fails := [][]string{{"Method", "Name", "Error", "Occurrences"}}
	for _, e := range sortedErrors(snap) {
		fails = append(fails, []string{e.Method, e.Name, e.Error, strconv.FormatInt(e.Occurrences, 10)})
	}
	if err := writeCSVFile(w.prefix+"_failures.csv", fails); err != nil {
		return err
	}
	return writeCSVFile(w.prefix+"_exceptions.csv", [][]string{{"Count", "Message", "Traceback", "Nodes"}})
}

// Close flushes and closes the history file.
func (w *CSVWriter) Close() error {
	w.hist.Flush()
	if err := w.hist.Error(); err != nil {
		w.history.Close()
		return err
	}
	return w.history.Close()
}

func writeCSVFile(path string, rows [][]string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("csv: %w", err)
	}
	cw := csv.NewWriter(f)
	cw.UseCRLF = true
	if err := cw.WriteAll(rows); err != nil {
		f.Close()
		return fmt.Errorf("csv %s: %w", path, err)
	}
	return f.Close()
}

func sortedErrors(snap stats.Snapshot) []*stats.Error {
	out := make([]*stats.Error, 0, len(snap.Errors))
	for _, e := range snap.Errors {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Occurrences != out[j].Occurrences {
			return out[i].Occurrences > out[j].Occurrences
		}
		return out[i].Name+out[i].Method+out[i].Error < out[j].Name+out[j].Method+out[j].Error
	})
	return out
}
