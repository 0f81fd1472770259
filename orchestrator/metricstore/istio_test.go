package metricstore

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/canarylab/canarylab/orchestrator/analysis"
)

// The builtin queries are the analysis' own (Flagger's istioQueries,
// verbatim): the store is tested on the very text the analysis sends.
var (
	istioSuccessRateTemplate = analysis.BuiltinQueries[analysis.RequestSuccessRate]
	istioDurationTemplate    = analysis.BuiltinQueries[analysis.RequestDuration]
)

// renderIstio renders a builtin query as the analysis does, for
// namespace, target and interval.
func renderIstio(tmpl, namespace, target, interval string) string {
	q, err := analysis.Render(tmpl, analysis.TemplateVars{Namespace: namespace, Target: target, Interval: interval})
	if err != nil {
		panic(err)
	}
	return q
}

// t0 is an arbitrary whole second, far from zero so that counters and
// timestamps look like real ones.
var t0 = time.Unix(1_700_000_000, 0).UTC()

func openTestStore(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// workloadTraffic describes one workload's constant request rates: per
// second, by response code, and per second by cumulative latency bucket
// (the +Inf bucket must equal the sum of the codes).
type workloadTraffic struct {
	name    string
	codes   map[string]float64
	buckets map[string]float64 // le → cumulative requests per second
}

// feedIstio appends Istio's standard series for each workload every step
// from start to end inclusive, as a destination-reporting sidecar would
// expose them. Counters start at 1000 so that rate()'s extrapolation
// towards the window start is never cut short by the counter's zero point.
func feedIstio(t testing.TB, s *Store, namespace string, start, end time.Time, step time.Duration, workloads []workloadTraffic) {
	t.Helper()
	const base = 1000
	for ts := start; !ts.After(end); ts = ts.Add(step) {
		elapsed := ts.Sub(start).Seconds()
		app := s.Appender()
		for _, w := range workloads {
			for code, perSec := range w.codes {
				err := app.AddMap(map[string]string{
					"__name__":                       "istio_requests_total",
					"reporter":                       "destination",
					"destination_workload_namespace": namespace,
					"destination_workload":           w.name,
					"response_code":                  code,
				}, ts, base+perSec*elapsed)
				if err != nil {
					t.Fatal(err)
				}
			}
			for le, perSec := range w.buckets {
				err := app.AddMap(map[string]string{
					"__name__":                       "istio_request_duration_milliseconds_bucket",
					"reporter":                       "destination",
					"destination_workload_namespace": namespace,
					"destination_workload":           w.name,
					"le":                             le,
				}, ts, base+perSec*elapsed)
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestIstioQueriesRenderToFlaggerWireForm(t *testing.T) {
	// The wire form Flagger v1.36.1 sends (flagger-1.36-differences.md §5).
	want := ` sum( rate( istio_requests_total{ reporter="destination", destination_workload_namespace="test", destination_workload=~"podinfo", response_code!~"5.*" }[1m] ) ) / sum( rate( istio_requests_total{ reporter="destination", destination_workload_namespace="test", destination_workload=~"podinfo" }[1m] ) ) * 100`
	if got := CollapseWhitespace(renderIstio(istioSuccessRateTemplate, "test", "podinfo", "1m")); got != want {
		t.Errorf("success rate wire form:\n got %q\nwant %q", got, want)
	}
	want = ` histogram_quantile( 0.99, sum( rate( istio_request_duration_milliseconds_bucket{ reporter="destination", destination_workload_namespace="test", destination_workload=~"podinfo" }[1m] ) ) by (le) )`
	if got := CollapseWhitespace(renderIstio(istioDurationTemplate, "test", "podinfo", "1m")); got != want {
		t.Errorf("duration wire form:\n got %q\nwant %q", got, want)
	}
}

func TestIstioBuiltinQueries(t *testing.T) {
	// The canary: 9 req/s answered 200 and 1 req/s answered 500, so the
	// success rate is 9/(9+1)*100 = 90 %. Latency buckets (cumulative
	// req/s): ≤25 ms 5, ≤50 ms 8, ≤100 ms 9, ≤250 ms 10, +Inf 10. The
	// 0.99 quantile ranks 0.99*10 = 9.9 requests, inside (100, 250] which
	// holds 10-9 = 1, so histogram_quantile interpolates
	// 100 + (250-100)*(9.9-9)/1 = 235 ms.
	canary := workloadTraffic{
		name:    "podinfo",
		codes:   map[string]float64{"200": 9, "500": 1},
		buckets: map[string]float64{"25": 5, "50": 8, "100": 9, "250": 10, "+Inf": 10},
	}
	// The primary takes far more traffic, all 200 and fast. Were it
	// matched by destination_workload=~"podinfo", the success rate would
	// be (9+100)/(10+100)*100 = 99.09 % and the p99 below 100 ms.
	primary := workloadTraffic{
		name:    "podinfo-primary",
		codes:   map[string]float64{"200": 100},
		buckets: map[string]float64{"25": 90, "50": 99, "100": 100, "250": 100, "+Inf": 100},
	}
	// A healthy canary: only 200s, ≤10 ms 4/s, ≤25 ms 10/s. Rank 9.9 falls
	// in (10, 25] holding 6: 10 + 15*(9.9-4)/6 = 24.75 ms.
	healthy := workloadTraffic{
		name:    "podinfo",
		codes:   map[string]float64{"200": 10},
		buckets: map[string]float64{"10": 4, "25": 10, "50": 10, "+Inf": 10},
	}
	// A deployed canary that receives nothing: its series exist but stay
	// flat, so rate() is 0 and the success rate 0/0 = NaN, and
	// histogram_quantile of all-zero buckets is NaN too.
	idle := workloadTraffic{
		name:    "podinfo",
		codes:   map[string]float64{"200": 0},
		buckets: map[string]float64{"25": 0, "+Inf": 0},
	}

	tests := []struct {
		name         string
		workloads    []workloadTraffic
		wantSuccess  float64
		wantDuration float64
		wantErr      error // for both queries
	}{
		{name: "canary with errors, primary excluded", workloads: []workloadTraffic{canary, primary}, wantSuccess: 90, wantDuration: 235},
		{name: "canary alone", workloads: []workloadTraffic{canary}, wantSuccess: 90, wantDuration: 235},
		{name: "healthy canary", workloads: []workloadTraffic{healthy, primary}, wantSuccess: 100, wantDuration: 24.75},
		{name: "only the primary has series", workloads: []workloadTraffic{primary}, wantErr: ErrNoValuesFound},
		{name: "canary without traffic", workloads: []workloadTraffic{idle, primary}, wantErr: ErrNoValuesFound},
		{name: "empty store", wantErr: ErrNoValuesFound},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTestStore(t, Options{})
			end := t0.Add(2 * time.Minute)
			feedIstio(t, s, "test", t0, end, 5*time.Second, tt.workloads)

			success := renderIstio(istioSuccessRateTemplate, "test", "podinfo", "1m")
			duration := renderIstio(istioDurationTemplate, "test", "podinfo", "1m")
			for _, q := range []struct {
				name  string
				query string
				want  float64
			}{{"request-success-rate", success, tt.wantSuccess}, {"request-duration", duration, tt.wantDuration}} {
				got, err := s.Query(ctx, q.query, end)
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) || err.Error() != tt.wantErr.Error() {
						t.Errorf("%s: got (%v, %v), want error %q", q.name, got, err, tt.wantErr)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", q.name, err)
				}
				if math.Abs(got-q.want) > 1e-9 {
					t.Errorf("%s = %v, want %v", q.name, got, q.want)
				}
			}
		})
	}
}

func TestIstioRegexIsAnchored(t *testing.T) {
	s := openTestStore(t, Options{})
	feedIstio(t, s, "test", t0, t0.Add(time.Minute), 5*time.Second, []workloadTraffic{
		{name: "podinfo", codes: map[string]float64{"200": 1}},
		{name: "podinfo-primary", codes: map[string]float64{"200": 1}},
	})
	v, err := s.QueryVector(context.Background(),
		`istio_requests_total{destination_workload=~"podinfo"}`, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 1 || v[0].Metric.Get("destination_workload") != "podinfo" {
		t.Fatalf(`destination_workload=~"podinfo" matched %v, want only podinfo`, v)
	}
}

// TestIstioQueriesOtherInterval checks that the window follows the
// interval: with a 30s window only the last 30 s of a rate change count.
func TestIstioQueriesOtherInterval(t *testing.T) {
	s := openTestStore(t, Options{})
	// One minute of 50 % success, then one minute of 100 %.
	feedIstio(t, s, "test", t0, t0.Add(time.Minute), 5*time.Second, []workloadTraffic{
		{name: "podinfo", codes: map[string]float64{"200": 1, "503": 1}},
	})
	app := s.Appender()
	for i := 1; i <= 12; i++ {
		ts := t0.Add(time.Minute + time.Duration(i)*5*time.Second)
		elapsed := 60 + float64(i)*5
		for code, v := range map[string]float64{"200": 1000 + elapsed, "503": 1000 + 60} {
			lbls := labels.FromStrings("__name__", "istio_requests_total", "reporter", "destination",
				"destination_workload_namespace", "test", "destination_workload", "podinfo", "response_code", code)
			if err := app.Add(lbls, ts, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, iv := range []string{"30s", "1m"} {
		got, err := s.Query(context.Background(), renderIstio(istioSuccessRateTemplate, "test", "podinfo", iv), t0.Add(2*time.Minute))
		if err != nil {
			t.Fatalf("%s: %v", iv, err)
		}
		if math.Abs(got-100) > 1e-9 {
			t.Errorf("interval %s: success rate %v, want 100 (the failures stopped 60 s before)", iv, got)
		}
	}
	got, err := s.Query(context.Background(), renderIstio(istioSuccessRateTemplate, "test", "podinfo", "2m"), t0.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// The 2m window (t0, t0+2m] is open on the left, so it starts with the
	// t0+5s samples: 200s rose 1005→1120 (115) and 503s 1005→1060 (55),
	// both extrapolated by the same factor, which cancels.
	if want := 115.0 / 170 * 100; math.Abs(got-want) > 1e-9 {
		t.Errorf("interval 2m: success rate %v, want %v", got, want)
	}
}
