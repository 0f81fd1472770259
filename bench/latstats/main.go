// Command latstats reports how accurately canarylab mock injects a latency
// distribution: the client-side p50 and p99 measured by `fortio load` (its
// -json result) against the configured median and p99, and the server's own
// realised injected delays (canarylab_mock_injected_delay_seconds, whose
// classic buckets have edges at the usual targets, and /counts).
//
//	latstats -fortio load.json -metrics-before m0.txt -metrics-after m1.txt \
//	    -counts counts.json -median 50ms -p99 400ms -tolerance 0.03
//
// It prints a small report and exits 0; the verdicts are in the text
// (PASS/FAIL), so a noisy run does not abort the rest of the benchmark.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// fortioResult is the part of fortio's -json output used here.
type fortioResult struct {
	RequestedQPS      string
	RequestedDuration string
	ActualQPS         float64
	ActualDuration    int64
	NumThreads        int
	RetCodes          map[string]int64
	DurationHistogram struct {
		Count       int64
		Min, Max    float64
		Avg         float64
		Percentiles []struct {
			Percentile float64
			Value      float64
		}
		Data []struct {
			Start, End, Percent float64
			Count               int64
		}
	}
	ErrorsDurationHistogram struct{ Count int64 }
}

// counts is the part of the mock's /counts used here.
type counts struct {
	Requests     uint64  `json:"requests"`
	Delayed      uint64  `json:"delayed"`
	DelaySeconds float64 `json:"delaySeconds"`
	DelayCapped  uint64  `json:"delayCapped"`
}

const (
	delayMetric    = "canarylab_mock_injected_delay_seconds"
	durationMetric = "canarylab_mock_request_duration_seconds"
)

func main() {
	fortioPath := flag.String("fortio", "", "fortio load -json result")
	before := flag.String("metrics-before", "", "the mock's /metrics before the run (text format)")
	after := flag.String("metrics-after", "", "the mock's /metrics after the run")
	countsPath := flag.String("counts", "", "the mock's /counts after the run (reset before it)")
	median := flag.Duration("median", 50*time.Millisecond, "configured median")
	p99 := flag.Duration("p99", 400*time.Millisecond, "configured 99th percentile")
	tol := flag.Float64("tolerance", 0.03, "relative error allowed")
	flag.Parse()

	if *fortioPath != "" {
		if err := client(*fortioPath, *median, *p99, *tol); err != nil {
			fmt.Fprintln(os.Stderr, "latstats:", err)
			os.Exit(1)
		}
	}
	if *after != "" {
		if err := server(*before, *after, *countsPath, *median, *p99); err != nil {
			fmt.Fprintln(os.Stderr, "latstats:", err)
			os.Exit(1)
		}
	}
}

func client(path string, median, p99 time.Duration, tol float64) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var r fortioResult
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	h := r.DurationHistogram
	var ok int64
	for code, n := range r.RetCodes {
		if code == "200" {
			ok += n
		}
	}
	fmt.Printf("client (fortio load): %d requests at %s qps requested on %d connections, %d not 200\n",
		h.Count, r.RequestedQPS, r.NumThreads, h.Count-ok)
	if d, err := time.ParseDuration(r.RequestedDuration); err == nil && d > 0 {
		fmt.Printf("  %.0f requests a second over the %v run (fortio's own %.0f qps is over %.1f s, its start-up included)\n",
			float64(h.Count)/d.Seconds(), d, r.ActualQPS, time.Duration(r.ActualDuration).Seconds())
	}
	fmt.Printf("  mean %.2f ms  min %.2f ms  max %.1f ms\n", h.Avg*1e3, h.Min*1e3, h.Max*1e3)
	targets := map[float64]time.Duration{50: median, 99: p99}
	for _, p := range h.Percentiles {
		want, ok := targets[p.Percentile]
		if !ok {
			continue
		}
		got := p.Value
		rel := got/want.Seconds() - 1
		fmt.Printf("  p%-3g %8.2f ms  configured %6.1f ms  error %+6.2f %%  %s\n",
			p.Percentile, got*1e3, float64(want)/1e6, rel*100, verdict(math.Abs(rel) <= tol))
	}
	// fortio's buckets have edges at 50 ms and 400 ms (with -r 0.001), so
	// the share of requests at or below each target is exact.
	for _, t := range []struct {
		d    time.Duration
		want float64
	}{{median, 50}, {p99, 99}} {
		if share, exact := fortioShareAtOrBelow(r, t.d.Seconds()); exact {
			fmt.Printf("  share <= %v: %.2f %% (configured %g %%)\n", t.d, share, t.want)
		}
	}
	return nil
}

// fortioShareAtOrBelow is the cumulative percent at a bucket edge equal to
// x, if there is one.
func fortioShareAtOrBelow(r fortioResult, x float64) (float64, bool) {
	for _, d := range r.DurationHistogram.Data {
		if math.Abs(d.End-x) < 1e-9 {
			return d.Percent, true
		}
	}
	return 0, false
}

// histogram is a classic Prometheus histogram: cumulative counts by upper
// bound, and the total count and sum, added up over all its series.
type histogram struct {
	buckets map[float64]float64
	count   float64
	sum     float64
}

func readHistogram(path, name string) (histogram, error) {
	h := histogram{buckets: map[float64]float64{}}
	if path == "" {
		return h, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return h, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		series := line[:sp]
		switch {
		case strings.HasPrefix(series, name+"_bucket{"):
			i := strings.Index(series, `le="`)
			if i < 0 {
				continue
			}
			le := series[i+4:]
			le = le[:strings.IndexByte(le, '"')]
			ub, err := strconv.ParseFloat(le, 64)
			if err != nil {
				continue
			}
			h.buckets[ub] += v
		case strings.HasPrefix(series, name+"_count"):
			h.count += v
		case strings.HasPrefix(series, name+"_sum"):
			h.sum += v
		}
	}
	return h, sc.Err()
}

func (h histogram) minus(o histogram) histogram {
	d := histogram{buckets: map[float64]float64{}, count: h.count - o.count, sum: h.sum - o.sum}
	for ub, v := range h.buckets {
		d.buckets[ub] = v - o.buckets[ub]
	}
	return d
}

// quantile interpolates linearly inside the bucket, as PromQL's
// histogram_quantile does.
func (h histogram) quantile(q float64) float64 {
	ubs := make([]float64, 0, len(h.buckets))
	for ub := range h.buckets {
		ubs = append(ubs, ub)
	}
	sort.Float64s(ubs)
	rank := q * h.count
	lo, below := 0.0, 0.0
	for _, ub := range ubs {
		c := h.buckets[ub]
		if c >= rank {
			if math.IsInf(ub, 1) || c == below {
				return lo
			}
			return lo + (ub-lo)*(rank-below)/(c-below)
		}
		lo, below = ub, c
	}
	return math.NaN()
}

func server(beforePath, afterPath, countsPath string, median, p99 time.Duration) error {
	b, err := readHistogram(beforePath, delayMetric)
	if err != nil {
		return err
	}
	a, err := readHistogram(afterPath, delayMetric)
	if err != nil {
		return err
	}
	h := a.minus(b)
	if h.count == 0 {
		fmt.Println("server: no injected delays recorded")
		return nil
	}
	// Mean of a lognormal given by its median m and 99th percentile p.
	sigma := math.Log(float64(p99)/float64(median)) / 2.3263478740408408
	wantMean := median.Seconds() * math.Exp(sigma*sigma/2)
	mean := h.sum / h.count
	fmt.Printf("server (%s, this run): %.0f delays, mean %.2f ms (lognormal mean %.2f ms, error %+.2f %%)\n",
		delayMetric, h.count, mean*1e3, wantMean*1e3, (mean/wantMean-1)*100)
	for _, t := range []struct {
		d    time.Duration
		want float64
	}{{median, 50}, {p99, 99}} {
		if c, ok := h.buckets[t.d.Seconds()]; ok {
			fmt.Printf("  share <= %v: %.2f %% (configured %g %%)\n", t.d, 100*c/h.count, t.want)
		}
	}
	fmt.Printf("  p50 ~ %.1f ms, p99 ~ %.1f ms (interpolated inside the classic buckets)\n",
		h.quantile(0.50)*1e3, h.quantile(0.99)*1e3)
	db, err := readHistogram(beforePath, durationMetric)
	if err != nil {
		return err
	}
	da, err := readHistogram(afterPath, durationMetric)
	if err != nil {
		return err
	}
	if d := da.minus(db); d.count > 0 {
		// What the server adds to the injected delay: the timer firing late,
		// and serving the request.
		fmt.Printf("  request duration (%s) mean %.2f ms: %.3f ms over the mean injected delay\n",
			durationMetric, d.sum/d.count*1e3, (d.sum/d.count-mean)*1e3)
	}
	if countsPath != "" {
		raw, err := os.ReadFile(countsPath)
		if err != nil {
			return err
		}
		var c counts
		if err := json.Unmarshal(raw, &c); err != nil {
			return fmt.Errorf("%s: %w", countsPath, err)
		}
		if c.Delayed > 0 {
			fmt.Printf("  /counts: %d requests, %d delayed, mean delay %.2f ms, %d capped\n",
				c.Requests, c.Delayed, c.DelaySeconds/float64(c.Delayed)*1e3, c.DelayCapped)
		}
	}
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}
