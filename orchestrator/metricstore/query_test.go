package metricstore

import (
	"context"
	"errors"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

func TestCollapseWhitespace(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"up", "up"},
		{"  sum(\n\tfoo )\r\n", " sum( foo ) "},
		{"a\f\fb", "a b"},
		// \v is not in Go's \s, so Flagger keeps it.
		{"a\vb", "a\vb"},
		// Non-ASCII spaces are not in Go's \s either.
		{"a\u00a0 b", "a\u00a0 b"},
	}
	for _, tt := range tests {
		if got := CollapseWhitespace(tt.in); got != tt.want {
			t.Errorf("CollapseWhitespace(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// querySemanticsStore holds the series the Query table below reads.
func querySemanticsStore(t *testing.T) *Store {
	t.Helper()
	s := openTestStore(t, Options{})
	app := s.Appender()
	add := func(v float64, kv ...string) {
		t.Helper()
		if err := app.Add(labels.FromStrings(kv...), t0, v); err != nil {
			t.Fatal(err)
		}
		if err := app.Add(labels.FromStrings(kv...), t0.Add(30*time.Second), v); err != nil {
			t.Fatal(err)
		}
	}
	// Appended out of label order: the vector is sorted by labels anyway.
	add(1, "__name__", "foo", "pod", "a")
	add(3, "__name__", "foo", "pod", "c")
	add(2, "__name__", "foo", "pod", "b")
	// The last series is NaN: Flagger checks only the final value.
	add(5, "__name__", "bar", "pod", "a")
	add(math.NaN(), "__name__", "bar", "pod", "b")
	add(math.NaN(), "__name__", "baz", "pod", "a")
	add(5, "__name__", "baz", "pod", "b")
	// A label value with two spaces, which the collapse turns into one.
	add(7, "__name__", "spaced", "path", "a b")
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestQuerySemantics(t *testing.T) {
	s := querySemanticsStore(t)
	at := t0.Add(30 * time.Second)
	tests := []struct {
		name    string
		query   string
		want    float64
		wantErr error  // errors.Is target
		wantMsg string // exact error text, if set
		wantPfx string // error text prefix, if set
	}{
		{name: "single series", query: `foo{pod="a"}`, want: 1},
		{name: "last series wins (sorted by labels)", query: `foo`, want: 3},
		{name: "sort_desc order is kept", query: `sort_desc(foo)`, want: 1},
		{name: "sort order is kept", query: `sort(foo)`, want: 3},
		{name: "aggregation", query: `sum(foo)`, want: 6},
		{name: "IsOnline probe", query: `vector(1)`, want: 1},
		{name: "whitespace collapsed before evaluation", query: "spaced{path=\"a  b\"}", want: 7},
		{name: "multi-line query", query: "sum(\n\tfoo\n)\n", want: 6},
		{name: "empty vector", query: `nothing_here`, wantErr: ErrNoValuesFound, wantMsg: "no values found"},
		{name: "NaN last value", query: `bar`, wantErr: ErrNoValuesFound, wantMsg: "no values found"},
		{name: "NaN from 0/0", query: `sum(foo) * 0 / 0`, wantErr: ErrNoValuesFound},
		{name: "NaN not last is fine", query: `baz`, want: 5},
		{name: "matrix", query: `foo[1m]`, wantErr: ErrMultipleValues, wantMsg: "query returned multiple values"},
		{name: "empty matrix", query: `nothing_here[1m]`, wantErr: ErrNoValuesFound},
		{
			name: "scalar", query: `1 + 1`, wantErr: ErrNotVector,
			wantMsg: `error unmarshaling result: scalar result is not an instant vector, '{"status":"success","data":{"resultType":"scalar","result":[1700000030,"2"]}}'`,
		},
		{
			name: "string", query: `"hello"`, wantErr: ErrNotVector,
			wantMsg: `error unmarshaling result: string result is not an instant vector, '{"status":"success","data":{"resultType":"string","result":[1700000030,"hello"]}}'`,
		},
		{
			name: "parse error", query: `sum(foo`, wantErr: parser.ParseErrors{},
			wantMsg: `invalid parameter "query": 1:8: parse error: unclosed left parenthesis`,
		},
		{
			name: "evaluation error", query: `foo / on() foo`,
			// The engine's text names two of the series, in map order.
			wantPfx: "found duplicate series for the match group {} on the right hand-side of the operation: [",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Query(context.Background(), tt.query, at)
			if tt.wantErr == nil && tt.wantMsg == "" && tt.wantPfx == "" {
				if err != nil {
					t.Fatalf("Query(%q): %v", tt.query, err)
				}
				if got != tt.want {
					t.Fatalf("Query(%q) = %v, want %v", tt.query, got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Query(%q) = %v, want an error", tt.query, got)
			}
			if tt.wantErr != nil {
				if _, ok := tt.wantErr.(parser.ParseErrors); ok {
					var pe parser.ParseErrors
					if !errors.As(err, &pe) {
						t.Errorf("error %v does not wrap parser.ParseErrors", err)
					}
				} else if !errors.Is(err, tt.wantErr) {
					t.Errorf("error %v is not %v", err, tt.wantErr)
				}
			}
			if tt.wantMsg != "" && err.Error() != tt.wantMsg {
				t.Errorf("error text\n got %q\nwant %q", err.Error(), tt.wantMsg)
			}
			if !strings.HasPrefix(err.Error(), tt.wantPfx) {
				t.Errorf("error text\n got %q\nwant prefix %q", err.Error(), tt.wantPfx)
			}
		})
	}
}

func TestQueryVectorIsSortedAndComplete(t *testing.T) {
	s := querySemanticsStore(t)
	v, err := s.QueryVector(context.Background(), "foo", t0.Add(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var pods []string
	for _, smp := range v {
		pods = append(pods, smp.Metric.Get("pod")+"="+strconv.FormatFloat(smp.F, 'f', -1, 64))
	}
	if got, want := strings.Join(pods, ","), "a=1,b=2,c=3"; got != want {
		t.Errorf("QueryVector(foo) = %s, want %s", got, want)
	}
	v, err = s.QueryVector(context.Background(), "nothing_here", t0)
	if err != nil || len(v) != 0 {
		t.Errorf("QueryVector of an absent metric = (%v, %v), want an empty vector and no error", v, err)
	}
	if _, err := s.QueryVector(context.Background(), "foo[1m]", t0); !errors.Is(err, ErrMultipleValues) {
		t.Errorf("QueryVector of a matrix: %v, want ErrMultipleValues", err)
	}
}

func TestQueryLookbackDelta(t *testing.T) {
	for _, tt := range []struct {
		lookback time.Duration
		age      time.Duration
		wantErr  error
	}{
		{0, 4 * time.Minute, nil},              // default 5m
		{0, 6 * time.Minute, ErrNoValuesFound}, // default 5m
		{time.Minute, 50 * time.Second, nil},   // custom
		{time.Minute, 70 * time.Second, ErrNoValuesFound},
	} {
		s := openTestStore(t, Options{LookbackDelta: tt.lookback})
		if err := s.AppendMap(map[string]string{"__name__": "g"}, t0, 1); err != nil {
			t.Fatal(err)
		}
		_, err := s.Query(context.Background(), "g", t0.Add(tt.age))
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("lookback %v, sample %v old: error %v, want %v", tt.lookback, tt.age, err, tt.wantErr)
		}
	}
}

func TestRetention(t *testing.T) {
	s := openTestStore(t, Options{Retention: time.Minute})
	for i := range 200 {
		if err := s.AppendMap(map[string]string{"__name__": "c"}, t0.Add(time.Duration(i)*time.Second), float64(i)); err != nil {
			t.Fatal(err)
		}
	}
	end := t0.Add(199 * time.Second)
	// The last minute is always there.
	if v, err := s.Query(context.Background(), "count_over_time(c[1m])", end); err != nil || v != 60 {
		t.Errorf("count_over_time(c[1m]) = (%v, %v), want 60", v, err)
	}
	// Truncation happened: far less than 200 samples remain.
	v, err := s.Query(context.Background(), "count_over_time(c[10m])", end)
	if err != nil || v < 60 || v > 91 {
		t.Errorf("count_over_time(c[10m]) = (%v, %v), want between 60 and 90 after retention", v, err)
	}
}

func TestClosedStore(t *testing.T) {
	s, err := Open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.AppendMap(map[string]string{"__name__": "x"}, t0, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Query(context.Background(), "x", t0); !errors.Is(err, ErrClosed) {
		t.Errorf("Query after Close: %v, want ErrClosed", err)
	}
}

func TestAppendErrors(t *testing.T) {
	s := openTestStore(t, Options{})
	lbls := labels.FromStrings("__name__", "m")
	if err := s.Append(lbls, t0.Add(time.Second), 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(lbls, t0, 1); err == nil || !strings.Contains(err.Error(), "out of order") {
		t.Errorf("older sample: %v, want an out-of-order error", err)
	}
	if err := s.Append(labels.EmptyLabels(), t0, 1); err == nil {
		t.Error("empty labels accepted")
	}
	// All or nothing.
	err := s.AppendSamples([]Sample{
		{Labels: labels.FromStrings("__name__", "n"), T: t0, V: 1},
		{Labels: lbls, T: t0, V: 1}, // out of order
	})
	if err == nil {
		t.Fatal("AppendSamples with an out-of-order sample succeeded")
	}
	if _, err := s.Query(context.Background(), "n", t0); !errors.Is(err, ErrNoValuesFound) {
		t.Errorf("a rolled-back sample is visible: %v", err)
	}
}

func TestWorkingDirectory(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AppendMap(map[string]string{"__name__": "x"}, t0, 1); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.dir, dir) {
		t.Errorf("working dir %s is not inside %s", s.dir, dir)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("after Close, %s holds %v (%v), want nothing", dir, entries, err)
	}
}

// TestConcurrentUse appends, queries and truncates from several
// goroutines at once, for the race detector. Writers advance in lockstep
// rounds of 1 s: one lagging more than Retention behind the newest sample
// would have its samples refused as out of bounds.
func TestConcurrentUse(t *testing.T) {
	s := openTestStore(t, Options{Retention: 10 * time.Second})
	var mu sync.Mutex
	var errs []error
	for round := range 30 {
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				lbls := labels.FromStrings("__name__", "c", "w", strconv.Itoa(w))
				for j := range 10 {
					i := round*10 + j
					ts := t0.Add(time.Duration(i) * 100 * time.Millisecond)
					err := s.Append(lbls, ts, float64(i))
					if err == nil && j == 0 {
						_, err = s.QueryVector(context.Background(), "sum(rate(c[5s]))", ts)
					}
					if err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
						return
					}
				}
			})
		}
		wg.Wait()
	}
	for _, err := range errs {
		t.Error(err)
	}
	// Each writer's counter grows 1 per 100 ms: 10/s, 40/s summed.
	if got, err := s.Query(context.Background(), "sum(rate(c[5s]))", t0.Add(29900*time.Millisecond)); err != nil || math.Abs(got-40) > 1e-9 {
		t.Errorf("sum(rate(c[5s])) = (%v, %v), want 40", got, err)
	}
	// Retention dropped the start (whole chunks of up to 120 samples go,
	// so some samples older than 10 s remain) and kept the last 10 s.
	if got, err := s.Query(context.Background(), `count_over_time(c{w="0"}[1m])`, t0.Add(29900*time.Millisecond)); err != nil || got < 100 || got >= 300 {
		t.Errorf("count_over_time over 1m = (%v, %v), want between 100 and 299 samples after retention", got, err)
	}
}
