package metricstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
)

// scrapeAccept asks for the classic Prometheus text format 0.0.4, which
// client_golang serves by default (with `# HELP`/`# TYPE`, counters'
// `_total`, classic histograms' `_bucket{le}` and summaries). A target
// that answers with OpenMetrics text anyway is parsed as OpenMetrics, as
// the parser is chosen by the response's Content-Type.
const scrapeAccept = "text/plain;version=0.0.4;q=1.0,*/*;q=0.1"

// Names of the series Prometheus adds for every scrape.
const (
	scrapeHealthMetric       = "up"
	scrapeDurationMetric     = "scrape_duration_seconds"
	scrapeSamplesMetric      = "scrape_samples_scraped"
	samplesPostRelabelMetric = "scrape_samples_post_metric_relabeling"
	scrapeSeriesAddedMetric  = "scrape_series_added"
)

// ErrNotLoopback is wrapped in the error Scrape returns for a URL outside
// 127.0.0.0/8, ::1 and localhost: canarylab only scrapes the pods it runs
// itself, and refusing anything else keeps a typo in a scenario from
// probing other hosts.
var ErrNotLoopback = errors.New("only loopback targets (127.0.0.0/8, ::1, localhost) may be scraped")

// ScrapeTarget is one /metrics endpoint.
type ScrapeTarget struct {
	// Job becomes the job label; required.
	Job string
	// Instance becomes the instance label; "" means the URL's host:port,
	// Prometheus' default.
	Instance string
	// URL is the full http(s) URL of the exposition; loopback only.
	URL string
	// Labels are added to every series like Prometheus' target labels
	// (names starting with "__" and empty values are dropped; job and
	// instance come from the fields above).
	Labels map[string]string
}

type targetKey struct{ job, instance string }

// targetState is what Prometheus' scrape cache remembers between scrapes
// of one target: the series of the last scrape, to write staleness
// markers for those that disappear.
type targetState struct {
	mu     sync.Mutex
	series map[string]labels.Labels // by the series' exposition text
	syms   *labels.SymbolTable
}

// Scrape fetches target's exposition and appends every sample at t (not
// at timestamps the exposition may carry, so virtual time stays
// consistent) with the target labels added under honor_labels: false
// (an exposed job, instance or other target label is kept as
// exported_<name>). Like Prometheus it also appends up (1, or 0 when the
// fetch or the parse fails), scrape_duration_seconds,
// scrape_samples_scraped, scrape_samples_post_metric_relabeling and
// scrape_series_added, and writes staleness markers for the target's
// series that the previous scrape had and this one lacks (all of them
// when the scrape fails).
//
// It returns the number of exposition samples appended and, for a failed
// scrape, the error (the up=0 sample is stored anyway, unless ctx was
// canceled: a caller giving up says nothing about the target). A
// non-loopback URL is refused with ErrNotLoopback before anything is
// fetched or stored.
// Scrapes of one target (same job and instance) are serialised; samples
// of a target must be appended in increasing t.
func (s *Store) Scrape(ctx context.Context, target ScrapeTarget, t time.Time) (samples int, err error) {
	u, err := checkTargetURL(target.URL)
	if err != nil {
		return 0, fmt.Errorf("metricstore: scraping %q: %w", target.URL, err)
	}
	if target.Job == "" {
		return 0, fmt.Errorf("metricstore: scraping %q: target has no job", target.URL)
	}
	instance := target.Instance
	if instance == "" {
		instance = u.Host
	}
	tl := targetLabels(target, instance)
	st, err := s.target(targetKey{target.Job, instance})
	if err != nil {
		return 0, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()

	start := time.Now()
	body, contentType, scrapeErr := s.fetch(ctx, u)
	if scrapeErr != nil && errors.Is(ctx.Err(), context.Canceled) {
		// The caller gave up (a Scraper shutting down): that says nothing
		// about the target, so record neither up=0 nor staleness.
		return 0, fmt.Errorf("metricstore: scraping %s: %w", u.Redacted(), scrapeErr)
	}
	app := s.Appender()
	var res appendResult
	if scrapeErr == nil {
		res, scrapeErr = s.appendExposition(app, body, contentType, tl, t, st)
		if scrapeErr != nil {
			if err := app.Rollback(); err != nil {
				return 0, err
			}
			app = s.Appender()
			res = appendResult{}
		}
	}
	if res.seen == nil {
		res.seen = map[string]labels.Labels{}
	}
	stale := math.Float64frombits(value.StaleNaN)
	for key, lset := range st.series {
		if _, ok := res.seen[key]; ok {
			continue
		}
		if err := app.Add(lset, t, stale); err != nil && !ignorableAppendError(err) {
			return 0, errors.Join(fmt.Errorf("metricstore: scraping %s: writing staleness marker: %w", u.Redacted(), err), app.Rollback())
		}
	}
	health := 0.0
	if scrapeErr == nil {
		health = 1
	}
	report := []struct {
		name string
		v    float64
	}{
		{scrapeHealthMetric, health},
		{scrapeDurationMetric, time.Since(start).Seconds()},
		{scrapeSamplesMetric, float64(res.scraped)},
		{samplesPostRelabelMetric, float64(res.added)},
		{scrapeSeriesAddedMetric, float64(res.seriesAdded(st.series))},
	}
	lb := labels.NewBuilder(tl)
	for _, r := range report {
		lb.Set(model.MetricNameLabel, r.name)
		if err := app.Add(lb.Labels(), t, r.v); err != nil && !ignorableAppendError(err) {
			return 0, errors.Join(fmt.Errorf("metricstore: scraping %s: writing %s: %w", u.Redacted(), r.name, err), app.Rollback())
		}
	}
	if err := app.Commit(); err != nil {
		return 0, fmt.Errorf("metricstore: scraping %s: %w", u.Redacted(), err)
	}
	st.series = res.seen
	if scrapeErr != nil {
		return 0, fmt.Errorf("metricstore: scraping %s: %w", u.Redacted(), scrapeErr)
	}
	return res.appended, nil
}

// target returns the scrape cache of one target, creating it.
func (s *Store) target(k targetKey) (*targetState, error) {
	s.targetsMu.Lock()
	defer s.targetsMu.Unlock()
	if s.targets == nil {
		return nil, ErrClosed
	}
	st, ok := s.targets[k]
	if !ok {
		st = &targetState{series: map[string]labels.Labels{}, syms: labels.NewSymbolTable()}
		s.targets[k] = st
	}
	return st, nil
}

// targetLabels builds the label set Prometheus attaches to a target after
// relabeling: its labels without "__" names or empty values, plus job and
// instance.
func targetLabels(t ScrapeTarget, instance string) labels.Labels {
	b := labels.NewBuilder(labels.EmptyLabels())
	for name, v := range t.Labels {
		if strings.HasPrefix(name, "__") {
			continue
		}
		b.Set(name, v)
	}
	b.Set(model.JobLabel, t.Job)
	b.Set(model.InstanceLabel, instance)
	return b.Labels()
}

type appendResult struct {
	scraped  int // samples in the exposition
	added    int // samples after "relabeling", duplicates included
	appended int // samples stored
	seen     map[string]labels.Labels
}

func (r appendResult) seriesAdded(previous map[string]labels.Labels) int {
	n := 0
	for k := range r.seen {
		if _, ok := previous[k]; !ok {
			n++
		}
	}
	return n
}

// appendExposition parses body with Prometheus' textparse and stages its
// samples, following scrape.(*scrapeLoopAppender).append: a parse error
// fails the whole scrape; duplicate series, out-of-order and
// out-of-bounds samples are skipped without failing it.
func (s *Store) appendExposition(app *Appender, body []byte, contentType string, tl labels.Labels, t time.Time, st *targetState) (appendResult, error) {
	res := appendResult{seen: map[string]labels.Labels{}}
	if len(body) == 0 {
		return res, nil
	}
	// Prometheus 3 fails a scrape whose Content-Type it cannot use unless
	// fallback_scrape_protocol is set; canarylab's targets are its own
	// mocks, so it falls back to the text format.
	p, err := textparse.New(body, contentType, st.syms, textparse.ParserOptions{
		IgnoreNativeHistograms: true,
		FallbackContentType:    "text/plain",
	})
	if p == nil {
		return res, fmt.Errorf("choosing a parser: %w", err)
	}
	if err != nil {
		s.logger.Debug("invalid Content-Type on scrape, using the text format", "content_type", contentType, "err", err)
	}
	var (
		lset labels.Labels
		lb   = labels.NewBuilder(labels.EmptyLabels())
	)
	for {
		et, err := p.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return res, nil
			}
			return res, fmt.Errorf("parsing exposition: %w", err)
		}
		switch et {
		case textparse.EntrySeries:
		case textparse.EntryHistogram:
			// Native histograms never come in the text formats asked for.
			res.scraped++
			continue
		default: // # TYPE, # HELP, # UNIT, comments
			continue
		}
		res.scraped++
		met, _, v := p.Series()
		key := string(met)
		if _, dup := res.seen[key]; dup {
			res.added++ // Prometheus counts a duplicate but does not store it.
			continue
		}
		p.Labels(&lset)
		final := mutateSampleLabels(lb, lset, tl)
		if !final.Has(model.MetricNameLabel) {
			return res, errors.New("a sample has no metric name")
		}
		if !final.IsValid(model.UTF8Validation) {
			return res, fmt.Errorf("invalid metric name or label names: %s", final.String())
		}
		res.added++
		if err := app.Add(final, t, v); err != nil {
			if ignorableAppendError(err) {
				continue
			}
			return res, err
		}
		res.appended++
		res.seen[key] = final
	}
}

// mutateSampleLabels is scrape.mutateSampleLabels with honor_labels false
// and no relabeling: target labels overwrite exposed ones, and an exposed
// value they displace moves to exported_<name> (exported_exported_<name>
// if that is taken, and so on), shortest names first.
func mutateSampleLabels(lb *labels.Builder, lset, tl labels.Labels) labels.Labels {
	lb.Reset(lset)
	var conflicts []labels.Label
	tl.Range(func(l labels.Label) {
		if v := lset.Get(l.Name); v != "" {
			conflicts = append(conflicts, labels.Label{Name: l.Name, Value: v})
		}
		lb.Set(l.Name, l.Value)
	})
	slices.SortStableFunc(conflicts, func(a, b labels.Label) int { return cmp.Compare(len(a.Name), len(b.Name)) })
	for _, l := range conflicts {
		name := l.Name
		for {
			name = model.ExportedLabelPrefix + name
			if lb.Get(name) == "" {
				lb.Set(name, l.Value)
				break
			}
		}
	}
	return lb.Labels()
}

// ignorableAppendError reports the append errors a Prometheus scrape
// counts and skips instead of failing.
func ignorableAppendError(err error) bool {
	return errors.Is(err, storage.ErrOutOfOrderSample) ||
		errors.Is(err, storage.ErrDuplicateSampleForTimestamp) ||
		errors.Is(err, storage.ErrOutOfBounds) ||
		errors.Is(err, storage.ErrTooOldSample)
}

// fetch GETs the exposition.
func (s *Store) fetch(ctx context.Context, u *url.URL) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, "", fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Accept", scrapeAccept)
	req.Header.Set("User-Agent", "canarylab-metricstore")
	timeout := s.client.Timeout
	if deadline, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(deadline))
	}
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64))
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil, "", fmt.Errorf("server returned HTTP status %s", resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", fmt.Errorf("reading body: %w", err)
	}
	return body, resp.Header.Get("Content-Type"), nil
}

// checkTargetURL accepts http(s) URLs whose host is localhost or a
// loopback address.
func checkTargetURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("unsupported scheme %q (want http or https)", u.Scheme)
	}
	if !isLoopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("host %q: %w", u.Hostname(), ErrNotLoopback)
	}
	return u, nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// newScrapeClient returns a client that can only connect to loopback
// addresses: the dialer checks the resolved address, so neither a
// redirect nor a "localhost" resolving elsewhere can leave the machine.
func newScrapeClient(timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	dialer := &net.Dialer{
		Timeout: timeout,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !ap.Addr().Unmap().IsLoopback() {
				return fmt.Errorf("connecting to %s: %w", address, ErrNotLoopback)
			}
			return nil
		},
	}
	tr.DialContext = dialer.DialContext
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			if !isLoopbackHost(req.URL.Hostname()) {
				return fmt.Errorf("redirect to %q: %w", req.URL.Hostname(), ErrNotLoopback)
			}
			return nil
		},
	}
}
