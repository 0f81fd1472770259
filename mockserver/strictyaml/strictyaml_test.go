package strictyaml

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// regressed fails a test whose behaviour was once a bug: what describes
// the old bug, so a failure says what came back.
func regressed(t *testing.T, what string) {
	t.Helper()
	t.Error("regression: " + what)
}

type item struct {
	Name  string  `json:"name"`
	Count int     `json:"count,omitempty"`
	Ratio float64 `json:"ratio"`
	On    bool    `json:"enabled"` // not "on": YAML 1.1 reads the key on as true
}

type Base struct {
	Shared string `json:"shared"`
	Title  string `json:"title"` // shadowed by doc.Title
}

type Tagged struct {
	Deep string `json:"deep"`
}

// celsius checks its own value, as the behaviour types do.
type celsius float64

func (c *celsius) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("must be degrees, such as 21.5")
	}
	if f < -273.15 {
		return fmt.Errorf("%v is below absolute zero", f)
	}
	*c = celsius(f)
	return nil
}

// strictInner fails the way a nested strict decoder does.
type strictInner struct{ A int }

func (s *strictInner) UnmarshalJSON(b []byte) error {
	type plain strictInner
	var p plain
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("must be {A: n}: %w", err)
	}
	*s = strictInner(p)
	return nil
}

type doc struct {
	Base
	*Tagged
	Title      string             `json:"title"`
	Items      []item             `json:"items"`
	ByName     map[string]item    `json:"byName"`
	ByCode     map[int]string     `json:"byCode"`
	Temp       *celsius           `json:"temp"`
	Temps      []celsius          `json:"temps"`
	TempByName map[string]celsius `json:"tempByName"`
	Inner      strictInner        `json:"inner"`
	Ptr        *item              `json:"ptr"`
	Seed       uint64             `json:"seed"`
	Small      int8               `json:"small"`
	Pair       [2]int             `json:"pair"`
	Any        any                `json:"any"`
	Ignored    string             `json:"-"`
	NoTag      string
	Named      Base `json:"named"`
	unexported string
}

func decode(t *testing.T, src string) (doc, error) {
	t.Helper()
	var d doc
	err := Decode([]byte(src), &d)
	return d, err
}

func TestDecodeGood(t *testing.T) {
	d, err := decode(t, `
title: hello
shared: from the embedded struct
deep: from an embedded pointer
items:
- {name: a, count: 2, ratio: 0.5, enabled: true}
- name: b
byName:
  x: {name: x, ratio: 1}
byCode: {200: ok, 503: unavailable}
temp: 21.5
temps: [1, -2.5]
tempByName: {kitchen: 19}
inner: {A: 3}
ptr: {name: p}
seed: 9223372036854775807
small: -128
pair: [1, 2]
any: {whatever: [1, "two"]}
NoTag: yes-string
named: {shared: s, title: t}
`)
	if err != nil {
		t.Fatal(err)
	}
	if d.Title != "hello" || d.Shared != "from the embedded struct" || d.Tagged == nil || d.Deep != "from an embedded pointer" ||
		len(d.Items) != 2 || d.Items[0] != (item{"a", 2, 0.5, true}) || d.Items[1].Name != "b" ||
		d.ByName["x"].Ratio != 1 || d.ByCode[503] != "unavailable" || *d.Temp != 21.5 || d.Temps[1] != -2.5 ||
		d.TempByName["kitchen"] != 19 || d.Inner.A != 3 || d.Ptr.Name != "p" || d.Seed != 1<<63-1 || d.Small != -128 ||
		d.Pair != [2]int{1, 2} || d.Any == nil || d.NoTag != "yes-string" || d.Named.Title != "t" || d.Base.Title != "" {
		t.Errorf("decoded %+v", d)
	}
}

func TestDecodeJSON(t *testing.T) {
	d, err := decode(t, `{"title": "j", "items": [{"name": "a"}], "byCode": {"404": "nf"}}`)
	if err != nil || d.Title != "j" || d.Items[0].Name != "a" || d.ByCode[404] != "nf" {
		t.Errorf("%+v, %v", d, err)
	}
}

func TestDecodeNull(t *testing.T) {
	for _, src := range []string{"", "null", "~", "# only a comment", "{}"} {
		d, err := decode(t, src)
		if err != nil || d.Title != "" || d.Items != nil {
			t.Errorf("%q: %+v, %v", src, d, err)
		}
	}
	d, err := decode(t, `
title: null
items: [null, {name: b}]
ptr: null
temp: null
temps: [null]
byName: {a: null}
inner: null
`)
	if err != nil {
		t.Fatalf("nulls refused: %v", err)
	}
	if d.Title != "" || len(d.Items) != 2 || d.Items[0] != (item{}) || d.Ptr != nil || d.Temp != nil ||
		len(d.Temps) != 1 || d.Temps[0] != 0 || len(d.ByName) != 1 {
		t.Errorf("decoded %+v", d)
	}
	// null leaves a value already there alone, as encoding/json does.
	pre := doc{Title: "kept"}
	if err := Decode([]byte("title: null"), &pre); err != nil || pre.Title != "kept" {
		t.Errorf("title: null over a set value: %q, %v", pre.Title, err)
	}
}

// fieldErrors decodes src and returns its field errors, failing when the
// error is of another kind.
func fieldErrors(t *testing.T, src string) FieldErrors {
	t.Helper()
	_, err := decode(t, src)
	if err == nil {
		t.Fatalf("%q: accepted", src)
	}
	var fe FieldErrors
	if !errors.As(err, &fe) {
		t.Fatalf("%q: error %q (%T) is not FieldErrors", src, err, err)
	}
	return fe
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, src     string
		field, detail string
	}{
		// unknown fields
		{"typo", "titel: x", "titel", "unknown field: did you mean title?"},
		{"case", "TITLE: x", "TITLE", "unknown field: did you mean title? (names are case-sensitive)"},
		{"case of embedded", "Shared: x", "Shared", "did you mean shared? (names are case-sensitive)"},
		{"nothing close", "qqqqqqqq: 1", "qqqqqqqq", "unknown field; known fields here: NoTag, any, byCode, byName, deep, inner, items, named, pair, ptr, seed, shared, small, temp, tempByName, temps, title"},
		{"ignored field", "Ignored: x", "Ignored", "unknown field"},
		{"dash field", "'-': x", "-", "unknown field"},
		{"unexported", "unexported: x", "unexported", "unknown field"},
		{"in a list", "items: [{name: a}, {nmae: b}]", "items[1].nmae", "did you mean name?"},
		{"in a map", "byName: {a: {cont: 1}}", "byName.a.cont", "did you mean count?"},
		{"map key with a dot", `byName: {"a.b": {nam: x}}`, `byName["a.b"].nam`, "did you mean name?"},
		{"map key with a space", `byName: {"a b": {nam: x}}`, `byName["a b"].nam`, "did you mean name?"},
		{"behind a pointer", "ptr: {ratoi: 1}", "ptr.ratoi", "did you mean ratio?"},
		{"in a named struct", "named: {sharde: x}", "named.sharde", "did you mean shared?"},
		// wrong types
		{"string for number", `items: [{count: "3"}]`, "items[0].count", `must be a whole number, got the string "3"`},
		{"fraction for int", "items: [{count: 1.5}]", "items[0].count", "must be a whole number, got 1.5"},
		{"number for string", "title: 5", "title", "must be a string, got the number 5 (quote it)"},
		{"bool for string", "title: true", "title", "must be a string, got true"},
		{"list for string", "title: [a]", "title", "must be a string, got a list"},
		{"number for bool", "items: [{enabled: 1}]", "items[0].enabled", "must be true or false, got the number 1"},
		{"string for float", "items: [{ratio: half}]", "items[0].ratio", `must be a number, got the string "half"`},
		{"object for list", "items: {name: a}", "items", "must be a list, got an object"},
		{"list for map", "byName: [a]", "byName", "must be an object (key: value), got a list"},
		{"scalar for struct", "items: [5]", "items[0]", "must be an object (key: value), got the number 5"},
		{"scalar for pointer struct", "ptr: x", "ptr", "must be an object"},
		{"negative unsigned", "seed: -1", "seed", "must not be negative, got -1"},
		{"array element", "pair: [1, x]", "pair[1]", "must be a whole number"},
		{"map value", "byCode: {200: 5}", "byCode.200", "must be a string"},
		// int map keys
		{"int key", "byCode: {200: ok, abc: x}", "byCode.abc", "key must be a whole number"},
		// custom unmarshalers
		{"unmarshaler", "temp: -300", "temp", "-300 is below absolute zero"},
		{"unmarshaler type", "temp: hot", "temp", "must be degrees, such as 21.5"},
		{"unmarshaler in a list", "temps: [1, -500]", "temps[1]", "below absolute zero"},
		{"unmarshaler in a map", "tempByName: {attic: -999}", "tempByName.attic", "below absolute zero"},
		{"nested strict decoder", "inner: {A: 1, B: 2}", "inner.B", "did you mean A?"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fe := fieldErrors(t, tc.src)
			if len(fe) != 1 {
				t.Fatalf("%d errors, want 1: %v", len(fe), fe)
			}
			if fe[0].Field != tc.field || !strings.Contains(fe[0].Message, tc.detail) {
				t.Errorf("got %s: %q\nwant %s: …%q…", fe[0].Field, fe[0].Message, tc.field, tc.detail)
			}
			if !strings.HasPrefix(fe.Error(), tc.field+": ") {
				t.Errorf("Error() = %q does not start with the path", fe.Error())
			}
		})
	}
}

func TestDecodeSeveralErrors(t *testing.T) {
	fe := fieldErrors(t, `
titel: x
temp: -300
items:
- {name: 1, count: many}
- {nmae: b}
byCode: {x: a}
`)
	var fields []string
	for _, e := range fe {
		fields = append(fields, e.Field)
	}
	// Keys are visited in sorted order, depth first.
	want := []string{"byCode.x", "items[0].count", "items[0].name", "items[1].nmae", "temp", "titel"}
	if !slices.Equal(fields, want) {
		t.Errorf("fields %q, want %q", fields, want)
	}
	if got := strings.Count(fe.Error(), "\n  "); got != len(want) || !strings.HasPrefix(fe.Error(), fmt.Sprintf("%d problems:", len(want))) {
		t.Errorf("Error() = %q, want \"%d problems:\" and one indented line each", fe.Error(), len(want))
	}
}

func TestDecodeDuplicateKeys(t *testing.T) {
	for _, src := range []string{
		"title: a\ntitle: b",
		"items:\n- name: a\n  name: b",
		"byName: {x: {}, x: {}}",
		`{"title": "a", "title": "b"}`,
	} {
		_, err := decode(t, src)
		if err == nil {
			t.Errorf("%q: duplicate key accepted", src)
			continue
		}
		var fe FieldErrors
		if errors.As(err, &fe) || !strings.Contains(err.Error(), "not valid YAML or JSON") || !strings.Contains(err.Error(), "already set") {
			t.Errorf("%q: error %q", src, err)
		}
	}
}

func TestDecodeSyntaxAndTarget(t *testing.T) {
	if _, err := decode(t, "title: [unclosed"); err == nil || !strings.Contains(err.Error(), "not valid YAML or JSON") {
		t.Errorf("syntax error: %v", err)
	}
	fe := fieldErrors(t, "- a\n- b")
	if len(fe) != 1 || fe[0].Field != "" || fe[0].Error() != "must be an object (key: value), got a list" {
		t.Errorf("a list document: %v", fe)
	}
	var d doc
	if err := Decode([]byte("title: x"), d); err == nil || !strings.Contains(err.Error(), "non-nil pointer") {
		t.Errorf("Decode into a value: %v", err)
	}
	if err := Decode([]byte("title: x"), (*doc)(nil)); err == nil {
		t.Error("Decode into a nil pointer: no error")
	}
	// Other targets than structs.
	var m map[string][]int
	if err := Decode([]byte("a: [1, 2]\nb: []"), &m); err != nil || len(m["a"]) != 2 {
		t.Errorf("map target: %v, %v", m, err)
	}
	var l []string
	if err := Decode([]byte("[a, 1]"), &l); err == nil {
		t.Error("a list with a number decoded into []string")
	}
}

// TestDecodeIntegerRange: a value that fits the field's type is accepted
// and one that does not is refused with its path.
func TestDecodeIntegerRange(t *testing.T) {
	t.Run("uint64 above MaxInt64", func(t *testing.T) {
		d, err := decode(t, "seed: 18446744073709551615")
		if err != nil {
			regressed(t, "strictyaml.go check: unsigned kinds are read with json.Number.Int64, so a uint64 above MaxInt64 is refused: "+err.Error())
		}
		if d.Seed != 1<<64-1 {
			t.Errorf("seed = %d", d.Seed)
		}
	})
	t.Run("int8 overflow", func(t *testing.T) {
		_, err := decode(t, "small: 300")
		var fe FieldErrors
		if !errors.As(err, &fe) || len(fe) != 1 {
			t.Fatalf("error %v", err)
		}
		if fe[0].Field != "small" {
			regressed(t, "strictyaml.go check: a whole number too large for a small int type passes the check and fails in json.Unmarshal, reported without a field path: "+err.Error())
		}
	})
}

func TestFieldErrors(t *testing.T) {
	if (FieldErrors{}).Err() != nil || FieldErrors(nil).Err() != nil {
		t.Error("an empty FieldErrors is an error")
	}
	es := FieldErrors{{Field: "a.b", Message: "bad"}, {Message: "worse"}}
	if err := es.Err(); err == nil || err.Error() != "2 problems:\n  a.b: bad\n  worse" {
		t.Errorf("Err() = %v", err)
	}
	var wrapped error = fmt.Errorf("ctx: %w", es.Err())
	var back FieldErrors
	if !errors.As(wrapped, &back) || len(back) != 2 {
		t.Error("FieldErrors is not found through wrapping")
	}
	b, _ := json.Marshal(es)
	if string(b) != `[{"field":"a.b","message":"bad"},{"field":"","message":"worse"}]` {
		t.Errorf("JSON %s", b)
	}
}

func TestPrefix(t *testing.T) {
	in := []FieldError{{Field: "", Message: "m"}, {Field: "x", Message: "m"}, {Field: "[2].y", Message: "m"}, {Field: "a.b", Message: "m"}}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"p", []string{"p", "p.x", "p[2].y", "p.a.b"}},
		{"routes[0]", []string{"routes[0]", "routes[0].x", "routes[0][2].y", "routes[0].a.b"}},
		{"", []string{"", "x", "[2].y", "a.b"}},
	}
	for _, tc := range tests {
		out := Prefix(tc.prefix, in)
		var got []string
		for _, e := range out {
			got = append(got, e.Field)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Prefix(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
	if in[1].Field != "x" {
		t.Error("Prefix changed its input")
	}
	if out := Prefix("p", nil); len(out) != 0 {
		t.Errorf("Prefix of nothing = %v", out)
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"abc", "", 3},
		{"latency", "latency", 0},
		{"latncy", "latency", 1},
		{"ltaency", "latency", 2},
		{"kitten", "sitting", 3},
	}
	for _, tc := range tests {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
