package sweep

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/canarylab/canarylab/orchestrator/scenario"
)

// MaxPoints bounds a numeric grid's values, and the number of points of a
// sweep (the product of its varies' sizes).
const MaxPoints = 10000

// Vary is one --vary: a scenario field and the values a sweep gives it.
type Vary struct {
	// Path is the field's dotted path with the YAML's names and optional
	// list indexes, such as analysis.metrics[0].thresholdRange.min.
	Path string `json:"path"`
	// Spec is the --vary as written, such as canary.errors.rate=0:0.05:0.01.
	Spec string `json:"spec"`
	// Values are the values, in order: float64 for numbers, string, bool,
	// nil, or JSON objects and lists as map[string]any and []any.
	Values []any `json:"values"`

	segs []segment
}

// VaryError is a --vary that cannot be applied: a malformed spec, a bad
// path, or a value the scenario does not accept. Vary names it as on the
// command line (PATH=VALUE, or every --vary of a point).
type VaryError struct {
	Vary string
	Err  error
}

// Error says the --vary and the problem, such as "--vary
// analysis.treshold=2: analysis.treshold: unknown field: did you mean
// threshold?".
func (e *VaryError) Error() string { return "--vary " + e.Vary + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *VaryError) Unwrap() error { return e.Err }

// segment is a step of a path: an object key, or a list index when key
// is empty.
type segment struct {
	key   string
	index int
}

// ParseVary reads PATH=SPEC. SPEC is a numeric grid a:b:step (a, a+step,
// … up to b inclusive; step > 0; at most MaxPoints values) or a
// comma-separated list of values: numbers, true, false, null, strings
// (bare or double-quoted, so "503:0.1,500:0.1" keeps its comma) and JSON
// objects or lists. Durations such as 30s are strings, as in the YAML.
func ParseVary(spec string) (Vary, error) {
	fail := func(format string, args ...any) (Vary, error) {
		return Vary{}, &VaryError{Vary: spec, Err: fmt.Errorf(format, args...)}
	}
	path, rhs, ok := strings.Cut(spec, "=")
	path = strings.TrimSpace(path)
	if !ok || path == "" {
		return fail("want PATH=VALUES, such as canary.errors.rate=0:0.05:0.01 or analysis.threshold=2,5,10")
	}
	segs, err := parsePath(path)
	if err != nil {
		return fail("%w", err)
	}
	v := Vary{Path: path, Spec: spec, segs: segs}
	rhs = strings.TrimSpace(rhs)
	if rhs == "" {
		return fail("no values after %s=: give a grid a:b:step or a list v1,v2,...", path)
	}
	if parts := strings.Split(rhs, ":"); len(parts) == 3 {
		var nums [3]float64
		numeric := true
		for i, p := range parts {
			f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
			if err != nil {
				numeric = false
				break
			}
			nums[i] = f
		}
		if numeric {
			if v.Values, err = gridValues(nums[0], nums[1], nums[2]); err != nil {
				return fail("%w", err)
			}
			return v, nil
		}
	}
	items, err := splitList(rhs)
	if err != nil {
		return fail("%w", err)
	}
	for _, it := range items {
		val, err := parseValue(it)
		if err != nil {
			return fail("%w", err)
		}
		v.Values = append(v.Values, val)
	}
	return v, nil
}

// gridValues returns a, a+step, … ≤ b (b included within a tolerance), each
// rounded to 12 significant digits so that 0.1+0.2 reads 0.3.
func gridValues(a, b, step float64) ([]any, error) {
	for _, x := range []float64{a, b, step} {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("grid %v:%v:%v: every number must be finite", a, b, step)
		}
	}
	if step <= 0 {
		return nil, fmt.Errorf("grid %v:%v:%v: the step must be positive", a, b, step)
	}
	if b < a {
		return nil, fmt.Errorf("grid %v:%v:%v: the end %v is below the start %v", a, b, step, b, a)
	}
	span := (b - a) / step
	if span+1 > MaxPoints {
		return nil, fmt.Errorf("grid %v:%v:%v has %.0f points, more than %d: use a larger step", a, b, step, math.Floor(span+1e-9)+1, MaxPoints)
	}
	n := int(math.Floor(span+1e-9)) + 1
	vals := make([]any, n)
	for i := range n {
		x := a + float64(i)*step
		x, _ = strconv.ParseFloat(strconv.FormatFloat(x, 'g', 12, 64), 64)
		if x == 0 {
			x = 0 // no -0
		}
		vals[i] = x
	}
	return vals, nil
}

// splitList splits at commas outside double quotes, braces, brackets and
// parentheses (lognormal(20ms, 80ms) is one value).
func splitList(s string) ([]string, error) {
	var items []string
	depth, quoted, escaped, start := 0, false, false, 0
	for i, r := range s {
		switch {
		case escaped:
			escaped = false
		case quoted && r == '\\':
			escaped = true
		case r == '"':
			quoted = !quoted
		case quoted:
		case r == '{' || r == '[' || r == '(':
			depth++
		case r == '}' || r == ']' || r == ')':
			depth--
		case r == ',' && depth == 0:
			items = append(items, s[start:i])
			start = i + 1
		}
	}
	if quoted {
		return nil, fmt.Errorf("%s: a double quote is not closed", s)
	}
	if depth != 0 {
		return nil, fmt.Errorf("%s: braces or brackets do not match", s)
	}
	items = append(items, s[start:])
	for i, it := range items {
		items[i] = strings.TrimSpace(it)
		if items[i] == "" {
			return nil, fmt.Errorf("%s: value %d is empty", s, i+1)
		}
	}
	return items, nil
}

// parseValue reads one list item.
func parseValue(s string) (any, error) {
	switch s {
	case "true":
		return true, nil
	case "false":
		return false, nil
	case "null":
		return nil, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
		return f, nil
	}
	if s[0] == '"' || s[0] == '{' || s[0] == '[' {
		var v any
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			return nil, fmt.Errorf("%s is not valid JSON: %w", s, err)
		}
		return v, nil
	}
	return s, nil
}

// parsePath reads a.b[0].c.
func parsePath(path string) ([]segment, error) {
	var segs []segment
	for part := range strings.SplitSeq(path, ".") {
		name, rest, _ := strings.Cut(part, "[")
		if name == "" || strings.ContainsAny(name, "]= ") {
			return nil, fmt.Errorf("path %q: %q is not a field name; write fields with dots and indexes in brackets, such as analysis.metrics[0].thresholdRange.min", path, part)
		}
		segs = append(segs, segment{key: name})
		if part == name {
			continue
		}
		rest = "[" + rest
		for rest != "" {
			idx, tail, ok := strings.Cut(rest[1:], "]")
			n, err := strconv.Atoi(idx)
			if rest[0] != '[' || !ok || err != nil || n < 0 {
				return nil, fmt.Errorf("path %q: %q: an index is a whole number in brackets, such as metrics[0]", path, part)
			}
			segs = append(segs, segment{index: n})
			rest = tail
		}
	}
	return segs, nil
}

// formatPath writes segs back as a path.
func formatPath(segs []segment) string {
	var b strings.Builder
	for i, s := range segs {
		switch {
		case s.key == "":
			fmt.Fprintf(&b, "[%d]", s.index)
		case i > 0:
			b.WriteString("." + s.key)
		default:
			b.WriteString(s.key)
		}
	}
	return b.String()
}

// set puts val at segs in a generic JSON tree, creating intermediate
// objects where the path goes through an absent field.
func set(root map[string]any, segs []segment, val any) error {
	var cur any = root
	for i, s := range segs {
		last := i == len(segs)-1
		here := formatPath(segs[:i])
		if s.key != "" {
			obj, ok := cur.(map[string]any)
			if !ok {
				return fmt.Errorf("%s is %s, not an object with field %s", here, describe(cur), s.key)
			}
			if last {
				obj[s.key] = val
				return nil
			}
			next := obj[s.key]
			if next == nil {
				if segs[i+1].key == "" {
					return fmt.Errorf("%s: index %d is beyond the end of the list (the list is empty)", formatPath(segs[:i+2]), segs[i+1].index)
				}
				next = map[string]any{}
				obj[s.key] = next
			}
			cur = next
			continue
		}
		list, ok := cur.([]any)
		if !ok {
			return fmt.Errorf("%s is %s, not a list", here, describe(cur))
		}
		if s.index >= len(list) {
			return fmt.Errorf("%s: index %d is beyond the end of the list (%d items)", formatPath(segs[:i+1]), s.index, len(list))
		}
		if last {
			list[s.index] = val
			return nil
		}
		if list[s.index] == nil {
			if segs[i+1].key == "" {
				return fmt.Errorf("%s: index %d is beyond the end of the list (the list is empty)", formatPath(segs[:i+2]), segs[i+1].index)
			}
			list[s.index] = map[string]any{}
		}
		cur = list[s.index]
	}
	return nil
}

func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", x)
	case json.Number, float64:
		return fmt.Sprintf("the number %v", x)
	case bool:
		return strconv.FormatBool(x)
	case []any:
		return "a list"
	}
	return fmt.Sprintf("%v", v)
}

// FormatValue writes a varied value as on the command line.
func FormatValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case string:
		return x
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// Apply returns base with varies[i] set to values[i], parsed and validated
// exactly as a scenario file is (unknown fields, types, Flagger's rules).
func Apply(base *scenario.Scenario, varies []Vary, values []any) (*scenario.Scenario, error) {
	doc, err := json.Marshal(base)
	if err != nil {
		return nil, fmt.Errorf("encode the scenario: %w", err)
	}
	return apply(doc, varies, values)
}

// apply sets the values in doc, the scenario's JSON, and parses it.
func apply(doc []byte, varies []Vary, values []any) (*scenario.Scenario, error) {
	if len(values) != len(varies) {
		return nil, fmt.Errorf("sweep: %d values for %d varies", len(values), len(varies))
	}
	name := func() string {
		parts := make([]string, len(varies))
		for i, v := range varies {
			parts[i] = v.Path + "=" + FormatValue(values[i])
		}
		return strings.Join(parts, " --vary ")
	}
	var root map[string]any
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("decode the scenario: %w", err)
	}
	for i, v := range varies {
		segs := v.segs
		if segs == nil {
			var err error
			if segs, err = parsePath(v.Path); err != nil {
				return nil, &VaryError{Vary: name(), Err: err}
			}
		}
		if err := set(root, segs, values[i]); err != nil {
			return nil, &VaryError{Vary: name(), Err: err}
		}
	}
	out, err := json.Marshal(root)
	if err != nil {
		return nil, &VaryError{Vary: name(), Err: fmt.Errorf("encode: %w", err)}
	}
	s, err := scenario.Parse(out)
	if err != nil {
		return nil, &VaryError{Vary: name(), Err: err}
	}
	return s, nil
}
