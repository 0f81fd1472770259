package metricstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	jsoniter "github.com/json-iterator/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/util/jsonutil"
)

// statusClientClosedConnection is the code Prometheus answers a canceled
// query with (nginx's 499).
const statusClientClosedConnection = 499

// maxRangePoints is the Prometheus API's limit of points per series in a
// range query.
const maxRangePoints = 11000

// Handler serves a subset of the Prometheus HTTP API so that users (and a
// real Flagger, given the address) can query the embedded Prometheus while
// a run goes:
//
//	GET|POST /api/v1/query        query, time (default Options.Now), timeout
//	GET|POST /api/v1/query_range  query, start, end, step, timeout
//
// Answers use Prometheus' JSON envelope and number formatting
// ({"status":"success","data":{"resultType":"vector","result":[...]}},
// errors as {"status":"error","errorType":"bad_data","error":"..."} with
// the same status codes). The query is evaluated as given: Flagger
// collapses whitespace on its side before sending.
func (s *Store) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/query", s.serveQuery)
	mux.HandleFunc("/api/v1/query_range", s.serveQueryRange)
	return mux
}

func (s *Store) serveQuery(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r) {
		return
	}
	ts, err := parseTimeParam(r, "time", s.now())
	if err != nil {
		respondError(w, &queryError{errorBadData, err})
		return
	}
	ctx, cancel, err := timeoutContext(r)
	if err != nil {
		respondError(w, &queryError{errorBadData, err})
		return
	}
	defer cancel()
	query := r.FormValue("query")
	v, warnings, err := s.eval(ctx, query, ts)
	if err != nil {
		respondError(w, err)
		return
	}
	warn, info := warnings.AsStrings(query, 10, 10)
	respondSuccess(w, v, warn, info)
}

func (s *Store) serveQueryRange(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r) {
		return
	}
	start, err := parseTime(r.FormValue("start"))
	if err != nil {
		respondError(w, &queryError{errorBadData, fmt.Errorf("invalid parameter %q: %w", "start", err)})
		return
	}
	end, err := parseTime(r.FormValue("end"))
	if err != nil {
		respondError(w, &queryError{errorBadData, fmt.Errorf("invalid parameter %q: %w", "end", err)})
		return
	}
	if end.Before(start) {
		respondError(w, &queryError{errorBadData, fmt.Errorf("invalid parameter %q: %w", "end", errors.New("end timestamp must not be before start time"))})
		return
	}
	step, err := parseDuration(r.FormValue("step"))
	if err != nil {
		respondError(w, &queryError{errorBadData, fmt.Errorf("invalid parameter %q: %w", "step", err)})
		return
	}
	if step <= 0 {
		respondError(w, &queryError{errorBadData, fmt.Errorf("invalid parameter %q: %w", "step", errors.New("zero or negative query resolution step widths are not accepted. Try a positive integer"))})
		return
	}
	if end.Sub(start)/step > maxRangePoints {
		respondError(w, &queryError{errorBadData, errors.New("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)")})
		return
	}
	ctx, cancel, err := timeoutContext(r)
	if err != nil {
		respondError(w, &queryError{errorBadData, err})
		return
	}
	defer cancel()
	query := r.FormValue("query")
	m, warnings, err := s.evalRange(ctx, query, start, end, step)
	if err != nil {
		respondError(w, err)
		return
	}
	warn, info := warnings.AsStrings(query, 10, 10)
	respondSuccess(w, m, warn, info)
}

func allowMethod(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodPost {
		return true
	}
	w.Header().Set("Allow", "GET, POST")
	http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
	return false
}

func timeoutContext(r *http.Request) (context.Context, context.CancelFunc, error) {
	v := r.FormValue("timeout")
	if v == "" {
		ctx, cancel := context.WithCancel(r.Context())
		return ctx, cancel, nil
	}
	d, err := parseDuration(v)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid parameter %q: %w", "timeout", err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), d)
	return ctx, cancel, nil
}

// parseTimeParam and parseTime follow web/api/v1: a float of Unix seconds
// (millisecond precision) or RFC 3339.
func parseTimeParam(r *http.Request, name string, def time.Time) (time.Time, error) {
	v := r.FormValue(name)
	if v == "" {
		return def, nil
	}
	t, err := parseTime(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid parameter %q: %w", name, fmt.Errorf("invalid time value for '%s': %w", name, err))
	}
	return t, nil
}

func parseTime(s string) (time.Time, error) {
	if t, err := strconv.ParseFloat(s, 64); err == nil {
		sec, frac := math.Modf(t)
		frac = math.Round(frac*1000) / 1000
		return time.Unix(int64(sec), int64(frac*float64(time.Second))).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
}

func parseDuration(s string) (time.Duration, error) {
	if d, err := strconv.ParseFloat(s, 64); err == nil {
		ts := d * float64(time.Second)
		if math.IsNaN(ts) || ts >= float64(math.MaxInt64) || ts < float64(math.MinInt64) {
			return 0, fmt.Errorf("cannot parse %q to a valid duration. It overflows int64", s)
		}
		return time.Duration(ts), nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
}

func respondSuccess(w http.ResponseWriter, v parser.Value, warnings, infos []string) {
	body, err := encodeSuccess(v, warnings, infos)
	if err != nil {
		respondError(w, &queryError{errorInternal, fmt.Errorf("encoding result: %w", err)})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func respondError(w http.ResponseWriter, err error) {
	typ := errorInternal
	if qe, ok := errors.AsType[*queryError](err); ok {
		typ = qe.typ
	}
	code := http.StatusInternalServerError
	switch typ {
	case errorBadData:
		code = http.StatusBadRequest
	case errorExec:
		code = http.StatusUnprocessableEntity
	case errorCanceled:
		code = statusClientClosedConnection
	case errorTimeout:
		code = http.StatusServiceUnavailable
	}
	var buf bytes.Buffer
	st := jsoniter.NewStream(jsoniter.ConfigCompatibleWithStandardLibrary, &buf, 256)
	st.WriteObjectStart()
	st.WriteObjectField("status")
	st.WriteString("error")
	st.WriteMore()
	st.WriteObjectField("errorType")
	st.WriteString(typ)
	st.WriteMore()
	st.WriteObjectField("error")
	st.WriteString(err.Error())
	st.WriteObjectEnd()
	_ = st.Flush()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// encodeSuccess renders {"status":"success","data":{...}} with the
// Prometheus API's number formatting (util/jsonutil): timestamps as Unix
// seconds with millisecond decimals, values as strings.
func encodeSuccess(v parser.Value, warnings, infos []string) ([]byte, error) {
	var buf bytes.Buffer
	st := jsoniter.NewStream(jsoniter.ConfigCompatibleWithStandardLibrary, &buf, 1024)
	st.WriteObjectStart()
	st.WriteObjectField("status")
	st.WriteString("success")
	st.WriteMore()
	st.WriteObjectField("data")
	st.WriteObjectStart()
	st.WriteObjectField("resultType")
	st.WriteString(string(v.Type()))
	st.WriteMore()
	st.WriteObjectField("result")
	switch r := v.(type) {
	case promql.Vector:
		st.WriteArrayStart()
		for i, smp := range r {
			if i > 0 {
				st.WriteMore()
			}
			writeSample(st, smp)
		}
		st.WriteArrayEnd()
	case promql.Matrix:
		st.WriteArrayStart()
		for i, series := range r {
			if i > 0 {
				st.WriteMore()
			}
			writeSeries(st, series)
		}
		st.WriteArrayEnd()
	case promql.Scalar:
		st.WriteArrayStart()
		jsonutil.MarshalTimestamp(r.T, st)
		st.WriteMore()
		jsonutil.MarshalFloat(r.V, st)
		st.WriteArrayEnd()
	case promql.String:
		st.WriteArrayStart()
		jsonutil.MarshalTimestamp(r.T, st)
		st.WriteMore()
		st.WriteString(r.V)
		st.WriteArrayEnd()
	default:
		return nil, fmt.Errorf("unsupported result type %T", v)
	}
	st.WriteObjectEnd()
	writeStrings(st, "warnings", warnings)
	writeStrings(st, "infos", infos)
	st.WriteObjectEnd()
	if err := st.Flush(); err != nil {
		return nil, err
	}
	if st.Error != nil {
		return nil, st.Error
	}
	return buf.Bytes(), nil
}

func writeStrings(st *jsoniter.Stream, field string, ss []string) {
	if len(ss) == 0 {
		return
	}
	st.WriteMore()
	st.WriteObjectField(field)
	st.WriteArrayStart()
	for i, s := range ss {
		if i > 0 {
			st.WriteMore()
		}
		st.WriteString(s)
	}
	st.WriteArrayEnd()
}

func writeLabels(st *jsoniter.Stream, lbls labels.Labels) {
	st.WriteObjectStart()
	i := 0
	lbls.Range(func(l labels.Label) {
		if i > 0 {
			st.WriteMore()
		}
		i++
		st.WriteObjectField(l.Name)
		st.WriteString(l.Value)
	})
	st.WriteObjectEnd()
}

func writeSample(st *jsoniter.Stream, smp promql.Sample) {
	st.WriteObjectStart()
	st.WriteObjectField("metric")
	writeLabels(st, smp.Metric)
	st.WriteMore()
	if smp.H == nil {
		st.WriteObjectField("value")
	} else {
		st.WriteObjectField("histogram")
	}
	st.WriteArrayStart()
	jsonutil.MarshalTimestamp(smp.T, st)
	st.WriteMore()
	if smp.H == nil {
		jsonutil.MarshalFloat(smp.F, st)
	} else {
		jsonutil.MarshalHistogram(smp.H, st)
	}
	st.WriteArrayEnd()
	st.WriteObjectEnd()
}

func writeSeries(st *jsoniter.Stream, s promql.Series) {
	st.WriteObjectStart()
	st.WriteObjectField("metric")
	writeLabels(st, s.Metric)
	if len(s.Floats) > 0 {
		st.WriteMore()
		st.WriteObjectField("values")
		st.WriteArrayStart()
		for i, p := range s.Floats {
			if i > 0 {
				st.WriteMore()
			}
			st.WriteArrayStart()
			jsonutil.MarshalTimestamp(p.T, st)
			st.WriteMore()
			jsonutil.MarshalFloat(p.F, st)
			st.WriteArrayEnd()
		}
		st.WriteArrayEnd()
	}
	if len(s.Histograms) > 0 {
		st.WriteMore()
		st.WriteObjectField("histograms")
		st.WriteArrayStart()
		for i, p := range s.Histograms {
			if i > 0 {
				st.WriteMore()
			}
			st.WriteArrayStart()
			jsonutil.MarshalTimestamp(p.T, st)
			st.WriteMore()
			jsonutil.MarshalHistogram(p.H, st)
			st.WriteArrayEnd()
		}
		st.WriteArrayEnd()
	}
	st.WriteObjectEnd()
}
