package behavior

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"

	"github.com/canarylab/canarylab/mockserver/strictyaml"
)

// FieldError is a validation error naming the field's path below the value
// validated (errors.rate); callers prefix the path of the value itself.
type FieldError = strictyaml.FieldError

// Prefix returns errs with prefix put before every field path.
func Prefix(prefix string, errs []FieldError) []FieldError { return strictyaml.Prefix(prefix, errs) }

// Errors injects HTTP error responses: with probability Rate a request is
// answered with a status drawn from Codes (relative weights; 500 when empty).
//
//	errors: {rate: 0.1, codes: {503: 1}}
//	errors: "503:0.2,500:0.1"      # short form: absolute probabilities
type Errors struct {
	Rate  float64         `json:"rate"`
	Codes map[int]float64 `json:"codes,omitempty"`
}

// UnmarshalJSON accepts the short string form or the object form.
func (e *Errors) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		parsed, err := ParseErrors(s)
		if err != nil {
			return err
		}
		*e = parsed
		return nil
	}
	type plain Errors
	var p plain
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("must be \"503:0.1\" or {rate: 0.1, codes: {503: 1}}: %w", err)
	}
	*e = Errors(p)
	return nil
}

// ParseErrors reads "503" (every request), "503:0.2,500:0.1" or "503:20%"
// (absolute probabilities per code).
func ParseErrors(s string) (Errors, error) {
	s = strings.TrimSpace(s)
	if code, err := strconv.Atoi(s); err == nil {
		e := Errors{Rate: 1, Codes: map[int]float64{code: 1}}
		return e, firstErr(e.Validate())
	}
	items, err := parseWeighted(s)
	if err != nil {
		return Errors{}, fmt.Errorf("status mix: %w", err)
	}
	e := Errors{Codes: map[int]float64{}}
	for _, it := range items {
		code, err := strconv.Atoi(it.key)
		if err != nil {
			return Errors{}, fmt.Errorf("status mix: %q is not an HTTP status code", it.key)
		}
		e.Codes[code] += it.weight
		e.Rate += it.weight
	}
	for c := range e.Codes {
		if e.Rate > 0 {
			e.Codes[c] /= e.Rate
		} else {
			e.Codes[c] = 1 // "503:0": never, but the code is kept
		}
	}
	return e, firstErr(e.Validate())
}

// String renders the errors in the short form (absolute probabilities).
func (e Errors) String() string {
	codes, weights := e.normalized()
	parts := make([]string, len(codes))
	for i, c := range codes {
		parts[i] = fmt.Sprintf("%d:%s", c, strconv.FormatFloat(e.Rate*weights[i], 'g', 10, 64))
	}
	return strings.Join(parts, ",")
}

// Validate checks the rate and the codes.
func (e Errors) Validate() []FieldError {
	var errs []FieldError
	if e.Rate < 0 || e.Rate > 1+1e-9 || math.IsNaN(e.Rate) {
		errs = append(errs, FieldError{Field: "rate", Message: fmt.Sprintf("must be a probability between 0 and 1 (0.1 = 10%% of requests), got %v", e.Rate)})
	}
	total := 0.0
	for _, c := range sortedCodes(e.Codes) {
		w := e.Codes[c]
		if c < 100 || c > 599 {
			errs = append(errs, FieldError{Field: fmt.Sprintf("codes.%d", c), Message: "must be an HTTP status code between 100 and 599"})
		}
		if w < 0 || math.IsNaN(w) || math.IsInf(w, 0) {
			errs = append(errs, FieldError{Field: fmt.Sprintf("codes.%d", c), Message: fmt.Sprintf("weight must be a non-negative number, got %v", w)})
		}
		total += w
	}
	if len(e.Codes) > 0 && total == 0 {
		errs = append(errs, FieldError{Field: "codes", Message: "weights are all 0: give at least one code a positive weight"})
	}
	return errs
}

func sortedCodes(m map[int]float64) []int {
	codes := make([]int, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	return codes
}

// normalized returns the codes in ascending order with weights summing to 1.
func (e Errors) normalized() ([]int, []float64) {
	if len(e.Codes) == 0 {
		return []int{500}, []float64{1}
	}
	codes := sortedCodes(e.Codes)
	total := 0.0
	for _, c := range codes {
		total += e.Codes[c]
	}
	w := make([]float64, len(codes))
	for i, c := range codes {
		w[i] = e.Codes[c] / total
	}
	return codes, w
}

// errorModel is a compiled Errors: cumulative absolute probabilities.
type errorModel struct {
	codes []int
	cum   []float64
}

func (e Errors) compile() (*errorModel, error) {
	if err := firstErr(e.Validate()); err != nil {
		return nil, err
	}
	codes, w := e.normalized()
	m := &errorModel{codes: codes, cum: make([]float64, len(codes))}
	sum := 0.0
	for i := range codes {
		sum += e.Rate * w[i]
		m.cum[i] = sum
	}
	return m, nil
}

// sample returns the injected status, or 0 for none.
func (m *errorModel) sample(r *rand.Rand) int {
	u := r.Float64()
	for i, c := range m.cum {
		if u < c {
			return m.codes[i]
		}
	}
	return 0
}

// Probability returns the probability that a request is answered with code.
func (e Errors) Probability(code int) float64 {
	codes, w := e.normalized()
	for i, c := range codes {
		if c == code {
			return e.Rate * w[i]
		}
	}
	return 0
}

func firstErr(errs []FieldError) error {
	if len(errs) == 0 {
		return nil
	}
	return errs[0]
}
