package stats

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"sync"
	"time"
)

// AggregatedName is the name of the row that sums every request, as in
// Locust's reports.
const AggregatedName = "Aggregated"

// Percentiles are the percentiles Locust reports, in its order.
var Percentiles = []float64{0.50, 0.66, 0.75, 0.80, 0.90, 0.95, 0.98, 0.99, 0.999, 0.9999, 1.0}

// Error is a failure kind and how often it happened (Locust's StatsError).
type Error struct {
	Name        string
	Method      string
	Error       string
	Occurrences int64
}

// ErrorKey identifies a failure kind, the way Locust keys its errors.
func ErrorKey(method, name, err string) string {
	sum := sha256.Sum256([]byte(method + "." + name + "." + err))
	return hex.EncodeToString(sum[:])
}

type entryKey struct{ name, method string }

// table is one set of entries with their total and errors.
type table struct {
	entries map[entryKey]*Entry
	total   *Entry
	errors  map[string]*Error
}

func newTable(now time.Time) *table {
	return &table{
		entries: map[entryKey]*Entry{},
		total:   NewEntry(AggregatedName, "", now),
		errors:  map[string]*Error{},
	}
}

func (t *table) log(now time.Time, method, name string, rt time.Duration, length int64, errMsg string, failed bool) {
	k := entryKey{name, method}
	e := t.entries[k]
	if e == nil {
		e = NewEntry(name, method, now)
		t.entries[k] = e
	}
	e.Log(now, rt, length, failed)
	t.total.Log(now, rt, length, failed)
	if failed {
		key := ErrorKey(method, name, errMsg)
		er := t.errors[key]
		if er == nil {
			er = &Error{Name: name, Method: method, Error: errMsg}
			t.errors[key] = er
		}
		er.Occurrences++
	}
}

// Stats collects request statistics from many goroutines. It keeps two
// tables: the cumulative one for the run's own reports, and an interval
// one that a Locust worker sends and clears every few seconds.
type Stats struct {
	mu       sync.Mutex
	now      func() time.Time
	all      *table
	interval *table
}

// New returns empty statistics; now is the clock (time.Now in production).
func New(now func() time.Time) *Stats {
	if now == nil {
		now = time.Now
	}
	t := now()
	return &Stats{now: now, all: newTable(t), interval: newTable(t)}
}

// Success records a request that succeeded.
func (s *Stats) Success(method, name string, rt time.Duration, length int64) {
	s.record(method, name, rt, length, "", false)
}

// Failure records a request that failed, with the reason.
func (s *Stats) Failure(method, name string, rt time.Duration, length int64, reason string) {
	s.record(method, name, rt, length, reason, true)
}

func (s *Stats) record(method, name string, rt time.Duration, length int64, reason string, failed bool) {
	now := s.now()
	s.mu.Lock()
	s.all.log(now, method, name, rt, length, reason, failed)
	s.interval.log(now, method, name, rt, length, reason, failed)
	s.mu.Unlock()
}

// Snapshot is a consistent copy of a table.
type Snapshot struct {
	// Entries are sorted by name, then method, as Locust prints them.
	Entries []*Entry
	Total   *Entry
	// Errors are keyed by ErrorKey.
	Errors map[string]*Error
}

func (t *table) snapshot() Snapshot {
	snap := Snapshot{Total: t.total.Clone(), Errors: make(map[string]*Error, len(t.errors))}
	for _, e := range t.entries {
		snap.Entries = append(snap.Entries, e.Clone())
	}
	sort.Slice(snap.Entries, func(i, j int) bool {
		a, b := snap.Entries[i], snap.Entries[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Method < b.Method
	})
	for k, e := range t.errors {
		c := *e
		snap.Errors[k] = &c
	}
	return snap
}

// Cumulative returns the statistics since the start or the last Reset.
func (s *Stats) Cumulative() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.all.snapshot()
}

// TakeInterval returns the statistics since the last call and clears them.
func (s *Stats) TakeInterval() Snapshot {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := s.interval.snapshot()
	s.interval = newTable(now)
	return snap
}

// Reset clears both tables (a new test starts).
func (s *Stats) Reset() {
	now := s.now()
	s.mu.Lock()
	s.all, s.interval = newTable(now), newTable(now)
	s.mu.Unlock()
}

// Merge adds a snapshot into another (a master's view of its workers).
func (snap *Snapshot) Merge(o Snapshot) {
	byKey := map[entryKey]*Entry{}
	for _, e := range snap.Entries {
		byKey[entryKey{e.Name, e.Method}] = e
	}
	for _, e := range o.Entries {
		if mine := byKey[entryKey{e.Name, e.Method}]; mine != nil {
			mine.Extend(e)
			continue
		}
		c := e.Clone()
		snap.Entries = append(snap.Entries, c)
		byKey[entryKey{e.Name, e.Method}] = c
	}
	sort.Slice(snap.Entries, func(i, j int) bool {
		a, b := snap.Entries[i], snap.Entries[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Method < b.Method
	})
	if snap.Total == nil {
		snap.Total = o.Total.Clone()
	} else if o.Total != nil {
		snap.Total.Extend(o.Total)
	}
	if snap.Errors == nil {
		snap.Errors = map[string]*Error{}
	}
	for k, e := range o.Errors {
		if mine := snap.Errors[k]; mine != nil {
			mine.Occurrences += e.Occurrences
			continue
		}
		c := *e
		snap.Errors[k] = &c
	}
}
