package mockserver

import (
	"net/http"
	"strings"
)

// matcher is a compiled Match.
type matcher struct {
	methods []string
	path    string
	headers [][2]string // canonical name, glob
	query   [][2]string
}

func compileMatch(m Match) matcher {
	c := matcher{methods: m.Methods, path: m.Path}
	for k, v := range m.Headers {
		c.headers = append(c.headers, [2]string{http.CanonicalHeaderKey(k), v})
	}
	for k, v := range m.Query {
		c.query = append(c.query, [2]string{k, v})
	}
	return c
}

func (m *matcher) matches(r *http.Request) bool {
	if len(m.methods) > 0 {
		ok := false
		for _, meth := range m.methods {
			if meth == r.Method {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if m.path != "" && !glob(m.path, r.URL.Path) {
		return false
	}
	for _, h := range m.headers {
		vals, present := r.Header[h[0]]
		if !present || !anyGlob(h[1], vals) {
			return false
		}
	}
	if len(m.query) > 0 {
		q := r.URL.Query()
		for _, kv := range m.query {
			vals, present := q[kv[0]]
			if !present || !anyGlob(kv[1], vals) {
				return false
			}
		}
	}
	return true
}

func anyGlob(pattern string, vals []string) bool {
	for _, v := range vals {
		if glob(pattern, v) {
			return true
		}
	}
	return false
}

// glob matches s against a pattern where * is any run of characters
// (slashes included) and ? is one character. It runs in linear time: on a
// mismatch it backtracks only to the last star.
func glob(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	return strings.Trim(pattern[p:], "*") == ""
}
