package mesh

import (
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"

	"github.com/canarylab/canarylab/orchestrator/analysis"
)

// matchKind is how a compiled StringMatch compares.
type matchKind uint8

const (
	matchPresent matchKind = iota // empty StringMatch or regex "*": presence only
	matchExact
	matchPrefix
	matchRegex
)

// stringMatcher is a compiled Istio StringMatch.
type stringMatcher struct {
	kind  matchKind
	value string
	re    *regexp.Regexp
}

func (m *stringMatcher) match(s string) bool {
	switch m.kind {
	case matchExact:
		return s == m.value
	case matchPrefix:
		return strings.HasPrefix(s, m.value)
	case matchRegex:
		return m.re.MatchString(s)
	}
	return true
}

// headerCond is one header condition; invert marks a withoutHeaders
// entry (Envoy's invert_match).
type headerCond struct {
	name   string // canonical form
	m      stringMatcher
	invert bool
}

// queryCond is one query parameter condition.
type queryCond struct {
	name string
	m    stringMatcher
}

// condition is one compiled HTTPMatchRequest: all its parts must match.
type condition struct {
	uri                       *stringMatcher
	uriFold                   bool
	method, authority, scheme *stringMatcher
	headers                   []headerCond
	query                     []queryCond
}

// compileMatch compiles the match entries, naming the offending field as
// in a Canary (match[0].headers.x-user.regex).
func compileMatch(in []analysis.HTTPMatchRequest) ([]condition, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make([]condition, len(in))
	for i, mr := range in {
		c := &out[i]
		at := fmt.Sprintf("match[%d]", i)
		var err error
		if c.uri, err = compileOptional(at+".uri", mr.URI, false); err != nil {
			return nil, err
		}
		c.uriFold = mr.IgnoreURICase
		if c.method, err = compileOptional(at+".method", mr.Method, true); err != nil {
			return nil, err
		}
		if c.authority, err = compileOptional(at+".authority", mr.Authority, true); err != nil {
			return nil, err
		}
		if c.scheme, err = compileOptional(at+".scheme", mr.Scheme, true); err != nil {
			return nil, err
		}
		for _, h := range []struct {
			field  string
			m      map[string]analysis.StringMatch
			invert bool
		}{{"headers", mr.Headers, false}, {"withoutHeaders", mr.WithoutHeaders, true}} {
			for _, name := range sortedKeys(h.m) {
				if istioIgnoredHeader(name) {
					continue
				}
				if !validHeaderName(name) {
					return nil, fmt.Errorf("%s.%s: %q is not a header name", at, h.field, name)
				}
				sm := h.m[name]
				m, err := compileString(fmt.Sprintf("%s.%s.%s", at, h.field, name), sm, true)
				if err != nil {
					return nil, err
				}
				c.headers = append(c.headers, headerCond{name: http.CanonicalHeaderKey(name), m: m, invert: h.invert})
			}
		}
		for _, name := range sortedKeys(mr.QueryParams) {
			sm := mr.QueryParams[name]
			at := fmt.Sprintf("%s.queryParams.%s", at, name)
			if sm.Prefix != "" {
				return nil, fmt.Errorf("%s.prefix %q: Istio matches query parameters with exact or regex only", at, sm.Prefix)
			}
			m, err := compileString(at, sm, false)
			if err != nil {
				return nil, err
			}
			c.query = append(c.query, queryCond{name: name, m: m})
		}
	}
	return out, nil
}

// istioIgnoredHeader reports the header keys Istio ignores in headers
// ("The keys uri, scheme, method, and authority will be ignored").
func istioIgnoredHeader(name string) bool {
	switch strings.ToLower(name) {
	case "uri", "scheme", "method", "authority":
		return true
	}
	return false
}

func compileOptional(at string, sm *analysis.StringMatch, starIsPresence bool) (*stringMatcher, error) {
	if sm == nil {
		return nil, nil
	}
	m, err := compileString(at, *sm, starIsPresence)
	if err != nil {
		return nil, err
	}
	if m.kind == matchPresent {
		// An empty match on a pseudo header or the path matches every
		// request (Istio: no path specifier means prefix "/").
		return nil, nil
	}
	return &m, nil
}

// compileString compiles one StringMatch. Regexes are RE2 and fully
// anchored (Envoy's safe_regex matches the whole value).
func compileString(at string, sm analysis.StringMatch, starIsPresence bool) (stringMatcher, error) {
	set := 0
	for _, v := range []string{sm.Exact, sm.Prefix, sm.Regex} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		return stringMatcher{}, fmt.Errorf("%s: set one of exact, prefix, regex (Istio's StringMatch is a oneof)", at)
	}
	switch {
	case sm.Exact != "":
		return stringMatcher{kind: matchExact, value: sm.Exact}, nil
	case sm.Prefix != "":
		return stringMatcher{kind: matchPrefix, value: sm.Prefix}, nil
	case sm.Regex == "*" && starIsPresence:
		// Istio translates regex "*" to Envoy's present_match.
		return stringMatcher{kind: matchPresent}, nil
	case sm.Regex != "":
		re, err := regexp.Compile(`^(?:` + sm.Regex + `)$`)
		if err != nil {
			return stringMatcher{}, fmt.Errorf("%s.regex %q: not an RE2 regex: %w", at, sm.Regex, err)
		}
		return stringMatcher{kind: matchRegex, value: sm.Regex, re: re}, nil
	}
	return stringMatcher{kind: matchPresent}, nil
}

// matches reports whether r matches any condition.
func matchAny(conds []condition, r *http.Request) bool {
	for i := range conds {
		if conds[i].matches(r) {
			return true
		}
	}
	return false
}

func (c *condition) matches(r *http.Request) bool {
	if c.uri != nil && !matchURI(c.uri, r.URL.Path, c.uriFold) {
		return false
	}
	if c.method != nil && !c.method.match(r.Method) {
		return false
	}
	if c.authority != nil && !c.authority.match(r.Host) {
		return false
	}
	if c.scheme != nil && !c.scheme.match(requestScheme(r)) {
		return false
	}
	for i := range c.headers {
		if !c.headers[i].matches(r.Header) {
			return false
		}
	}
	if len(c.query) > 0 {
		for i := range c.query {
			v, ok := firstQueryParam(r.URL.RawQuery, c.query[i].name)
			if !ok || !c.query[i].m.match(v) {
				return false
			}
		}
	}
	return true
}

// matchURI applies ignoreUriCase to exact and prefix only, as Envoy's
// case_sensitive does.
func matchURI(m *stringMatcher, path string, fold bool) bool {
	if !fold {
		return m.match(path)
	}
	switch m.kind {
	case matchExact:
		return strings.EqualFold(path, m.value)
	case matchPrefix:
		return len(path) >= len(m.value) && strings.EqualFold(path[:len(m.value)], m.value)
	}
	return m.match(path)
}

// matches is Envoy's HeaderUtility::matchHeaders without
// treat_missing_header_as_empty (Istio does not set it): a missing header
// matches only an inverted presence match.
func (h *headerCond) matches(hdr http.Header) bool {
	vs, ok := hdr[h.name]
	if !ok || len(vs) == 0 {
		return h.invert && h.m.kind == matchPresent
	}
	v := vs[0]
	if len(vs) > 1 {
		v = strings.Join(vs, ",")
	}
	return h.m.match(v) != h.invert
}

// firstQueryParam finds the first value of name in a raw query, undecoded
// (Envoy parses the query of :path without decoding it; a key without '='
// has the value "").
func firstQueryParam(raw, name string) (string, bool) {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k == name {
			return v, true
		}
	}
	return "", false
}

func requestScheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Matcher is a compiled list of Istio match conditions (ORed): the
// router's A/B routing, for engines that route without a router (the sim
// engine decides which simulated requests an A/B canary sees).
type Matcher struct{ conds []condition }

// NewMatcher compiles match conditions; errors name the field as in a
// Canary (match[0].headers.x-user.regex).
func NewMatcher(in []analysis.HTTPMatchRequest) (*Matcher, error) {
	conds, err := compileMatch(in)
	if err != nil {
		return nil, err
	}
	return &Matcher{conds: conds}, nil
}

// Matches reports whether a request matches any condition.
func (m *Matcher) Matches(r *http.Request) bool {
	for i := range m.conds {
		if m.conds[i].matches(r) {
			return true
		}
	}
	return false
}
