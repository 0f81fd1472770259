package metricstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

func apiTestStore(t *testing.T) *Store {
	t.Helper()
	s := openTestStore(t, Options{Now: func() time.Time { return t0.Add(1500 * time.Millisecond) }})
	app := s.Appender()
	for i := range 3 {
		ts := t0.Add(time.Duration(i) * time.Second)
		for _, smp := range []struct {
			job string
			v   float64
		}{{"b", 2 * float64(i)}, {"a", 1.5}} {
			if err := app.Add(labels.FromStrings("__name__", "foo", "job", smp.job), ts, smp.v); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestHandler(t *testing.T) {
	s := apiTestStore(t)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	tests := []struct {
		name     string
		method   string
		path     string
		form     url.Values
		wantCode int
		wantBody string
	}{
		{
			name: "vector", method: http.MethodGet, path: "/api/v1/query",
			form:     url.Values{"query": {"foo"}, "time": {"1700000001"}},
			wantCode: http.StatusOK,
			wantBody: `{"status":"success","data":{"resultType":"vector","result":[` +
				`{"metric":{"__name__":"foo","job":"a"},"value":[1700000001,"1.5"]},` +
				`{"metric":{"__name__":"foo","job":"b"},"value":[1700000001,"2"]}]}}`,
		},
		{
			name: "default time is Options.Now", method: http.MethodPost, path: "/api/v1/query",
			form:     url.Values{"query": {`foo{job="b"}`}},
			wantCode: http.StatusOK,
			wantBody: `{"status":"success","data":{"resultType":"vector","result":[` +
				`{"metric":{"__name__":"foo","job":"b"},"value":[1700000001.500,"2"]}]}}`, // Prometheus prints 3 decimals
		},
		{
			name: "scalar at an RFC 3339 time", method: http.MethodGet, path: "/api/v1/query",
			form:     url.Values{"query": {"1/3"}, "time": {"2023-11-14T22:13:20Z"}},
			wantCode: http.StatusOK,
			wantBody: `{"status":"success","data":{"resultType":"scalar","result":[1700000000,"0.3333333333333333"]}}`,
		},
		{
			name: "parse error", method: http.MethodPost, path: "/api/v1/query",
			form:     url.Values{"query": {"sum(foo"}},
			wantCode: http.StatusBadRequest,
			wantBody: `{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:8: parse error: unclosed left parenthesis"}`,
		},
		{
			name: "bad time", method: http.MethodGet, path: "/api/v1/query",
			form:     url.Values{"query": {"foo"}, "time": {"yesterday"}},
			wantCode: http.StatusBadRequest,
			wantBody: `{"status":"error","errorType":"bad_data","error":"invalid parameter \"time\": invalid time value for 'time': cannot parse \"yesterday\" to a valid timestamp"}`,
		},
		{
			name: "execution error", method: http.MethodGet, path: "/api/v1/query",
			form:     url.Values{"query": {`label_replace(foo, "job", "x", "job", ".*")`}, "time": {"1700000001"}},
			wantCode: http.StatusUnprocessableEntity,
			wantBody: `{"status":"error","errorType":"execution","error":"vector cannot contain metrics with the same labelset"}`,
		},
		{
			name: "range", method: http.MethodGet, path: "/api/v1/query_range",
			form:     url.Values{"query": {`foo{job="b"}`}, "start": {"1700000000"}, "end": {"1700000002"}, "step": {"1s"}},
			wantCode: http.StatusOK,
			wantBody: `{"status":"success","data":{"resultType":"matrix","result":[` +
				`{"metric":{"__name__":"foo","job":"b"},"values":[[1700000000,"0"],[1700000001,"2"],[1700000002,"4"]]}]}}`,
		},
		{
			name: "range without step", method: http.MethodGet, path: "/api/v1/query_range",
			form:     url.Values{"query": {`foo`}, "start": {"1700000000"}, "end": {"1700000002"}},
			wantCode: http.StatusBadRequest,
			wantBody: `{"status":"error","errorType":"bad_data","error":"invalid parameter \"step\": cannot parse \"\" to a valid duration"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var resp *http.Response
			var err error
			if tt.method == http.MethodPost {
				resp, err = http.PostForm(srv.URL+tt.path, tt.form)
			} else {
				resp, err = http.Get(srv.URL + tt.path + "?" + tt.form.Encode())
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantCode {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.wantCode)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if string(body) != tt.wantBody {
				t.Errorf("body\n got %s\nwant %s", body, tt.wantBody)
			}
		})
	}
}

// flaggerRunQuery is Flagger's PrometheusProvider.RunQuery (v1.38+, with
// the matrix check), reduced to what matters here: collapse whitespace,
// GET /api/v1/query without time, unmarshal, last value wins, NaN or
// nothing is "no values found".
func flaggerRunQuery(base, query string) (float64, error) {
	query = CollapseWhitespace(query)
	r, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		return 0, fmt.Errorf("request failed: %w", err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return 0, err
	}
	if 400 <= r.StatusCode {
		return 0, fmt.Errorf("error response: %s", string(b))
	}
	var result struct {
		Data struct {
			Result []struct {
				Value  []any `json:"value"`
				Values []any `json:"values"`
			}
		}
	}
	if err := json.Unmarshal(b, &result); err != nil {
		return 0, fmt.Errorf("error unmarshaling result: %w, '%s'", err, string(b))
	}
	var value *float64
	for _, v := range result.Data.Result {
		if v.Values != nil {
			return 0, ErrMultipleValues
		}
		if s, ok := v.Value[1].(string); ok {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return 0, err
			}
			value = &f
		}
	}
	if value == nil || math.IsNaN(*value) {
		return 0, ErrNoValuesFound
	}
	return *value, nil
}

// TestQueryMatchesFlaggerOverHandler runs Flagger's provider logic
// against Handler and checks that Query gives the same answers.
func TestQueryMatchesFlaggerOverHandler(t *testing.T) {
	s := apiTestStore(t)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	at := t0.Add(1500 * time.Millisecond) // Options.Now of apiTestStore
	for _, q := range []string{
		"foo", "sum(foo)", "  sum(\n foo ) / 0 * 0", "absent_metric", "foo[1m]", "vector(1)", "1 + 1", "sum(foo",
	} {
		want, wantErr := flaggerRunQuery(srv.URL, q)
		got, err := s.Query(t.Context(), q, at)
		switch {
		case wantErr == nil:
			if err != nil || got != want {
				t.Errorf("%q: Query = (%v, %v), Flagger reads (%v, nil)", q, got, err, want)
			}
		case errors.Is(wantErr, ErrNoValuesFound), errors.Is(wantErr, ErrMultipleValues):
			if !errors.Is(err, wantErr) {
				t.Errorf("%q: Query error %v, Flagger %v", q, err, wantErr)
			}
		case strings.HasPrefix(wantErr.Error(), "error unmarshaling result: "):
			if err == nil || !strings.HasPrefix(err.Error(), "error unmarshaling result: ") {
				t.Errorf("%q: Query error %v, Flagger %v", q, err, wantErr)
			}
		case strings.HasPrefix(wantErr.Error(), "error response: "):
			// Flagger quotes the API's JSON error; Query returns its text.
			var apiErr struct{ Error string }
			if jerr := json.Unmarshal([]byte(strings.TrimPrefix(wantErr.Error(), "error response: ")), &apiErr); jerr != nil {
				t.Fatal(jerr)
			}
			if err == nil || err.Error() != apiErr.Error {
				t.Errorf("%q: Query error %v, API says %q", q, err, apiErr.Error)
			}
		default:
			t.Errorf("%q: unexpected Flagger error %v", q, wantErr)
		}
	}
}
