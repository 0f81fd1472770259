package metricstore

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
)

// cachedQueries exercise every part of the tree the engine writes into:
// selectors and their series, offsets and @ times, subqueries, duration
// expressions, parentheses, grouping, vector matching.
var cachedQueries = []string{
	`rate(req_total{code!~"5.."}[1m])`,
	`sum by (pod, code) (rate(req_total[1m])) / on (pod) group_left sum by (pod) (rate(req_total[1m]))`,
	`histogram_quantile(0.99, sum by (le) (rate(lat_bucket{pod=~"a|b"}[2m])))`,
	`(((req_total offset 30s)))`,
	`req_total @ start()`,
	`req_total @ 1700000030`,
	`max_over_time(rate(req_total[1m])[2m:30s])`,
	`rate(req_total[1m] offset -30s)`,
	`-sum without (code) (req_total)`,
	`label_replace(req_total, "x", "$1", "pod", "(.*)")`,
	`rate(req_total[1m+30s])`,
	`req_total > bool 5`,
	`count_values("v", req_total)`,
}

// An engine with the parse cache answers as one without it, query after
// query and at different times: no copy it hands out keeps anything of
// the evaluation before.
func TestCachedParserAnswersAsParser(t *testing.T) {
	s := openTestStore(t, Options{})
	app := s.Appender()
	for i := range 10 {
		ts := t0.Add(time.Duration(i) * 15 * time.Second)
		for _, pod := range []string{"a", "b", "c"} {
			for _, code := range []string{"200", "503"} {
				v := float64(i * (len(pod) + len(code)))
				if err := app.Add(labels.FromStrings("__name__", "req_total", "pod", pod, "code", code), ts, v); err != nil {
					t.Fatal(err)
				}
			}
			for _, le := range []string{"0.1", "1", "+Inf"} {
				if err := app.Add(labels.FromStrings("__name__", "lat_bucket", "pod", pod, "le", le), ts, float64(i*len(le))); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	plain := promql.NewEngine(promql.EngineOpts{MaxSamples: maxQuerySamples, Timeout: time.Minute, LookbackDelta: DefaultLookbackDelta,
		NoStepSubqueryIntervalFn: func(int64) int64 { return defaultSubqueryStep }, EnableAtModifier: true, EnableNegativeOffset: true})
	cached := NewEngine(nil)
	eval := func(eng *promql.Engine, q string, at time.Time) string {
		qry, err := eng.NewInstantQuery(context.Background(), storage.QueryableFunc(s.querier), nil, q, at)
		if err != nil {
			return "error: " + err.Error()
		}
		defer qry.Close()
		res := qry.Exec(context.Background())
		if res.Err != nil {
			return "error: " + res.Err.Error()
		}
		return res.Value.String()
	}
	for round := range 3 {
		for _, q := range cachedQueries {
			at := t0.Add(time.Duration(90+round*30) * time.Second)
			want, got := eval(plain, q, at), eval(cached, q, at)
			if got != want {
				t.Errorf("round %d, %s:\ncached %s\nplain  %s", round, q, got, want)
			}
		}
	}
}

// A copy shares no node with the tree it copies, only label matchers and
// function definitions, which nothing writes to.
func TestCloneExprSharesNoNode(t *testing.T) {
	p := parser.NewParser(parser.Options{})
	for _, q := range cachedQueries {
		e, err := p.ParseExpr(q)
		if err != nil {
			t.Fatal(err)
		}
		c, ok := cloneExpr(e)
		if !ok {
			t.Fatalf("%s: not cloned", q)
		}
		if c.String() != e.String() {
			t.Errorf("clone of %s prints %s", e, c)
		}
		if !reflect.DeepEqual(c, e) {
			t.Errorf("clone of %s differs", q)
		}
		seen := map[any]bool{}
		for _, n := range nodes(e) {
			seen[fmt.Sprintf("%p", n)] = true
		}
		for _, n := range nodes(c) {
			if seen[fmt.Sprintf("%p", n)] {
				t.Errorf("%s: node %T %s is shared", q, n, n)
			}
		}
	}
}

func nodes(e parser.Expr) []parser.Node {
	var out []parser.Node
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if n == nil {
			return nil // the end of a node's children
		}
		out = append(out, n)
		if m, ok := n.(*parser.MatrixSelector); ok && m.RangeExpr != nil {
			out = append(out, m.RangeExpr)
		}
		return nil
	})
	return out
}
