package metricstore

import (
	"slices"
	"sync"

	"github.com/prometheus/prometheus/promql/parser"
)

// maxCachedExprs bounds a cachedParser: a canary analysis sends a few
// queries, a sweep the same few thousands of times; the bound only
// matters to a long-lived server fed ever new texts, whose cache is then
// simply emptied.
const maxCachedExprs = 512

// cachedParser is Prometheus' parser with a cache of the expressions it
// parsed. Analyses send the same queries every tick, and parsing one
// (lexing, the grammar, a regexp compiled for every =~ matcher) cost a
// third of evaluating it. The engine writes into the tree it evaluates
// (series, offsets and @ times resolved, parentheses unwrapped, grouping
// sorted), so the cache keeps a copy no query ever sees and hands out
// fresh copies of it; only the label matchers, which are immutable, and
// the function definitions are shared.
type cachedParser struct {
	parser.Parser
	mu    sync.RWMutex
	exprs map[string]parser.Expr
}

func newCachedParser(p parser.Parser) *cachedParser {
	return &cachedParser{Parser: p, exprs: map[string]parser.Expr{}}
}

// ParseExpr parses input, or copies the tree it parsed before.
func (p *cachedParser) ParseExpr(input string) (parser.Expr, error) {
	p.mu.RLock()
	cached, ok := p.exprs[input]
	p.mu.RUnlock()
	if ok {
		if e, ok := cloneExpr(cached); ok {
			return e, nil
		}
	}
	e, err := p.Parser.ParseExpr(input)
	if err != nil {
		return e, err // errors are rare and not worth caching
	}
	// A node type cloneExpr does not know (a newer Prometheus) is parsed
	// every time, as without the cache.
	if c, ok := cloneExpr(e); ok {
		p.mu.Lock()
		if len(p.exprs) >= maxCachedExprs {
			clear(p.exprs)
		}
		p.exprs[input] = c
		p.mu.Unlock()
	}
	return e, nil
}

// cloneExpr deep-copies an expression tree as the parser makes it (and
// the engine's StepInvariantExpr); ok is false for an unknown node type.
func cloneExpr(e parser.Expr) (out parser.Expr, ok bool) {
	ok = true
	clone := func(e parser.Expr) parser.Expr {
		c, k := cloneExpr(e)
		ok = ok && k
		return c
	}
	switch n := e.(type) {
	case nil:
		return nil, true
	case *parser.AggregateExpr:
		c := *n
		c.Expr, c.Param = clone(n.Expr), clone(n.Param)
		c.Grouping = slices.Clone(n.Grouping)
		return &c, ok
	case *parser.BinaryExpr:
		c := *n
		c.LHS, c.RHS = clone(n.LHS), clone(n.RHS)
		if n.VectorMatching != nil {
			vm := *n.VectorMatching
			vm.MatchingLabels, vm.Include = slices.Clone(vm.MatchingLabels), slices.Clone(vm.Include)
			c.VectorMatching = &vm
		}
		return &c, ok
	case *parser.Call:
		c := *n
		c.Args = make(parser.Expressions, len(n.Args))
		for i, a := range n.Args {
			c.Args[i] = clone(a)
		}
		return &c, ok
	case *parser.MatrixSelector:
		c := *n
		c.VectorSelector = clone(n.VectorSelector)
		c.RangeExpr = cloneDuration(n.RangeExpr, clone)
		return &c, ok
	case *parser.SubqueryExpr:
		c := *n
		c.Expr = clone(n.Expr)
		c.RangeExpr = cloneDuration(n.RangeExpr, clone)
		c.OriginalOffsetExpr = cloneDuration(n.OriginalOffsetExpr, clone)
		c.StepExpr = cloneDuration(n.StepExpr, clone)
		c.Timestamp = cloneInt(n.Timestamp)
		return &c, ok
	case *parser.VectorSelector:
		c := *n
		c.OriginalOffsetExpr = cloneDuration(n.OriginalOffsetExpr, clone)
		c.Timestamp = cloneInt(n.Timestamp)
		c.LabelMatchers = slices.Clone(n.LabelMatchers)
		c.UnexpandedSeriesSet, c.Series = nil, nil
		return &c, ok
	case *parser.DurationExpr:
		return cloneDuration(n, clone), ok
	case *parser.NumberLiteral:
		c := *n
		return &c, true
	case *parser.StringLiteral:
		c := *n
		return &c, true
	case *parser.ParenExpr:
		c := *n
		c.Expr = clone(n.Expr)
		return &c, ok
	case *parser.UnaryExpr:
		c := *n
		c.Expr = clone(n.Expr)
		return &c, ok
	case *parser.StepInvariantExpr:
		c := *n
		c.Expr = clone(n.Expr)
		return &c, ok
	}
	return nil, false
}

func cloneDuration(d *parser.DurationExpr, clone func(parser.Expr) parser.Expr) *parser.DurationExpr {
	if d == nil {
		return nil
	}
	c := *d
	c.LHS, c.RHS = clone(d.LHS), clone(d.RHS)
	return &c
}

func cloneInt(p *int64) *int64 {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
