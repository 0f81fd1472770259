package output

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/canarylab/canarylab/loadgen/stats"
)

// Latency is a distribution summary in milliseconds (microsecond
// resolution).
type Latency struct {
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// EntrySummary is one row of the JSON summary.
type EntrySummary struct {
	Method    string  `json:"method,omitempty"`
	Name      string  `json:"name"`
	Requests  int64   `json:"requests"`
	Failures  int64   `json:"failures"`
	ErrorRate float64 `json:"errorRate"`
	RPS       float64 `json:"rps"`
	Bytes     int64   `json:"bytes"`
	// LatencyMS is from the HDR histograms.
	LatencyMS Latency `json:"latencyMs"`
	// LocustPercentilesMS are Locust's rounded percentiles, for comparing
	// with a Locust master's report.
	LocustPercentilesMS map[string]int64 `json:"locustPercentilesMs"`
}

// Summary is the JSON document a run writes with --json.
type Summary struct {
	Start    time.Time      `json:"start"`
	End      time.Time      `json:"end"`
	Elapsed  float64        `json:"elapsedSeconds"`
	Model    string         `json:"model"`
	Settings map[string]any `json:"settings,omitempty"`
	Total    EntrySummary   `json:"total"`
	Entries  []EntrySummary `json:"entries"`
	Errors   []*stats.Error `json:"errors"`
	// Open holds the open model's counts (intended, sent, late, dropped).
	Open any `json:"open,omitempty"`
	// Thresholds are the checks and their results.
	Thresholds any  `json:"thresholds,omitempty"`
	Passed     bool `json:"passed"`
}

// Summarize builds the entries of a summary from a snapshot.
func Summarize(snap stats.Snapshot, elapsed time.Duration) (EntrySummary, []EntrySummary) {
	var entries []EntrySummary
	for _, e := range snap.Entries {
		entries = append(entries, summarizeEntry(e, elapsed))
	}
	if entries == nil {
		entries = []EntrySummary{}
	}
	return summarizeEntry(snap.Total, elapsed), entries
}

func summarizeEntry(e *stats.Entry, elapsed time.Duration) EntrySummary {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	s := EntrySummary{
		Method: e.Method, Name: e.Name, Requests: e.NumRequests, Failures: e.NumFailures,
		ErrorRate: e.FailRatio(), Bytes: e.TotalContentLength,
		LatencyMS: Latency{
			Min: e.MinResponseTime, Mean: e.AvgResponseTime(), Max: e.MaxResponseTime,
			P50: ms(e.Quantile(0.5)), P90: ms(e.Quantile(0.9)), P95: ms(e.Quantile(0.95)),
			P99: ms(e.Quantile(0.99)), P999: ms(e.Quantile(0.999)),
		},
		LocustPercentilesMS: map[string]int64{},
	}
	if elapsed > 0 {
		s.RPS = float64(e.NumRequests) / elapsed.Seconds()
	}
	for _, p := range stats.Percentiles {
		s.LocustPercentilesMS[PercentileLabel(p)] = int64(e.Percentile(p))
	}
	return s
}

// WriteJSON writes the summary to path ("-" for standard output is the
// caller's business: pass a file path here).
func WriteJSON(path string, s Summary) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("json summary: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("json summary: %w", err)
	}
	return nil
}
