package mesh

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/canarylab/canarylab/orchestrator/analysis"
)

type hdrs map[string][]string

// TestABRouting checks Istio's match semantics through the two-route A/B
// layout: at SetRoutes(0, 100) every matching request goes to the canary,
// every other to the primary.
func TestABRouting(t *testing.T) {
	sm := func(kind, v string) analysis.StringMatch {
		switch kind {
		case "exact":
			return analysis.StringMatch{Exact: v}
		case "prefix":
			return analysis.StringMatch{Prefix: v}
		case "regex":
			return analysis.StringMatch{Regex: v}
		}
		return analysis.StringMatch{}
	}
	psm := func(kind, v string) *analysis.StringMatch { m := sm(kind, v); return &m }
	type req struct {
		method, target string
		header         hdrs
		canary         bool
	}
	tests := []struct {
		name  string
		match []analysis.HTTPMatchRequest
		reqs  []req
	}{
		{"header exact", []analysis.HTTPMatchRequest{{Headers: map[string]analysis.StringMatch{"x-canary": sm("exact", "insider")}}},
			[]req{
				{"GET", "/", hdrs{"X-Canary": {"insider"}}, true},
				{"GET", "/", hdrs{"X-Canary": {"insider2"}}, false},
				{"GET", "/", hdrs{"X-Canary": {"Insider"}}, false},
				{"GET", "/", nil, false},
			}},
		{"header names are case-insensitive", []analysis.HTTPMatchRequest{{Headers: map[string]analysis.StringMatch{"X-CANARY": sm("exact", "1")}}},
			[]req{{"GET", "/", hdrs{"x-canary": {"1"}}, true}}},
		{"header prefix", []analysis.HTTPMatchRequest{{Headers: map[string]analysis.StringMatch{"user-agent": sm("prefix", "Mozilla/5.0 (Firefox")}}},
			[]req{
				{"GET", "/", hdrs{"User-Agent": {"Mozilla/5.0 (Firefox 120)"}}, true},
				{"GET", "/", hdrs{"User-Agent": {"Mozilla/5.0 (Chrome)"}}, false},
			}},
		{"header regex is fully anchored", []analysis.HTTPMatchRequest{{Headers: map[string]analysis.StringMatch{"cookie": sm("regex", "^(.*?;)?(canary=always)(;.*)?$")}}},
			[]req{
				{"GET", "/", hdrs{"Cookie": {"a=1;canary=always;b=2"}}, true},
				{"GET", "/", hdrs{"Cookie": {"a=1; canary=always"}}, false}, // the space is not in the regex
				{"GET", "/", hdrs{"Cookie": {"canary=always"}}, true},
				{"GET", "/", hdrs{"Cookie": {"canary=never"}}, false},
			}},
		{"regex needs a full match", []analysis.HTTPMatchRequest{{Headers: map[string]analysis.StringMatch{"x-user": sm("regex", "ali")}}},
			[]req{
				{"GET", "/", hdrs{"X-User": {"ali"}}, true},
				{"GET", "/", hdrs{"X-User": {"alice"}}, false},
			}},
		{"several values are joined with commas", []analysis.HTTPMatchRequest{{Headers: map[string]analysis.StringMatch{"x-v": sm("exact", "a,b")}}},
			[]req{{"GET", "/", hdrs{"X-V": {"a", "b"}}, true}, {"GET", "/", hdrs{"X-V": {"a"}}, false}}},
		{"empty match is presence", []analysis.HTTPMatchRequest{{Headers: map[string]analysis.StringMatch{"x-beta": {}}}},
			[]req{{"GET", "/", hdrs{"X-Beta": {""}}, true}, {"GET", "/", nil, false}}},
		{`regex "*" is presence`, []analysis.HTTPMatchRequest{{Headers: map[string]analysis.StringMatch{"x-beta": sm("regex", "*")}}},
			[]req{{"GET", "/", hdrs{"X-Beta": {"anything"}}, true}, {"GET", "/", nil, false}}},
		{"withoutHeaders", []analysis.HTTPMatchRequest{{WithoutHeaders: map[string]analysis.StringMatch{"x-region": sm("exact", "eu")}}},
			[]req{
				{"GET", "/", hdrs{"X-Region": {"us"}}, true},
				{"GET", "/", hdrs{"X-Region": {"eu"}}, false},
				// Envoy's invert_match never matches a missing header (istio/istio#50988).
				{"GET", "/", nil, false},
			}},
		{"withoutHeaders presence matches a missing header", []analysis.HTTPMatchRequest{{WithoutHeaders: map[string]analysis.StringMatch{"x-internal": {}}}},
			[]req{{"GET", "/", nil, true}, {"GET", "/", hdrs{"X-Internal": {"1"}}, false}}},
		{"uri prefix", []analysis.HTTPMatchRequest{{URI: psm("prefix", "/api/v2")}},
			[]req{
				{"GET", "/api/v2/items?x=1", nil, true},
				{"GET", "/api/v1/items", nil, false},
				{"GET", "/API/v2", nil, false},
			}},
		{"uri ignoreUriCase", []analysis.HTTPMatchRequest{{URI: psm("exact", "/Login"), IgnoreURICase: true}},
			[]req{{"GET", "/login", nil, true}, {"GET", "/login/x", nil, false}}},
		{"uri regex ignores the query", []analysis.HTTPMatchRequest{{URI: psm("regex", "/items/[0-9]+")}},
			[]req{{"GET", "/items/42?a=b", nil, true}, {"GET", "/items/4x", nil, false}}},
		{"method and authority", []analysis.HTTPMatchRequest{{Method: psm("exact", "POST"), Authority: psm("prefix", "podinfo")}},
			[]req{
				{"POST", "http://podinfo.test:9898/", nil, true},
				{"GET", "http://podinfo.test:9898/", nil, false},
				{"POST", "http://other/", nil, false},
			}},
		{"scheme", []analysis.HTTPMatchRequest{{Scheme: psm("exact", "http")}},
			[]req{{"GET", "/", nil, true}}},
		{"queryParams", []analysis.HTTPMatchRequest{{QueryParams: map[string]analysis.StringMatch{
			"version": sm("exact", "v2"), "user": sm("regex", "[a-z]+")}}},
			[]req{
				{"GET", "/?version=v2&user=bob", nil, true},
				{"GET", "/?user=bob&version=v2&version=v3", nil, true},
				{"GET", "/?version=v3&version=v2&user=bob", nil, false}, // the first occurrence counts
				{"GET", "/?version=v2&user=Bob", nil, false},
				{"GET", "/?version=v2", nil, false},
			}},
		{"query values are matched undecoded", []analysis.HTTPMatchRequest{{QueryParams: map[string]analysis.StringMatch{"q": sm("exact", "a%20b")}}},
			[]req{{"GET", "/?q=a%20b", nil, true}, {"GET", "/?q=a+b", nil, false}}},
		{"conditions in an entry are ANDed", []analysis.HTTPMatchRequest{{
			URI: psm("prefix", "/api"), Headers: map[string]analysis.StringMatch{"x-canary": sm("exact", "1")}}},
			[]req{
				{"GET", "/api/x", hdrs{"X-Canary": {"1"}}, true},
				{"GET", "/api/x", nil, false},
				{"GET", "/web", hdrs{"X-Canary": {"1"}}, false},
			}},
		{"entries are ORed", []analysis.HTTPMatchRequest{
			{Headers: map[string]analysis.StringMatch{"x-canary": sm("exact", "insider")}},
			{Headers: map[string]analysis.StringMatch{"cookie": sm("regex", ".*canary=always.*")}},
		},
			[]req{
				{"GET", "/", hdrs{"X-Canary": {"insider"}}, true},
				{"GET", "/", hdrs{"Cookie": {"x=1; canary=always"}}, true},
				{"GET", "/", hdrs{"X-Canary": {"no"}, "Cookie": {"x=1"}}, false},
			}},
		{"ignored fields", []analysis.HTTPMatchRequest{{
			SourceLabels: map[string]string{"app": "x"}, Gateways: []string{"mesh"}, Port: 9898, SourceNS: "other",
			Headers: map[string]analysis.StringMatch{"x-canary": sm("exact", "1"), "method": sm("exact", "never")}}},
			[]req{{"GET", "/", hdrs{"X-Canary": {"1"}}, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			primary, canary := newBackend(t, nil), newBackend(t, nil)
			cfg := testConfig(primary, canary)
			cfg.Match = tt.match
			rt := newRouter(t, cfg)
			if err := rt.SetRoutes(0, 100, false); err != nil {
				t.Fatal(err)
			}
			for _, rq := range tt.reqs {
				p0, c0 := primary.n.Load(), canary.n.Load()
				req := httptest.NewRequest(rq.method, rq.target, nil)
				for k, v := range rq.header {
					req.Header[http.CanonicalHeaderKey(k)] = v
				}
				if rec := serveDirect(rt, req); rec.Code != http.StatusOK {
					t.Fatalf("%s %s: status %d", rq.method, rq.target, rec.Code)
				}
				toCanary := canary.n.Load() > c0
				if toCanary != rq.canary || primary.n.Load()+canary.n.Load() != p0+c0+1 {
					t.Errorf("%s %s %v: canary=%v, want %v", rq.method, rq.target, rq.header, toCanary, rq.canary)
				}
			}
		})
	}
}

// TestABWeights: a matching request goes by the weights; at 100/0 the
// canary gets nothing; the A/B layout carries no mirror.
func TestABWeights(t *testing.T) {
	primary, canary := newBackend(t, nil), newBackend(t, nil)
	cfg := testConfig(primary, canary)
	cfg.Match = []analysis.HTTPMatchRequest{{Headers: map[string]analysis.StringMatch{"x-canary": {Exact: "1"}}}}
	rt := newRouter(t, cfg)
	send := func(n int, canaryHeader bool) {
		for range n {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			if canaryHeader {
				req.Header.Set("X-Canary", "1")
			}
			serveDirect(rt, req)
		}
	}
	send(50, true)
	if canary.n.Load() != 0 {
		t.Fatalf("at 100/0 the canary got %d matching requests", canary.n.Load())
	}
	if err := rt.SetRoutes(50, 50, true); err != nil {
		t.Fatal(err)
	}
	if _, _, m := rt.GetRoutes(); m {
		t.Error("A/B routes report a mirror; Flagger's A/B VirtualService has none")
	}
	send(400, true)
	if c := canary.n.Load(); c < 140 || c > 260 { // 200 ± 6σ
		t.Errorf("at 50/50 the canary got %d of 400 matching requests", c)
	}
	c0 := canary.n.Load()
	send(100, false)
	if canary.n.Load() != c0 {
		t.Errorf("non-matching requests reached the canary (%d)", canary.n.Load()-c0)
	}
	if rt.Counts().Mirrored != 0 {
		t.Error("A/B routes mirrored")
	}
}
