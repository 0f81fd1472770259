package metricstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

// DefaultLookbackDelta is Prometheus' default query.lookback-delta: an
// instant selector sees the newest sample at most this old.
const DefaultLookbackDelta = 5 * time.Minute

// DefaultScrapeTimeout is Prometheus' default scrape_timeout.
const DefaultScrapeTimeout = 10 * time.Second

const (
	// headChunkRange replaces the TSDB's 2h block range. Prometheus refuses
	// samples older than maxTime-range/2 because that part of the head is
	// about to be compacted into a block; a Store never compacts, and with
	// virtual time a series may legitimately start well behind the newest
	// sample, so the window is widened to half a year.
	headChunkRange = int64(365 * 24 * time.Hour / time.Millisecond)
	// headStripeSize is the number of lock stripes of the head's series
	// map. Prometheus' 16384 costs about a megabyte and a millisecond per
	// head; canary runs hold tens to thousands of series appended from one
	// or a few goroutines, and the sim engine opens one Store per run.
	headStripeSize = 32
	// maxQuerySamples is Prometheus' default query.max-samples.
	maxQuerySamples = 50_000_000
	// defaultQueryTimeout is Prometheus' default query.timeout.
	defaultQueryTimeout = 2 * time.Minute
	// defaultSubqueryStep stands in for Prometheus' global
	// evaluation_interval (1m), the step of a subquery written without one.
	defaultSubqueryStep = int64(time.Minute / time.Millisecond)
)

// ErrClosed is returned by every operation on a Store after Close.
var ErrClosed = errors.New("metricstore: store is closed")

// Options configures a Store. The zero value is usable.
type Options struct {
	// Dir is where the Store creates the private directory the TSDB head
	// insists on for memory-mapped chunk files; it is removed on Close.
	// The head never writes there (chunks are only memory-mapped by the
	// compaction loop a Store does not run, and Close drops all series
	// before closing the head), so the directory stays empty and costs
	// only its creation and removal: about 1 ms on this project's ext4
	// disks against 0.1 ms on tmpfs. Hence "" means /dev/shm when it
	// exists, else the system temp dir.
	Dir string
	// Retention drops samples older than Retention before the newest
	// sample (0 keeps everything) and then refuses them as out of bounds.
	// Truncation is amortised and works on whole chunks (about 120 samples
	// per series), so older samples may stay visible for up to half a
	// Retention plus one chunk, as Prometheus keeps whole blocks.
	Retention time.Duration
	// LookbackDelta is how far back an instant selector looks for a
	// sample; 0 means Prometheus' default, 5m.
	LookbackDelta time.Duration
	// Logger receives the engine's logs and the TSDB head's warnings and
	// errors; nil discards them.
	Logger *slog.Logger
	// Engine lets many Stores share one PromQL engine (it is stateless
	// between queries and safe for concurrent use); nil creates one per
	// Store. The Store never closes a shared engine. Its LookbackDelta is
	// overridden per query by the Store's.
	Engine *promql.Engine
	// Now is the default evaluation time of the HTTP API when a request
	// has no "time" parameter (/api/v1/query); nil means time.Now. The sim
	// engine points it at its virtual clock.
	Now func() time.Time
	// ScrapeTimeout bounds one Scrape's HTTP exchange; 0 means
	// Prometheus' default, 10s.
	ScrapeTimeout time.Duration
}

// Store is an embedded Prometheus: a TSDB head plus a PromQL engine.
// All methods are safe for concurrent use; samples of one series must be
// appended in increasing time order, as in Prometheus.
type Store struct {
	dir       string
	head      *tsdb.Head
	engine    *promql.Engine
	ownEngine bool
	queryOpts promql.QueryOpts
	retention int64 // ms; 0 = keep all
	now       func() time.Time
	logger    *slog.Logger
	client    *http.Client

	// mu is held shared by appends and queries and exclusively by
	// retention truncation and Close, so that no querier reads chunks a
	// truncation is freeing and nothing touches a closed head.
	mu     sync.RWMutex
	closed bool

	// postings is held shared by queries and exclusively while an append
	// may create a series: Prometheus' MemPostings repairs the order of a
	// postings list in place when series are created out of ID order,
	// under queriers that already iterate that list (a data race upstream,
	// prometheus/prometheus#15317, that TestConcurrentUse hit under -race).
	postings sync.RWMutex

	targetsMu sync.Mutex
	targets   map[targetKey]*targetState
}

// Open creates an empty Store.
func Open(opts Options) (*Store, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.Retention < 0 {
		return nil, fmt.Errorf("metricstore: negative retention %v", opts.Retention)
	}
	lookback := opts.LookbackDelta
	if lookback == 0 {
		lookback = DefaultLookbackDelta
	}
	if lookback < 0 {
		return nil, fmt.Errorf("metricstore: negative lookback delta %v", lookback)
	}
	scrapeTimeout := opts.ScrapeTimeout
	if scrapeTimeout <= 0 {
		scrapeTimeout = DefaultScrapeTimeout
	}

	dir, err := makeWorkDir(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("metricstore: creating working directory: %w", err)
	}

	ho := tsdb.DefaultHeadOptions()
	ho.ChunkDirRoot = dir
	ho.ChunkRange = headChunkRange
	ho.StripeSize = headStripeSize
	ho.ChunkWriteBufferSize = chunks.MinWriteBufferSize
	ho.ChunkWriteQueueSize = 0 // write synchronously: no queue goroutine
	// The head's Info lines narrate a WAL replay that a Store never has;
	// only its warnings and errors are worth passing on.
	headLogger := slog.New(minLevelHandler{logger.Handler(), slog.LevelWarn})
	head, err := tsdb.NewHead(nil, headLogger, nil, nil, ho, nil)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("metricstore: creating TSDB head: %w", err), os.RemoveAll(dir))
	}
	// Init sorts the (empty) postings index; without it queries would see
	// the unordered postings NewHead starts with.
	if err := head.Init(math.MinInt64); err != nil {
		return nil, errors.Join(fmt.Errorf("metricstore: initialising TSDB head: %w", err), head.Close(), os.RemoveAll(dir))
	}

	s := &Store{
		dir:       dir,
		head:      head,
		engine:    opts.Engine,
		queryOpts: promql.NewPrometheusQueryOpts(false, lookback, nil),
		retention: opts.Retention.Milliseconds(),
		now:       opts.Now,
		logger:    logger,
		client:    newScrapeClient(scrapeTimeout),
		targets:   map[targetKey]*targetState{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.engine == nil {
		s.engine = NewEngine(logger)
		s.ownEngine = true
	}
	return s, nil
}

// makeWorkDir creates the Store's private directory inside parent, or
// inside /dev/shm (falling back to the temp dir) when parent is "".
func makeWorkDir(parent string) (string, error) {
	if parent == "" {
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			if dir, err := os.MkdirTemp("/dev/shm", "metricstore-"); err == nil {
				return dir, nil
			}
		}
	}
	return os.MkdirTemp(parent, "metricstore-")
}

// NewEngine returns a PromQL engine configured like a Prometheus server's
// defaults (50M max samples, 2m timeout, @ modifier and negative offsets
// on, 1m subquery step), for sharing between Stores through
// Options.Engine. It keeps the queries it parsed (see cachedParser).
func NewEngine(logger *slog.Logger) *promql.Engine {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return promql.NewEngine(promql.EngineOpts{
		Logger:                   logger,
		MaxSamples:               maxQuerySamples,
		Timeout:                  defaultQueryTimeout,
		LookbackDelta:            DefaultLookbackDelta,
		NoStepSubqueryIntervalFn: func(int64) int64 { return defaultSubqueryStep },
		EnableAtModifier:         true,
		EnableNegativeOffset:     true,
		Parser:                   newCachedParser(parser.NewParser(parser.Options{})),
	})
}

// Close releases the head's memory, closes idle scrape connections and
// removes the Store's working directory. It waits for running queries and
// appends; later calls return nil.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.targetsMu.Lock()
	s.targets = nil
	s.targetsMu.Unlock()
	var errs []error
	// Dropping every series first leaves Head.Close no full chunks to
	// write out to memory-mapped files that are deleted right after.
	if err := s.head.Truncate(math.MaxInt64); err != nil {
		errs = append(errs, fmt.Errorf("metricstore: truncating TSDB head: %w", err))
	}
	if err := s.head.Close(); err != nil {
		errs = append(errs, fmt.Errorf("metricstore: closing TSDB head: %w", err))
	}
	if s.ownEngine {
		if err := s.engine.Close(); err != nil {
			errs = append(errs, fmt.Errorf("metricstore: closing PromQL engine: %w", err))
		}
	}
	s.client.CloseIdleConnections()
	if err := os.RemoveAll(s.dir); err != nil {
		errs = append(errs, fmt.Errorf("metricstore: removing working directory: %w", err))
	}
	return errors.Join(errs...)
}

// Recycle empties the store for another use: every series and sample is
// dropped, and samples before mint are refused from then on, as after
// Open. It keeps what opening a store would allocate again (the head, its
// buffers and lock stripes, the working directory), which costs more
// than a short simulated run's samples. A TSDB head only moves forward in
// time: mint must be after every sample the store held, so a caller that
// needs the same timestamps again shifts them.
func (s *Store) Recycle(mint time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	m := mint.UnixMilli()
	if maxt := s.head.MaxTime(); m <= maxt {
		return fmt.Errorf("metricstore: recycling at %s, not after the newest sample (%s)", mint.UTC().Format(time.RFC3339Nano), time.UnixMilli(maxt).UTC().Format(time.RFC3339Nano))
	}
	s.targetsMu.Lock()
	clear(s.targets)
	s.targetsMu.Unlock()
	// Every series ends before m, so truncation drops them all.
	if err := s.head.Truncate(m); err != nil {
		return fmt.Errorf("metricstore: recycling the TSDB head: %w", err)
	}
	return nil
}

// Sample is one float sample for AppendSamples.
type Sample struct {
	Labels labels.Labels
	T      time.Time
	V      float64
}

// Append stores one sample. Labels with empty values are dropped, as
// Prometheus treats them as absent.
func (s *Store) Append(lbls labels.Labels, t time.Time, v float64) error {
	a := s.Appender()
	if err := a.Add(lbls, t, v); err != nil {
		return errors.Join(err, a.Rollback())
	}
	return a.Commit()
}

// AppendMap is Append with the labels given as a map.
func (s *Store) AppendMap(lbls map[string]string, t time.Time, v float64) error {
	return s.Append(labels.FromMap(lbls), t, v)
}

// AppendSamples stores samples in one transaction: all or none.
func (s *Store) AppendSamples(samples []Sample) error {
	a := s.Appender()
	for _, smp := range samples {
		if err := a.Add(smp.Labels, smp.T, smp.V); err != nil {
			return errors.Join(err, a.Rollback())
		}
	}
	return a.Commit()
}

// Appender starts a batch of samples that become visible to queries
// together on Commit, which is cheaper than one Append per sample.
// An Appender is not safe for concurrent use; use one per goroutine.
func (s *Store) Appender() *Appender {
	return &Appender{s: s}
}

// Appender batches samples; see Store.Appender.
type Appender struct {
	s    *Store
	app  storage.Appender
	done bool
}

// Add stages one sample. Labels with empty values are dropped.
func (a *Appender) Add(lbls labels.Labels, t time.Time, v float64) error {
	if a.done {
		return errors.New("metricstore: appender already committed or rolled back")
	}
	a.s.mu.RLock()
	defer a.s.mu.RUnlock()
	if a.s.closed {
		return ErrClosed
	}
	if a.app == nil {
		a.app = a.s.head.Appender(context.Background())
	}
	lbls = lbls.WithoutEmpty()
	if lbls.IsEmpty() {
		return errors.New("metricstore: appending a sample without labels")
	}
	a.s.postings.Lock()
	_, err := a.app.Append(0, lbls, t.UnixMilli(), v)
	a.s.postings.Unlock()
	if err != nil {
		return fmt.Errorf("metricstore: appending %s at %s: %w", lbls, t.UTC().Format(time.RFC3339Nano), err)
	}
	return nil
}

// AddMap is Add with the labels given as a map.
func (a *Appender) AddMap(lbls map[string]string, t time.Time, v float64) error {
	return a.Add(labels.FromMap(lbls), t, v)
}

// Commit makes the staged samples visible. The Appender is done after it.
func (a *Appender) Commit() error {
	if a.done {
		return errors.New("metricstore: appender already committed or rolled back")
	}
	a.done = true
	if a.app == nil {
		return nil
	}
	a.s.mu.RLock()
	if a.s.closed {
		a.s.mu.RUnlock()
		return ErrClosed
	}
	err := a.app.Commit()
	a.s.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("metricstore: committing samples: %w", err)
	}
	return a.s.applyRetention()
}

// Rollback discards the staged samples. The Appender is done after it.
func (a *Appender) Rollback() error {
	if a.done {
		return nil
	}
	a.done = true
	if a.app == nil {
		return nil
	}
	a.s.mu.RLock()
	defer a.s.mu.RUnlock()
	if a.s.closed {
		return nil
	}
	if err := a.app.Rollback(); err != nil {
		return fmt.Errorf("metricstore: rolling back samples: %w", err)
	}
	return nil
}

// applyRetention truncates the head once it spans 1.5 Retention, back to
// one Retention, so the cost of truncation is paid rarely.
func (s *Store) applyRetention() error {
	if s.retention <= 0 {
		return nil
	}
	maxt, mint := s.head.MaxTime(), s.head.MinTime()
	if maxt == math.MinInt64 || maxt-mint <= s.retention+s.retention/2 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if err := s.head.Truncate(s.head.MaxTime() - s.retention); err != nil {
		return fmt.Errorf("metricstore: applying retention: %w", err)
	}
	return nil
}

// querier opens a querier over the head; callers hold s.mu shared.
func (s *Store) querier(mint, maxt int64) (storage.Querier, error) {
	return tsdb.NewBlockQuerier(tsdb.NewRangeHead(s.head, mint, maxt), mint, maxt)
}

// minLevelHandler drops records below min.
type minLevelHandler struct {
	slog.Handler
	min slog.Level
}

func (h minLevelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevelHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevelHandler{h.Handler.WithAttrs(attrs), h.min}
}

func (h minLevelHandler) WithGroup(name string) slog.Handler {
	return minLevelHandler{h.Handler.WithGroup(name), h.min}
}
