// Package stats keeps load-test statistics two ways at once: exactly as
// Locust 2 does (rounded millisecond buckets, per-second counts, the same
// median and percentile rules), so a Locust master shows a canarylab worker
// like a Python one; and in microsecond resolution in HDR histograms, so
// canarylab's own reports are accurate.
package stats

import (
	"math"
	"sort"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// HDR histogram range and precision: 1 µs to 1 hour, 3 significant digits.
const (
	hdrMin     = 1
	hdrMax     = int64(time.Hour / time.Microsecond)
	hdrSigFigs = 3
)

// Entry is one row of statistics, for a (name, method) pair or for all
// requests together ("Aggregated"), with Locust's StatsEntry semantics.
type Entry struct {
	Name   string
	Method string

	NumRequests     int64
	NumNoneRequests int64
	NumFailures     int64
	// TotalResponseTime is the sum of response times in milliseconds.
	TotalResponseTime float64
	MaxResponseTime   float64
	// MinResponseTime is in milliseconds; HasMin is false until a request
	// is logged (Locust's None).
	MinResponseTime    float64
	HasMin             bool
	TotalContentLength int64
	// ResponseTimes counts requests by response time rounded as Locust
	// rounds it (RoundResponseTime), in milliseconds.
	ResponseTimes map[int64]int64
	// NumReqsPerSec and NumFailPerSec count by unix second.
	NumReqsPerSec map[int64]int64
	NumFailPerSec map[int64]int64
	// StartTime and LastRequestTimestamp are unix seconds; HasLast is false
	// until a request is logged.
	StartTime            float64
	LastRequestTimestamp float64
	HasLast              bool

	// hist holds every response time in microseconds.
	hist *hdr.Histogram
}

// NewEntry returns an empty entry started at now.
func NewEntry(name, method string, now time.Time) *Entry {
	return &Entry{
		Name:          name,
		Method:        method,
		ResponseTimes: map[int64]int64{},
		NumReqsPerSec: map[int64]int64{},
		NumFailPerSec: map[int64]int64{},
		StartTime:     unixSeconds(now),
		hist:          hdr.New(hdrMin, hdrMax, hdrSigFigs),
	}
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// RoundResponseTime buckets a response time (ms) as Locust 2 does: to 1 ms
// below 100 ms, 10 ms below 1 s, 100 ms below 10 s, 1 s above, with
// Python's round, which rounds halves to even (145 → 140, 155 → 160).
func RoundResponseTime(ms float64) int64 {
	switch {
	case ms < 100:
		return int64(math.RoundToEven(ms))
	case ms < 1000:
		return int64(math.RoundToEven(ms/10) * 10)
	case ms < 10000:
		return int64(math.RoundToEven(ms/100) * 100)
	}
	return int64(math.RoundToEven(ms/1000) * 1000)
}

// Log records one request that got an answer (or failed after rt).
func (e *Entry) Log(now time.Time, rt time.Duration, contentLength int64, failed bool) {
	ts := unixSeconds(now)
	sec := now.Unix()
	e.NumRequests++
	e.NumReqsPerSec[sec]++
	if failed {
		e.NumFailures++
		e.NumFailPerSec[sec]++
	}
	e.LastRequestTimestamp, e.HasLast = ts, true
	ms := float64(rt) / float64(time.Millisecond)
	e.TotalResponseTime += ms
	if !e.HasMin || ms < e.MinResponseTime {
		e.MinResponseTime, e.HasMin = ms, true
	}
	if ms > e.MaxResponseTime {
		e.MaxResponseTime = ms
	}
	e.TotalContentLength += contentLength
	e.ResponseTimes[RoundResponseTime(ms)]++
	us := int64(rt / time.Microsecond)
	_ = e.hist.RecordValue(min(max(us, hdrMin), hdrMax))
}

// Extend adds other into e, as Locust's master merges workers' entries:
// counters and dictionaries summed, min and max kept, the earliest start
// and the latest request.
func (e *Entry) Extend(o *Entry) {
	if o.HasLast && (!e.HasLast || o.LastRequestTimestamp > e.LastRequestTimestamp) {
		e.LastRequestTimestamp, e.HasLast = o.LastRequestTimestamp, true
	}
	if o.StartTime != 0 && (e.StartTime == 0 || o.StartTime < e.StartTime) {
		e.StartTime = o.StartTime
	}
	e.NumRequests += o.NumRequests
	e.NumNoneRequests += o.NumNoneRequests
	e.NumFailures += o.NumFailures
	e.TotalResponseTime += o.TotalResponseTime
	e.MaxResponseTime = max(e.MaxResponseTime, o.MaxResponseTime)
	if o.HasMin && (!e.HasMin || o.MinResponseTime < e.MinResponseTime) {
		e.MinResponseTime, e.HasMin = o.MinResponseTime, true
	}
	e.TotalContentLength += o.TotalContentLength
	addCounts(e.ResponseTimes, o.ResponseTimes)
	addCounts(e.NumReqsPerSec, o.NumReqsPerSec)
	addCounts(e.NumFailPerSec, o.NumFailPerSec)
	if o.hist != nil {
		if e.hist == nil {
			e.hist = hdr.New(hdrMin, hdrMax, hdrSigFigs)
		}
		e.hist.Merge(o.hist)
	}
}

func addCounts(dst, src map[int64]int64) {
	for k, v := range src {
		dst[k] += v
	}
}

// Clone returns a deep copy.
func (e *Entry) Clone() *Entry {
	c := *e
	c.ResponseTimes = cloneCounts(e.ResponseTimes)
	c.NumReqsPerSec = cloneCounts(e.NumReqsPerSec)
	c.NumFailPerSec = cloneCounts(e.NumFailPerSec)
	if e.hist != nil {
		c.hist = hdr.Import(e.hist.Export())
	}
	return &c
}

func cloneCounts(m map[int64]int64) map[int64]int64 {
	out := make(map[int64]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// AvgResponseTime is the mean response time in ms (0 with no requests).
func (e *Entry) AvgResponseTime() float64 {
	n := e.NumRequests - e.NumNoneRequests
	if n == 0 {
		return 0
	}
	return e.TotalResponseTime / float64(n)
}

// AvgContentLength is the mean content length in bytes.
func (e *Entry) AvgContentLength() float64 {
	if e.NumRequests == 0 {
		return 0
	}
	return float64(e.TotalContentLength) / float64(e.NumRequests)
}

// FailRatio is failures over requests.
func (e *Entry) FailRatio() float64 {
	if e.NumRequests == 0 {
		return 0
	}
	return float64(e.NumFailures) / float64(e.NumRequests)
}

// TotalRPS is requests per second over the entry's life, as Locust's
// total_rps (0 when no time has passed).
func (e *Entry) TotalRPS() float64 {
	if !e.HasLast || e.LastRequestTimestamp <= e.StartTime {
		return 0
	}
	return float64(e.NumRequests) / (e.LastRequestTimestamp - e.StartTime)
}

// TotalFailPerSec is failures per second over the entry's life.
func (e *Entry) TotalFailPerSec() float64 {
	if !e.HasLast || e.LastRequestTimestamp <= e.StartTime {
		return 0
	}
	return float64(e.NumFailures) / (e.LastRequestTimestamp - e.StartTime)
}

// CurrentRPS is Locust's current_rps: the mean per-second count over the
// ~10 seconds before the last two, measured against the timestamps of
// ref (the Aggregated entry in Locust).
func (e *Entry) CurrentRPS(ref *Entry) float64 {
	return windowRate(e.NumReqsPerSec, ref)
}

// CurrentFailPerSec is Locust's current_fail_per_sec.
func (e *Entry) CurrentFailPerSec(ref *Entry) float64 {
	return windowRate(e.NumFailPerSec, ref)
}

func windowRate(perSec map[int64]int64, ref *Entry) float64 {
	if ref == nil || !ref.HasLast {
		return 0
	}
	last := int64(ref.LastRequestTimestamp)
	from := max(last-12, int64(ref.StartTime))
	to := last - 2
	if to <= from {
		return 0
	}
	var sum int64
	for t := from; t < to; t++ {
		sum += perSec[t]
	}
	return float64(sum) / float64(to-from)
}

// sortedKeys returns the response-time buckets in ascending order.
func sortedKeys(m map[int64]int64) []int64 {
	keys := make([]int64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}

// Median is Locust's median_response_time: the middle bucket, clamped to
// the observed min and max.
func (e *Entry) Median() float64 {
	total := e.NumRequests - e.NumNoneRequests
	if total == 0 {
		return 0
	}
	pos := (total - 1) / 2
	var med float64
	for _, k := range sortedKeys(e.ResponseTimes) {
		if pos < e.ResponseTimes[k] {
			med = float64(k)
			break
		}
		pos -= e.ResponseTimes[k]
	}
	if med > e.MaxResponseTime {
		med = e.MaxResponseTime
	}
	if e.HasMin && med < e.MinResponseTime {
		med = e.MinResponseTime
	}
	return med
}

// Percentile is Locust's get_response_time_percentile: the bucket at
// which the share of requests above it falls to 1-p.
func (e *Entry) Percentile(p float64) float64 {
	return percentileFromBuckets(e.ResponseTimes, e.NumRequests, p)
}

func percentileFromBuckets(buckets map[int64]int64, numRequests int64, p float64) float64 {
	numOfRequest := int64(float64(numRequests) * p)
	keys := sortedKeys(buckets)
	var processed int64
	for i := len(keys) - 1; i >= 0; i-- {
		processed += buckets[keys[i]]
		if numRequests-processed <= numOfRequest {
			return float64(keys[i])
		}
	}
	return 0
}

// Quantile returns the q-quantile (0..1) of the response times at
// microsecond resolution (HDR histogram, 3 significant digits), never
// beyond the exact minimum and maximum seen.
func (e *Entry) Quantile(q float64) time.Duration {
	if e.hist == nil || e.hist.TotalCount() == 0 {
		return 0
	}
	v := time.Duration(e.hist.ValueAtQuantile(q*100)) * time.Microsecond
	lo := time.Duration(e.MinResponseTime * float64(time.Millisecond))
	hi := time.Duration(e.MaxResponseTime * float64(time.Millisecond))
	return min(max(v, lo), hi)
}

// Histogram returns the entry's HDR histogram of response times in µs.
func (e *Entry) Histogram() *hdr.Histogram { return e.hist }

// Reset clears the counters and restarts the entry at now (Locust's reset).
func (e *Entry) Reset(now time.Time) {
	*e = *NewEntry(e.Name, e.Method, now)
}
