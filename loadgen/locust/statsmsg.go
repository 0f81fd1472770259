package locust

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strings"

	"github.com/canarylab/canarylab/loadgen/stats"
)

// EntryKeys are the keys of Locust 2.12.1's StatsEntryDict, in its order:
// every stats entry a worker sends has exactly these.
var EntryKeys = []string{
	"name", "method", "last_request_timestamp", "start_time", "num_requests",
	"num_none_requests", "num_failures", "total_response_time", "max_response_time",
	"min_response_time", "total_content_length", "response_times", "num_reqs_per_sec",
	"num_fail_per_sec",
}

// ErrorKeys are the keys of Locust's StatsErrorDict, in its order.
var ErrorKeys = []string{"name", "method", "error", "occurrences"}

// EntryDict is e as Locust's StatsEntry.serialize() gives it:
// last_request_timestamp and min_response_time are None while the entry
// has no request; times are float seconds and float milliseconds (as
// HttpUser reports them); the three per-key dicts have int keys.
func EntryDict(e *stats.Entry) Dict {
	var last, minRT any
	if e.HasLast {
		last = e.LastRequestTimestamp
	}
	if e.HasMin {
		minRT = e.MinResponseTime
	}
	return Dict{
		{"name", e.Name},
		{"method", e.Method},
		{"last_request_timestamp", last},
		{"start_time", e.StartTime},
		{"num_requests", e.NumRequests},
		{"num_none_requests", e.NumNoneRequests},
		{"num_failures", e.NumFailures},
		{"total_response_time", e.TotalResponseTime},
		{"max_response_time", e.MaxResponseTime},
		{"min_response_time", minRT},
		{"total_content_length", e.TotalContentLength},
		{"response_times", countsByInt(e.ResponseTimes)},
		{"num_reqs_per_sec", countsByInt(e.NumReqsPerSec)},
		{"num_fail_per_sec", countsByInt(e.NumFailPerSec)},
	}
}

// ParseError is Locust's StatsError.parse_error for a str error: its
// repr(), with "object at 0x…" addresses masked.
func ParseError(err string) string {
	s := PyRepr(err)
	const target = "object at 0x"
	i := strings.Index(s, target)
	if i < 0 {
		return s
	}
	start := i + len(target) - 2
	end := strings.Index(s[start:], ">")
	if end < 0 {
		return s
	}
	return strings.ReplaceAll(s, s[start:start+end], "0x....")
}

// ErrorKey is Locust's StatsError.create_key for a str error, so errors
// from canarylab and Python workers merge on the master.
func ErrorKey(method, name, err string) string {
	sum := sha256.Sum256([]byte(method + "." + name + "." + PyRepr(ParseError(err))))
	return hex.EncodeToString(sum[:])
}

// StatsData is the data of a stats message, as a Python worker's
// _send_stats builds it: the entries that saw requests or failures, the
// interval's Aggregated entry, the errors keyed as Locust keys them
// (error = repr(error)), and the users running per class and in total.
func StatsData(snap stats.Snapshot, userClassesCount map[string]int) Dict {
	entries := []any{}
	for _, e := range snap.Entries {
		if e.NumRequests == 0 && e.NumFailures == 0 {
			continue
		}
		entries = append(entries, EntryDict(e))
	}
	total := snap.Total
	if total == nil {
		total = &stats.Entry{Name: stats.AggregatedName}
	}
	errs := snap.Errors
	keys := make([]string, 0, len(errs))
	for k := range errs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	errDict := Dict{}
	for _, k := range keys {
		e := errs[k]
		errDict = append(errDict, Item{ErrorKey(e.Method, e.Name, e.Error), Dict{
			{"name", e.Name},
			{"method", e.Method},
			{"error", ParseError(e.Error)},
			{"occurrences", e.Occurrences},
		}})
	}
	if userClassesCount == nil {
		userClassesCount = map[string]int{}
	}
	n := 0
	for _, c := range userClassesCount {
		n += c
	}
	return Dict{
		{"stats", entries},
		{"stats_total", EntryDict(total)},
		{"errors", errDict},
		{"user_classes_count", userClassesCount},
		{"user_count", n},
	}
}
