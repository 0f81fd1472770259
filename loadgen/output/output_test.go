package output

import (
	"bytes"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canarylab/canarylab/loadgen/stats"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func sample() stats.Snapshot {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	st := stats.New(clock)
	for i := 0; i < 10; i++ {
		now = now.Add(100 * time.Millisecond)
		st.Success("GET", "/foo", 20*time.Millisecond, 10)
	}
	now = now.Add(time.Second)
	st.Failure("POST", "/bar", 147*time.Millisecond, 0, "HTTP 503")
	return st.Cumulative()
}

func TestPyFloat(t *testing.T) {
	for in, want := range map[float64]string{10: "10.0", 22.777948268303376: "22.777948268303376", 0: "0.0", 0.5: "0.5"} {
		if got := pyFloat(in); got != want {
			t.Errorf("pyFloat(%v) = %q, want %q", in, got, want)
		}
	}
	if pyNumber(20) != "20" || pyNumber(20.5) != "20.5" {
		t.Errorf("pyNumber: %q %q", pyNumber(20), pyNumber(20.5))
	}
}

func TestCSVFilesAreLocusts(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "run")
	w, err := NewCSVWriter(prefix)
	if err != nil {
		t.Fatal(err)
	}
	snap := sample()
	if err := w.History(time.Unix(1_700_000_002, 0), 3, snap); err != nil {
		t.Fatal(err)
	}
	if err := w.Snapshot(snap); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(prefix + "_stats.csv")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte("\r\n")) {
		t.Error("stats.csv lines must end with CRLF, as Python's csv module writes")
	}
	rows, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	// Timestamps are float unix seconds, as Python's time.time(), so rates
	// carry its rounding (11.1111099… for 10 requests over 0.9 s).
	want := [][]string{
		StatsHeader(),
		{"POST", "/bar", "1", "1", "147", "147.0", "147", "147", "0.0", "0.0", "0.0", "150", "150", "150", "150", "150", "150", "150", "150", "150", "150", "150"},
		{"GET", "/foo", "10", "0", "20", "20.0", "20", "20", "10.0", "11.111109933735536", "0.0", "20", "20", "20", "20", "20", "20", "20", "20", "20", "20", "20"},
		{"", "Aggregated", "11", "1", "20", "31.545454545454547", "20", "147", "9.090909090909092", "5.5", "0.5", "20", "20", "20", "20", "20", "150", "150", "150", "150", "150", "150"},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows %q", rows)
	}
	for i := range want {
		if strings.Join(rows[i], ",") != strings.Join(want[i], ",") {
			t.Errorf("row %d:\n got %s\nwant %s", i, strings.Join(rows[i], ","), strings.Join(want[i], ","))
		}
	}
	fails, _ := os.ReadFile(prefix + "_failures.csv")
	if string(fails) != "Method,Name,Error,Occurrences\r\nPOST,/bar,HTTP 503,1\r\n" {
		t.Errorf("failures.csv %q", fails)
	}
	hist, _ := os.ReadFile(prefix + "_stats_history.csv")
	lines := strings.Split(strings.TrimSpace(string(hist)), "\r\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "1700000002,3,,Aggregated,") {
		t.Errorf("history %q", hist)
	}
	for _, name := range []string{"_exceptions.csv"} {
		if _, err := os.Stat(prefix + name); err != nil {
			t.Errorf("%s missing: %v", name, err)
		}
	}
}

func TestConsoleTables(t *testing.T) {
	var b bytes.Buffer
	snap := sample()
	ConsoleTable(&b, snap, false)
	PercentileTable(&b, snap)
	ErrorReport(&b, snap)
	PreciseTable(&b, snap, 2*time.Second)
	out := b.String()
	for _, want := range []string{
		"Type     Name", "# reqs      # fails |    Avg     Min     Max    Med |   req/s  failures/s",
		"GET      /foo", "1(100.00%)", "Aggregated", "Response time percentiles (approximated)", "99.9%",
		"Error report", "POST /bar: HTTP 503", "microsecond resolution",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("console output lacks %q:\n%s", want, out)
		}
	}
}

func TestPrometheusCollector(t *testing.T) {
	snap := sample()
	c := NewCollector(func() stats.Snapshot { return snap }, func() map[string]float64 { return map[string]float64{"users": 3} })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	want := `
# HELP canarylab_load_requests_total Requests sent, by request name and method (failures included).
# TYPE canarylab_load_requests_total counter
canarylab_load_requests_total{method="",name="Aggregated"} 11
canarylab_load_requests_total{method="GET",name="/foo"} 10
canarylab_load_requests_total{method="POST",name="/bar"} 1
# HELP canarylab_load_users Load generator state: users.
# TYPE canarylab_load_users gauge
canarylab_load_users 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "canarylab_load_requests_total", "canarylab_load_users"); err != nil {
		t.Error(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "canarylab_load_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			var le25, le10 uint64
			for _, b := range h.GetBucket() {
				switch b.GetUpperBound() {
				case 0.025:
					le25 = b.GetCumulativeCount()
				case 0.01:
					le10 = b.GetCumulativeCount()
				}
			}
			if m.GetLabel()[1].GetValue() == "/foo" && (le25 != 10 || le10 != 0 || h.GetSampleCount() != 10) {
				t.Errorf("/foo buckets le=0.01 %d le=0.025 %d count %d, want 0, 10, 10", le10, le25, h.GetSampleCount())
			}
		}
	}
}
