package sim

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/canarylab/canarylab/orchestrator/analysis"
	"github.com/canarylab/canarylab/orchestrator/metricstore"
	"github.com/canarylab/canarylab/orchestrator/scenario"
)

// shape is what the analysis' queries read, found once per run with
// Prometheus' parser, so that the sim writes and draws only that.
type shape struct {
	// sparse: every range goes to rate() or increase() and is a whole
	// number of scrape intervals, as is the analysis interval: only the
	// scrapes that can be a window's first or last sample change a result
	// (see world.needed).
	sparse  bool
	windows []time.Duration
	// selectors are the label matchers of every series selector: a series
	// none of them matches cannot change any result.
	selectors [][]*labels.Matcher
	// all: some query could not be rendered or parsed here, or reads
	// series without a selector (info()): assume it reads everything.
	all bool
	// absolute: some query may read absolute time (time(), hour(), an @
	// modifier, a subquery's steps aligned to the epoch), so the run must
	// not be shifted in the store's time (see pool.go).
	absolute bool
	// queries are the rendered texts, as rendered and with whitespace
	// collapsed as the store collapses it: the analysis must send no
	// other.
	queries map[string]bool

	// mu guards codes, the series templates the runs share.
	mu    sync.Mutex
	codes map[codeKey]*codeSeries
}

// reads reports whether some query can select the series l.
func (sh *shape) reads(l labels.Labels) bool {
	if sh.all {
		return true
	}
	for _, ms := range sh.selectors {
		if matchesAll(ms, l) {
			return true
		}
	}
	return false
}

// mayRead reports whether some selector may select a series of one of
// these names, whatever its other labels.
func (sh *shape) mayRead(names ...string) bool {
	if sh.all {
		return true
	}
	for _, ms := range sh.selectors {
		named := false
		for _, m := range ms {
			if m.Name != labels.MetricName {
				continue
			}
			named = true
			for _, n := range names {
				if m.Matches(n) {
					return true
				}
			}
		}
		if !named {
			return true
		}
	}
	return false
}

func matchesAll(ms []*labels.Matcher, l labels.Labels) bool {
	for _, m := range ms {
		if !m.Matches(l.Get(m.Name)) {
			return false
		}
	}
	return true
}

// shapes caches queryShape: a sweep runs the same scenario thousands of
// times, and rendering and parsing its queries cost a tenth of a run.
// Shapes are read-only once made.
var shapes struct {
	sync.Mutex
	m map[string]*shape
}

// maxShapes bounds the cache; a sweep has one scenario a point.
const maxShapes = 256

// cachedShape is queryShape, made once per distinct input.
func cachedShape(s *scenario.Scenario, scrape time.Duration) *shape {
	k := shapeKey(s, scrape)
	shapes.Lock()
	sh := shapes.m[k]
	shapes.Unlock()
	if sh != nil {
		return sh
	}
	sh = queryShape(s, scrape)
	shapes.Lock()
	if shapes.m == nil || len(shapes.m) >= maxShapes {
		shapes.m = map[string]*shape{}
	}
	shapes.m[k] = sh
	shapes.Unlock()
	return sh
}

// shapeKey is everything queryShape reads, each string prefixed by its
// length so that no two inputs give one key.
func shapeKey(s *scenario.Scenario, scrape time.Duration) string {
	var b strings.Builder
	put := func(v string) {
		b.WriteString(strconv.Itoa(len(v)))
		b.WriteByte(':')
		b.WriteString(v)
	}
	put(scrape.String())
	put(s.Analysis.IntervalDuration().String())
	put(s.Name())
	put(s.Namespace())
	for _, m := range s.Analysis.Metrics {
		put(m.Name)
		put(m.Interval)
		put(m.Query)
		if m.TemplateRef != nil {
			put("ref")
			put(m.TemplateRef.Name)
		} else {
			put("")
		}
		put(strconv.Itoa(len(m.TemplateVariables)))
		for _, k := range slices.Sorted(maps.Keys(m.TemplateVariables)) {
			put(k)
			put(m.TemplateVariables[k])
		}
	}
	put("templates")
	for _, t := range s.MetricTemplates {
		put(t.Metadata.Name)
		put(t.Spec.Query)
	}
	return b.String()
}

// queryShape renders every query of the analysis as the analysis renders
// it (the builtin and inline checks default the interval to 1m, template
// checks do not) and reads its selectors and ranges with Prometheus'
// parser. Every template of a referenced name is read, whatever its
// namespace: a superset is safe.
func queryShape(s *scenario.Scenario, scrape time.Duration) *shape {
	interval := s.Analysis.IntervalDuration()
	sh := &shape{sparse: interval%scrape == 0, queries: map[string]bool{}}
	vars := analysis.TemplateVars{Name: s.Name(), Namespace: s.Namespace(), Target: s.Name(), Service: s.Name(), Ingress: s.Name(), Route: s.Name()}
	p := parser.NewParser(parser.Options{})
	for _, m := range s.Analysis.Metrics {
		vars.Variables = m.TemplateVariables
		if analysis.IsBuiltin(m.Name) || m.Query != "" {
			q := m.Query
			if analysis.IsBuiltin(m.Name) {
				q = analysis.BuiltinQueries[m.Name]
			}
			vars.Interval = m.Interval
			if vars.Interval == "" {
				vars.Interval = analysis.DefaultMetricInterval
			}
			sh.add(p, q, vars, scrape)
		}
		if m.TemplateRef != nil {
			vars.Interval = m.Interval
			for _, t := range s.MetricTemplates {
				if t.Metadata.Name == m.TemplateRef.Name {
					sh.add(p, t.Spec.Query, vars, scrape)
				}
			}
		}
	}
	return sh
}

// add reads one query.
func (sh *shape) add(p parser.Parser, q string, vars analysis.TemplateVars, scrape time.Duration) {
	text, err := analysis.Render(q, vars)
	if err != nil {
		sh.sparse, sh.all, sh.absolute = false, true, true
		return
	}
	sh.queries[text] = true
	sh.queries[metricstore.CollapseWhitespace(text)] = true
	expr, err := p.ParseExpr(text)
	if err != nil {
		sh.sparse, sh.all, sh.absolute = false, true, true
		return
	}
	parser.Inspect(expr, func(n parser.Node, path []parser.Node) error {
		switch n := n.(type) {
		case *parser.SubqueryExpr:
			sh.sparse, sh.absolute = false, true
		case *parser.VectorSelector:
			sh.selectors = append(sh.selectors, n.LabelMatchers)
			sh.absolute = sh.absolute || n.Timestamp != nil || n.StartOrEnd != 0
		case *parser.MatrixSelector:
			win := n.Range
			call, ok := parentCall(path)
			if !ok || (call.Func.Name != "rate" && call.Func.Name != "increase") || win%scrape != 0 {
				sh.sparse = false
			}
			sh.windows = append(sh.windows, win)
		case *parser.Call:
			if n.Func.Name == "info" {
				sh.all, sh.absolute = true, true // reads target_info without a selector
			}
			sh.absolute = sh.absolute || absoluteTime[n.Func.Name]
		}
		return nil
	})
}

// absoluteTime are the functions whose results depend on where in time
// the samples are, not only on their distances.
var absoluteTime = map[string]bool{
	"time": true, "timestamp": true, "minute": true, "hour": true, "day_of_month": true, "day_of_week": true,
	"day_of_year": true, "days_in_month": true, "month": true, "year": true, "start": true, "end": true,
	"start_timestamp": true, "ts_of_first_over_time": true, "ts_of_last_over_time": true,
	"ts_of_max_over_time": true, "ts_of_min_over_time": true,
}

// parentCall is the innermost function call above a node.
func parentCall(path []parser.Node) (*parser.Call, bool) {
	for i := len(path) - 1; i >= 0; i-- {
		switch p := path[i].(type) {
		case *parser.Call:
			return p, true
		case *parser.ParenExpr:
			continue
		default:
			return nil, false
		}
	}
	return nil, false
}
