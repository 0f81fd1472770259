// Package strictyaml decodes YAML or JSON documents strictly into Go structs
// and reports every problem at once, each naming the field's path
// (routes[1].profile.errors.rate) and, where it can, the fix ("did you mean
// latency?"). encoding/json stops at the first problem and does not name the
// path of an unknown field; configs written by hand deserve better.
package strictyaml

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// FieldError is a problem with one field, named by its path from the
// document's root.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e FieldError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// FieldErrors is a list of field problems; it is an error when not empty.
type FieldErrors []FieldError

// Error lists the problems one to a line, so that a person reading a
// terminal or a log sees each field on its own.
func (es FieldErrors) Error() string {
	if len(es) == 1 {
		return es[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d problems:", len(es))
	for _, e := range es {
		b.WriteString("\n  ")
		b.WriteString(e.Error())
	}
	return b.String()
}

// Err returns es as an error, or nil when it is empty.
func (es FieldErrors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// Prefix returns errs with prefix put before every field path.
func Prefix(prefix string, errs []FieldError) []FieldError {
	out := make([]FieldError, len(errs))
	for i, e := range errs {
		switch {
		case e.Field == "":
			e.Field = prefix
		case prefix == "" || strings.HasPrefix(e.Field, "["):
			e.Field = prefix + e.Field
		default:
			e.Field = prefix + "." + e.Field
		}
		out[i] = e
	}
	return out
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// Decode reads a YAML (or JSON) document into out, a pointer. Unknown fields,
// values of the wrong type and values a field's own UnmarshalJSON refuses
// are all reported, as FieldErrors. Duplicate keys are refused too.
func Decode(data []byte, out any) error {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return fmt.Errorf("not valid YAML or JSON: %w", err)
	}
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		js = []byte("{}")
	}
	var tree any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&tree); err != nil {
		return fmt.Errorf("not valid YAML or JSON: %w", err)
	}
	rv := reflect.ValueOf(out)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("strictyaml: Decode needs a non-nil pointer, got %T", out)
	}
	var errs FieldErrors
	check("", tree, rv.Type().Elem(), &errs)
	if len(errs) > 0 {
		return errs
	}
	if err := json.Unmarshal(js, out); err != nil {
		return FieldErrors{{Message: err.Error()}}
	}
	return nil
}

// check walks the generic tree beside the Go type and records problems.
func check(path string, v any, t reflect.Type, errs *FieldErrors) {
	if v == nil {
		return // null leaves the field at its zero value, as encoding/json does
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		// A type with its own decoder may still be an object with known
		// fields: check those first, for paths and suggestions that
		// encoding/json (which also ignores case) would not give.
		if obj, ok := v.(map[string]any); ok && t.Kind() == reflect.Struct {
			before := len(*errs)
			checkStruct(path, obj, t, errs)
			if len(*errs) > before {
				return
			}
		}
		raw, _ := json.Marshal(v)
		target := reflect.New(t).Interface().(json.Unmarshaler)
		if err := target.UnmarshalJSON(raw); err != nil {
			// Nested strict decoders wrap encoding/json's messages; keep
			// only what is meant for a person.
			*errs = append(*errs, FieldError{path, cleanJSONError(err)})
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			*errs = append(*errs, FieldError{path, "must be an object (key: value), got " + describe(v)})
			return
		}
		checkStruct(path, obj, t, errs)
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			*errs = append(*errs, FieldError{path, "must be an object (key: value), got " + describe(v)})
			return
		}
		for _, k := range sortedKeys(obj) {
			switch t.Key().Kind() {
			case reflect.Int, reflect.Int64, reflect.Int32:
				if _, err := strconv.Atoi(k); err != nil {
					*errs = append(*errs, FieldError{join(path, k), "key must be a whole number"})
					continue
				}
			}
			check(join(path, k), obj[k], t.Elem(), errs)
		}
	case reflect.Slice, reflect.Array:
		list, ok := v.([]any)
		if !ok {
			*errs = append(*errs, FieldError{path, "must be a list, got " + describe(v)})
			return
		}
		for i, item := range list {
			check(fmt.Sprintf("%s[%d]", path, i), item, t.Elem(), errs)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			*errs = append(*errs, FieldError{path, "must be a string, got " + describe(v) + " (quote it)"})
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			*errs = append(*errs, FieldError{path, "must be true or false, got " + describe(v)})
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			*errs = append(*errs, FieldError{path, "must be a whole number, got " + describe(v)})
			return
		}
		if _, err := strconv.ParseInt(n.String(), 10, t.Bits()); err != nil {
			msg := "must be a whole number, got " + n.String()
			if errors.Is(err, strconv.ErrRange) {
				msg = fmt.Sprintf("must be a whole number from %d to %d, got %s", -(int64(1) << (t.Bits() - 1)), int64(1)<<(t.Bits()-1)-1, n)
			}
			*errs = append(*errs, FieldError{path, msg})
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if !ok {
			*errs = append(*errs, FieldError{path, "must be a whole number, got " + describe(v)})
			return
		}
		if strings.HasPrefix(n.String(), "-") {
			*errs = append(*errs, FieldError{path, "must not be negative, got " + n.String()})
		} else if _, err := strconv.ParseUint(n.String(), 10, t.Bits()); err != nil {
			msg := "must be a whole number, got " + n.String()
			if errors.Is(err, strconv.ErrRange) {
				msg = fmt.Sprintf("must be a whole number from 0 to %d, got %s", uint64(math.MaxUint64)>>(64-t.Bits()), n)
			}
			*errs = append(*errs, FieldError{path, msg})
		}
	case reflect.Float32, reflect.Float64:
		if _, ok := v.(json.Number); !ok {
			*errs = append(*errs, FieldError{path, "must be a number, got " + describe(v)})
		}
	}
}

// checkStruct checks an object's keys against a struct's JSON fields.
func checkStruct(path string, obj map[string]any, t reflect.Type, errs *FieldErrors) {
	fields := jsonFields(t)
	for _, k := range sortedKeys(obj) {
		f, ok := fields[k]
		if !ok {
			*errs = append(*errs, FieldError{join(path, k), unknownField(k, fields)})
			continue
		}
		check(join(path, k), obj[k], f.Type, errs)
	}
}

func cleanJSONError(err error) string {
	msg := err.Error()
	msg = strings.ReplaceAll(msg, "json: unknown field ", "unknown field ")
	return msg
}

func join(path, key string) string {
	if strings.ContainsAny(key, ". []") {
		key = strconv.Quote(key)
		return path + "[" + key + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", x)
	case json.Number:
		return "the number " + x.String()
	case bool:
		return strconv.FormatBool(x)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%v", v)
}

// jsonFields maps the JSON names of t's fields, following embedded structs
// the way encoding/json does.
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					if _, ok := out[k]; !ok {
						out[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f
	}
	return out
}

func unknownField(k string, fields map[string]reflect.StructField) string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	best, bestDist := "", 3
	for _, n := range names {
		if strings.EqualFold(n, k) {
			return fmt.Sprintf("unknown field: did you mean %s? (names are case-sensitive)", n)
		}
		if d := editDistance(strings.ToLower(k), strings.ToLower(n)); d < bestDist {
			best, bestDist = n, d
		}
	}
	if best != "" {
		return fmt.Sprintf("unknown field: did you mean %s?", best)
	}
	return "unknown field; known fields here: " + strings.Join(names, ", ")
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
