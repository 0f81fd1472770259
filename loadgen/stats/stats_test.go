package stats

import (
	"math"
	"sync"
	"testing"
	"time"
)

// TestRoundResponseTime checks Locust's bucketing, which uses Python's
// round: halves go to the even neighbour (values verified with Python 3.11).
func TestRoundResponseTime(t *testing.T) {
	tests := []struct {
		ms   float64
		want int64
	}{
		{0, 0}, {0.4, 0}, {2.5, 2}, {3.5, 4}, {42, 42}, {99.4, 99}, {99.5, 100},
		{145, 140}, {147.3, 150}, {155, 160}, {999.9, 1000},
		{1450, 1400}, {1550, 1600}, {9999, 10000},
		{14500, 14000}, {15500, 16000}, {123456, 123000},
	}
	for _, tt := range tests {
		if got := RoundResponseTime(tt.ms); got != tt.want {
			t.Errorf("RoundResponseTime(%v) = %d, want %d", tt.ms, got, tt.want)
		}
	}
}

var t0 = time.Unix(1_700_000_000, 0)

func entryWith(times ...float64) *Entry {
	e := NewEntry("/x", "GET", t0)
	for i, ms := range times {
		e.Log(t0.Add(time.Duration(i)*time.Millisecond), time.Duration(ms*float64(time.Millisecond)), 10, false)
	}
	return e
}

// TestMedianAndPercentile follows Locust's median_from_dict and
// calculate_response_time_percentile, including its known asymmetry:
// {40, 60} has median 40 but 50th percentile 60.
func TestMedianAndPercentile(t *testing.T) {
	tests := []struct {
		name   string
		times  []float64
		median float64
		pcts   map[float64]float64
	}{
		{"two", []float64{40, 60}, 40, map[float64]float64{0.5: 60, 1.0: 60}},
		{"empty", nil, 0, map[float64]float64{0.5: 0, 0.99: 0}},
		{"one", []float64{7}, 7, map[float64]float64{0.5: 7, 0.99: 7, 1.0: 7}},
		{"clamped to max", []float64{148, 148}, 148, map[float64]float64{0.5: 150}},
		{"hundred", seq(1, 100), 50, map[float64]float64{0.5: 51, 0.9: 91, 0.99: 100, 1.0: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := entryWith(tt.times...)
			if got := e.Median(); got != tt.median {
				t.Errorf("Median() = %v, want %v", got, tt.median)
			}
			for p, want := range tt.pcts {
				if got := e.Percentile(p); got != want {
					t.Errorf("Percentile(%v) = %v, want %v", p, got, want)
				}
			}
		})
	}
}

func seq(from, to float64) []float64 {
	var out []float64
	for v := from; v <= to; v++ {
		out = append(out, v)
	}
	return out
}

func TestLogCountsAndDerivedValues(t *testing.T) {
	e := NewEntry("/x", "GET", t0)
	e.Log(t0.Add(500*time.Millisecond), 20*time.Millisecond, 100, false)
	e.Log(t0.Add(1500*time.Millisecond), 40*time.Millisecond, 300, true)
	if e.NumRequests != 2 || e.NumFailures != 1 {
		t.Fatalf("requests %d failures %d, want 2 and 1 (a failure is a request too)", e.NumRequests, e.NumFailures)
	}
	if e.MinResponseTime != 20 || e.MaxResponseTime != 40 || e.AvgResponseTime() != 30 {
		t.Errorf("min %v max %v avg %v", e.MinResponseTime, e.MaxResponseTime, e.AvgResponseTime())
	}
	if e.AvgContentLength() != 200 || e.FailRatio() != 0.5 {
		t.Errorf("avg content %v fail ratio %v", e.AvgContentLength(), e.FailRatio())
	}
	sec := t0.Unix()
	if e.NumReqsPerSec[sec] != 1 || e.NumReqsPerSec[sec+1] != 1 || e.NumFailPerSec[sec+1] != 1 || len(e.NumFailPerSec) != 1 {
		t.Errorf("per-second counts %v, failures %v", e.NumReqsPerSec, e.NumFailPerSec)
	}
	if got, want := e.TotalRPS(), 2/1.5; math.Abs(got-want) > 1e-9 {
		t.Errorf("TotalRPS %v, want %v", got, want)
	}
}

func TestExtendIsLocustsMerge(t *testing.T) {
	a := NewEntry("/x", "GET", t0.Add(time.Second))
	b := NewEntry("/x", "GET", t0)
	if a.HasMin || a.HasLast {
		t.Fatal("a new entry has no min and no last request (Locust's None)")
	}
	a.Log(t0.Add(2*time.Second), 30*time.Millisecond, 1, false)
	empty := NewEntry("/x", "GET", t0.Add(3*time.Second))
	a.Extend(empty)
	if !a.HasMin || a.MinResponseTime != 30 {
		t.Errorf("merging an empty entry changed min to %v (has %v): None must not win", a.MinResponseTime, a.HasMin)
	}
	b.Log(t0.Add(5*time.Second), 10*time.Millisecond, 2, true)
	a.Extend(b)
	if a.NumRequests != 2 || a.NumFailures != 1 || a.MinResponseTime != 10 || a.MaxResponseTime != 30 {
		t.Errorf("merged %+v", a)
	}
	if a.StartTime != unixSeconds(t0) || a.LastRequestTimestamp != unixSeconds(t0.Add(5*time.Second)) {
		t.Errorf("start %v last %v: want the earliest start and the latest request", a.StartTime, a.LastRequestTimestamp)
	}
	if a.ResponseTimes[30] != 1 || a.ResponseTimes[10] != 1 || a.TotalContentLength != 3 {
		t.Errorf("buckets %v content %d", a.ResponseTimes, a.TotalContentLength)
	}
	if q := a.Quantile(1); q < 29*time.Millisecond || q > 31*time.Millisecond {
		t.Errorf("merged HDR max %v, want ~30ms", q)
	}
}

func TestCurrentRPSWindow(t *testing.T) {
	// 20 seconds at 5 requests a second; Locust averages the seconds
	// [last-12, last-2): 10 seconds.
	e := NewEntry(AggregatedName, "", t0)
	for s := 0; s < 20; s++ {
		for i := 0; i < 5; i++ {
			e.Log(t0.Add(time.Duration(s)*time.Second+time.Duration(i)*100*time.Millisecond), time.Millisecond, 0, i == 0)
		}
	}
	if got := e.CurrentRPS(e); got != 5 {
		t.Errorf("CurrentRPS = %v, want 5", got)
	}
	if got := e.CurrentFailPerSec(e); got != 1 {
		t.Errorf("CurrentFailPerSec = %v, want 1", got)
	}
	young := NewEntry(AggregatedName, "", t0)
	young.Log(t0.Add(time.Second), time.Millisecond, 0, false)
	if got := young.CurrentRPS(young); got != 0 {
		t.Errorf("CurrentRPS of a 1-second-old entry = %v, want 0 (the window is empty)", got)
	}
}

// TestQuantileResolution: the HDR histogram resolves microseconds where
// Locust's buckets round to 10 ms.
func TestQuantileResolution(t *testing.T) {
	e := NewEntry("/x", "GET", t0)
	for i := 0; i < 1000; i++ {
		e.Log(t0, 1234*time.Microsecond+time.Duration(i%10)*time.Microsecond, 0, false)
	}
	q := e.Quantile(0.5)
	if q < 1234*time.Microsecond || q > 1244*time.Microsecond {
		t.Errorf("p50 %v, want between 1.234ms and 1.244ms", q)
	}
	e2 := NewEntry("/y", "GET", t0)
	e2.Log(t0, 147*time.Millisecond, 0, false)
	if e2.Percentile(0.5) != 150 {
		t.Errorf("Locust percentile %v, want the 150 bucket", e2.Percentile(0.5))
	}
	if q := e2.Quantile(0.5); q < 146900*time.Microsecond || q > 147100*time.Microsecond {
		t.Errorf("HDR p50 %v, want 147ms within 0.1%%", q)
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestStatsIntervalAndCumulative(t *testing.T) {
	clk := &fakeClock{t: t0}
	s := New(clk.now)
	s.Success("GET", "/a", 10*time.Millisecond, 5)
	s.Failure("GET", "/a", 20*time.Millisecond, 0, "HTTP 503")
	s.Failure("POST", "/b", 30*time.Millisecond, 0, "HTTP 503")
	s.Failure("POST", "/b", 30*time.Millisecond, 0, "HTTP 503")
	clk.advance(time.Second)
	first := s.TakeInterval()
	if len(first.Entries) != 2 || first.Entries[0].Name != "/a" || first.Entries[1].Name != "/b" {
		t.Fatalf("entries %v, want /a then /b", names(first))
	}
	if first.Total.NumRequests != 4 || first.Total.NumFailures != 3 || first.Total.Name != AggregatedName {
		t.Errorf("total %+v", first.Total)
	}
	if len(first.Errors) != 2 || first.Errors[ErrorKey("POST", "/b", "HTTP 503")].Occurrences != 2 {
		t.Errorf("errors %v: want one kind per (method, name, reason)", first.Errors)
	}
	clk.advance(3 * time.Second)
	s.Success("GET", "/a", 10*time.Millisecond, 5)
	second := s.TakeInterval()
	if second.Total.NumRequests != 1 || len(second.Errors) != 0 || len(second.Entries) != 1 {
		t.Errorf("second interval %+v, want only the one new request", second.Total)
	}
	if second.Total.StartTime != unixSeconds(t0.Add(time.Second)) {
		t.Errorf("an interval starts when the last one was taken")
	}
	if all := s.Cumulative(); all.Total.NumRequests != 5 || all.Total.NumFailures != 3 {
		t.Errorf("cumulative %d requests %d failures, want 5 and 3", all.Total.NumRequests, all.Total.NumFailures)
	}
	// The master's view: the intervals merged equal the cumulative table.
	var merged Snapshot
	merged.Merge(first)
	merged.Merge(second)
	all := s.Cumulative()
	if merged.Total.NumRequests != all.Total.NumRequests || len(merged.Entries) != len(all.Entries) ||
		merged.Errors[ErrorKey("GET", "/a", "HTTP 503")].Occurrences != 1 {
		t.Errorf("merged intervals %+v differ from the cumulative %+v", merged.Total, all.Total)
	}
	s.Reset()
	if got := s.Cumulative().Total.NumRequests; got != 0 {
		t.Errorf("after Reset, %d requests", got)
	}
}

func names(s Snapshot) []string {
	var out []string
	for _, e := range s.Entries {
		out = append(out, e.Method+" "+e.Name)
	}
	return out
}

func TestStatsConcurrent(t *testing.T) {
	s := New(nil)
	var wg sync.WaitGroup
	const workers, each = 8, 500
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if i%10 == 0 {
					s.Failure("GET", "/x", time.Millisecond, 0, "boom")
				} else {
					s.Success("GET", "/x", time.Millisecond, 1)
				}
				if i%100 == 0 {
					s.TakeInterval()
				}
			}
		}()
	}
	wg.Wait()
	all := s.Cumulative()
	if all.Total.NumRequests != workers*each || all.Total.NumFailures != workers*each/10 {
		t.Errorf("%d requests %d failures, want %d and %d", all.Total.NumRequests, all.Total.NumFailures, workers*each, workers*each/10)
	}
}
