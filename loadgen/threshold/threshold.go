// Package threshold evaluates pass/fail criteria on a load test's results,
// as k6's thresholds do: "p99<500ms", "errors<1%", "rps>=100". A broken
// threshold makes the run exit non-zero, so a pipeline can gate on it.
package threshold

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/canarylab/canarylab/loadgen/stats"
	"github.com/canarylab/canarylab/mockserver/behavior"
)

// Threshold is one criterion: a metric compared with a value, on all
// requests or on those of one name.
type Threshold struct {
	// Source is the expression as written.
	Source string
	// Metric is p50…p9999 (pNN), avg, min, max, median, errors, rps,
	// requests or failures.
	Metric string
	// Quantile is the quantile of a pNN metric (0.99 for p99).
	Quantile float64
	// Name restricts the threshold to requests of that name ("" = all).
	Name string
	Op   string
	// Value is in seconds for times, a ratio for errors, per second for rps.
	Value float64
}

var exprRE = regexp.MustCompile(`^\s*([a-zA-Z]+[0-9.]*|p\([0-9.]+\))\s*(?:\{\s*name\s*=\s*"?([^"}]*)"?\s*\})?\s*(<=|>=|==|!=|<|>)\s*(\S+)\s*$`)

// Parse reads an expression such as p99<500ms, p(99.9)<1s, avg<200ms,
// errors<1%, rps>=100, or p95{name=/api}<300ms.
func Parse(expr string) (Threshold, error) {
	m := exprRE.FindStringSubmatch(expr)
	if m == nil {
		return Threshold{}, fmt.Errorf("threshold %q: write metric, comparison and value, such as p99<500ms, errors<1%% or rps>=100", expr)
	}
	t := Threshold{Source: strings.TrimSpace(expr), Metric: strings.ToLower(m[1]), Name: strings.TrimSpace(m[2]), Op: m[3]}
	valueText := m[4]
	switch {
	case strings.HasPrefix(t.Metric, "p(") || (strings.HasPrefix(t.Metric, "p") && len(t.Metric) > 1 && t.Metric[1] >= '0' && t.Metric[1] <= '9'):
		name := t.Metric
		if strings.HasPrefix(name, "p(") {
			name = "p" + strings.TrimSuffix(strings.TrimPrefix(name, "p("), ")")
		}
		q, err := behavior.ParsePercentileName(name)
		if err != nil {
			return Threshold{}, fmt.Errorf("threshold %q: %w", expr, err)
		}
		t.Metric, t.Quantile = "quantile", q
		fallthrough
	case t.Metric == "avg" || t.Metric == "min" || t.Metric == "max" || t.Metric == "median" || t.Metric == "med":
		d, err := behavior.ParseDuration(valueText)
		if err != nil {
			return Threshold{}, fmt.Errorf("threshold %q: %w", expr, err)
		}
		t.Value = d.Seconds()
		if t.Metric == "med" {
			t.Metric = "median"
		}
	case t.Metric == "errors" || t.Metric == "error_rate" || t.Metric == "failures_ratio":
		t.Metric = "errors"
		v, err := parseRatio(valueText)
		if err != nil {
			return Threshold{}, fmt.Errorf("threshold %q: %w", expr, err)
		}
		t.Value = v
	case t.Metric == "rps" || t.Metric == "requests" || t.Metric == "failures":
		v, err := strconv.ParseFloat(strings.TrimSuffix(valueText, "/s"), 64)
		if err != nil {
			return Threshold{}, fmt.Errorf("threshold %q: %q is not a number", expr, valueText)
		}
		t.Value = v
	default:
		return Threshold{}, fmt.Errorf("threshold %q: unknown metric %q: use p50…p9999, avg, min, max, median, errors, rps, requests or failures", expr, m[1])
	}
	return t, nil
}

func parseRatio(s string) (float64, error) {
	if strings.HasSuffix(s, "%") {
		v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a percentage", s)
		}
		return v / 100, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a ratio (0.01) or a percentage (1%%)", s)
	}
	return v, nil
}

// Result is a threshold checked against a run.
type Result struct {
	Threshold Threshold `json:"-"`
	Source    string    `json:"threshold"`
	Actual    float64   `json:"actual"`
	// Display is the actual value written the way the threshold is.
	Display string `json:"display"`
	Passed  bool   `json:"passed"`
	// Missing is set when the named requests never happened: the
	// threshold then fails, as a check on nothing must not pass.
	Missing bool `json:"missing,omitempty"`
}

// Check evaluates t on a snapshot taken over elapsed.
func (t Threshold) Check(snap stats.Snapshot, elapsed time.Duration) Result {
	e := snap.Total
	if t.Name != "" {
		e = nil
		for _, x := range snap.Entries {
			if x.Name == t.Name {
				if e == nil {
					e = x.Clone()
				} else {
					e.Extend(x)
				}
			}
		}
	}
	r := Result{Threshold: t, Source: t.Source}
	if e == nil || e.NumRequests == 0 {
		r.Missing = true
		r.Display = "no requests"
		return r
	}
	switch t.Metric {
	case "quantile":
		r.Actual = e.Quantile(t.Quantile).Seconds()
	case "median":
		r.Actual = e.Quantile(0.5).Seconds()
	case "avg":
		r.Actual = e.AvgResponseTime() / 1000
	case "min":
		r.Actual = e.MinResponseTime / 1000
	case "max":
		r.Actual = e.MaxResponseTime / 1000
	case "errors":
		r.Actual = e.FailRatio()
	case "rps":
		if elapsed > 0 {
			r.Actual = float64(e.NumRequests) / elapsed.Seconds()
		}
	case "requests":
		r.Actual = float64(e.NumRequests)
	case "failures":
		r.Actual = float64(e.NumFailures)
	}
	r.Display = t.format(r.Actual)
	r.Passed = compare(r.Actual, t.Op, t.Value)
	return r
}

func (t Threshold) format(v float64) string {
	switch t.Metric {
	case "quantile", "median", "avg", "min", "max":
		return behavior.FormatDuration(time.Duration(v * float64(time.Second)).Round(time.Microsecond))
	case "errors":
		return strconv.FormatFloat(v*100, 'f', 3, 64) + "%"
	case "rps":
		return strconv.FormatFloat(v, 'f', 1, 64) + "/s"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func compare(a float64, op string, b float64) bool {
	switch op {
	case "<":
		return a < b
	case "<=":
		return a <= b
	case ">":
		return a > b
	case ">=":
		return a >= b
	case "==":
		return a == b
	case "!=":
		return a != b
	}
	return false
}

// CheckAll evaluates every threshold and reports whether all passed.
func CheckAll(ts []Threshold, snap stats.Snapshot, elapsed time.Duration) ([]Result, bool) {
	ok := true
	out := make([]Result, len(ts))
	for i, t := range ts {
		out[i] = t.Check(snap, elapsed)
		ok = ok && out[i].Passed
	}
	return out, ok
}
