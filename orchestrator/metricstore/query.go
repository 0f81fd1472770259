package metricstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/canarylab/canarylab/orchestrator/analysis"
)

// ErrNoValuesFound is Flagger's providers.ErrNoValuesFound: the query
// returned an empty vector or its last value is NaN (0/0 with no traffic,
// histogram_quantile over empty buckets). Flagger halts advancement on it.
// It is the analysis' own error, so that engines pass Query's errors on
// as they are.
var ErrNoValuesFound = analysis.ErrNoValuesFound

// ErrMultipleValues is Flagger's providers.ErrMultipleValuesReturned (v1.38
// on): an instant query returned a range vector (matrix). Flagger v1.36.1
// panics instead (see flagger-1.36-differences.md §6); emulators decide.
// It is the analysis' own error too.
var ErrMultipleValues = analysis.ErrMultipleValues

// ErrNotVector is wrapped in the error Query returns for scalar and string
// results, which Flagger fails to unmarshal.
var ErrNotVector = errors.New("result is not an instant vector")

// Error types of the Prometheus HTTP API, used by Handler.
const (
	errorBadData  = "bad_data"
	errorExec     = "execution"
	errorCanceled = "canceled"
	errorTimeout  = "timeout"
	errorInternal = "internal"
)

// queryError carries the Prometheus API error type along with the error,
// so that Handler answers with the same errorType and status code as
// Prometheus and Query's error text matches the API's "error" field.
type queryError struct {
	typ string
	err error
}

func (e *queryError) Error() string { return e.err.Error() }
func (e *queryError) Unwrap() error { return e.err }

// Query evaluates query as an instant query at t the way Flagger's
// Prometheus provider reads the HTTP API's answer:
//
//   - runs of whitespace (Go regexp \s: space, \t, \n, \f, \r) become one
//     space first;
//   - a vector yields the value of its last element (vectors are sorted by
//     label set, see the package doc);
//   - an empty vector, an empty matrix, or a NaN last value gives
//     ErrNoValuesFound ("no values found");
//   - a non-empty matrix gives ErrMultipleValues ("query returned
//     multiple values");
//   - a scalar or string gives "error unmarshaling result: scalar result
//     is not an instant vector, '<API JSON body>'" (wrapping ErrNotVector),
//     the shape of Flagger's "error unmarshaling result: %w, '%s'";
//   - a parse error gives Prometheus' API text, e.g. `invalid parameter
//     "query": 1:5: parse error: unexpected <EOF>` (wrapping
//     parser.ParseErrors);
//   - an evaluation error gives the engine's text unchanged.
func (s *Store) Query(ctx context.Context, query string, t time.Time) (float64, error) {
	v, _, err := s.eval(ctx, CollapseWhitespace(query), t)
	if err != nil {
		return 0, err
	}
	switch r := v.(type) {
	case promql.Vector:
		if len(r) == 0 {
			return 0, ErrNoValuesFound
		}
		for _, smp := range r {
			if smp.H != nil {
				return 0, fmt.Errorf("series %s holds a native histogram, not a float value", smp.Metric)
			}
		}
		last := r[len(r)-1].F
		if math.IsNaN(last) {
			return 0, ErrNoValuesFound
		}
		return last, nil
	case promql.Matrix:
		if len(r) == 0 {
			return 0, ErrNoValuesFound
		}
		return 0, ErrMultipleValues
	default:
		return 0, notVectorError(v)
	}
}

// QueryVector evaluates query (whitespace collapsed, as Query does) as an
// instant query at t and returns the whole vector, sorted by label set,
// for reports and tests. An empty vector is not an error here; a matrix
// is ErrMultipleValues and a scalar or string fails as in Query.
func (s *Store) QueryVector(ctx context.Context, query string, t time.Time) (promql.Vector, error) {
	v, _, err := s.eval(ctx, CollapseWhitespace(query), t)
	if err != nil {
		return nil, err
	}
	switch r := v.(type) {
	case promql.Vector:
		return r, nil
	case promql.Matrix:
		return nil, ErrMultipleValues
	default:
		return nil, notVectorError(v)
	}
}

// QueryValue evaluates query exactly as given (no whitespace collapse,
// Prometheus' own semantics) as an instant query at t and returns
// whatever it yields: promql.Vector (sorted by label set), promql.Matrix,
// promql.Scalar or promql.String. The result stays valid after the call.
func (s *Store) QueryValue(ctx context.Context, query string, t time.Time) (parser.Value, error) {
	v, _, err := s.eval(ctx, query, t)
	return v, err
}

// QueryRange evaluates query over [start, end] every step, like
// /api/v1/query_range; series are sorted by label set as Prometheus sorts
// them.
func (s *Store) QueryRange(ctx context.Context, query string, start, end time.Time, step time.Duration) (promql.Matrix, error) {
	m, _, err := s.evalRange(ctx, query, start, end, step)
	return m, err
}

func notVectorError(v parser.Value) error {
	body, err := encodeSuccess(v, nil, nil)
	if err != nil {
		body = []byte(v.String())
	}
	return fmt.Errorf("error unmarshaling result: %s %w, '%s'", v.Type(), ErrNotVector, body)
}

// eval runs an instant query and detaches the result from the engine's
// pools.
func (s *Store) eval(ctx context.Context, query string, t time.Time) (parser.Value, annotations.Annotations, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, nil, ErrClosed
	}
	s.postings.RLock()
	defer s.postings.RUnlock()
	q, err := s.engine.NewInstantQuery(ctx, storage.QueryableFunc(s.querier), s.queryOpts, query, t)
	if err != nil {
		return nil, nil, constructionError(err)
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return nil, res.Warnings, execError(res.Err)
	}
	switch r := res.Value.(type) {
	case promql.Vector:
		if !keepsOrder(q.Statement()) {
			sortVector(r)
		}
		return r, res.Warnings, nil
	case promql.Matrix:
		return detachMatrix(r), res.Warnings, nil
	default:
		return res.Value, res.Warnings, nil
	}
}

func (s *Store) evalRange(ctx context.Context, query string, start, end time.Time, step time.Duration) (promql.Matrix, annotations.Annotations, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, nil, ErrClosed
	}
	s.postings.RLock()
	defer s.postings.RUnlock()
	q, err := s.engine.NewRangeQuery(ctx, storage.QueryableFunc(s.querier), s.queryOpts, query, start, end, step)
	if err != nil {
		return nil, nil, constructionError(err)
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return nil, res.Warnings, execError(res.Err)
	}
	m, err := res.Matrix()
	if err != nil {
		return nil, res.Warnings, &queryError{errorExec, fmt.Errorf("range query result: %w", err)}
	}
	return detachMatrix(m), res.Warnings, nil
}

// constructionError mirrors the Prometheus API's queryConstructionError.
func constructionError(err error) error {
	var (
		eqt promql.ErrQueryTimeout
		eqc promql.ErrQueryCanceled
	)
	if errors.As(err, &eqt) || errors.As(err, &eqc) {
		return execError(err)
	}
	return &queryError{errorBadData, fmt.Errorf("invalid parameter %q: %w", "query", err)}
}

// execError mirrors the Prometheus API's returnAPIError.
func execError(err error) error {
	var (
		eqc promql.ErrQueryCanceled
		eqt promql.ErrQueryTimeout
		es  promql.ErrStorage
	)
	switch {
	case errors.As(err, &eqc), errors.Is(err, context.Canceled):
		return &queryError{errorCanceled, err}
	case errors.As(err, &eqt):
		return &queryError{errorTimeout, err}
	case errors.As(err, &es):
		return &queryError{errorInternal, err}
	}
	return &queryError{errorExec, err}
}

// keepsOrder reports whether the query ends in a sorting function, whose
// order Prometheus returns as is.
func keepsOrder(stmt parser.Statement) bool {
	es, ok := stmt.(*parser.EvalStmt)
	if !ok {
		return false
	}
	e := es.Expr
	for {
		switch n := e.(type) {
		case *parser.ParenExpr:
			e = n.Expr
		case *parser.StepInvariantExpr:
			e = n.Expr
		case *parser.Call:
			switch n.Func.Name {
			case "sort", "sort_desc", "sort_by_label", "sort_by_label_desc":
				return true
			}
			return false
		default:
			return false
		}
	}
}

func sortVector(v promql.Vector) {
	slices.SortStableFunc(v, func(a, b promql.Sample) int { return labels.Compare(a.Metric, b.Metric) })
}

// detachMatrix copies the point slices, which the engine returns to its
// pools on Query.Close.
func detachMatrix(m promql.Matrix) promql.Matrix {
	out := make(promql.Matrix, len(m))
	for i, s := range m {
		out[i] = promql.Series{Metric: s.Metric, Floats: slices.Clone(s.Floats)}
		if len(s.Histograms) > 0 {
			out[i].Histograms = make([]promql.HPoint, len(s.Histograms))
			for j, p := range s.Histograms {
				out[i].Histograms[j] = promql.HPoint{T: p.T, H: p.H.Copy()}
			}
		}
	}
	slices.SortStableFunc(out, func(a, b promql.Series) int { return labels.Compare(a.Metric, b.Metric) })
	return out
}

// CollapseWhitespace replaces every run of whitespace by one space, as
// Flagger's trimQuery does with regexp `\s+` (in Go's regexp, \s is
// exactly space, \t, \n, \f and \r).
func CollapseWhitespace(q string) string {
	var b strings.Builder
	b.Grow(len(q))
	inSpace := false
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch c {
		case ' ', '\t', '\n', '\f', '\r':
			if !inSpace {
				b.WriteByte(' ')
				inSpace = true
			}
		default:
			b.WriteByte(c)
			inSpace = false
		}
	}
	return b.String()
}
