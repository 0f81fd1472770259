package behavior

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// sampleStatuses draws n outcomes of a profile holding only e and counts
// the statuses (0 = no injected error).
func sampleStatuses(t *testing.T, e Errors, n int) map[int]int {
	t.Helper()
	m, err := Profile{Errors: &e}.Compile()
	if err != nil {
		t.Fatalf("%s: Compile: %v", e, err)
	}
	r := newRand()
	counts := map[int]int{}
	for range n {
		counts[m.Sample(r).Status]++
	}
	return counts
}

func TestErrorsSampling(t *testing.T) {
	tests := []struct {
		name string
		e    func(t *testing.T) Errors
		want map[int]float64 // probability of each status; 0 = none
	}{
		{"short form", mustErrors("503:0.2,500:0.1"), map[int]float64{503: 0.2, 500: 0.1, 0: 0.7}},
		{"percent", mustErrors("503:20%,429:5%"), map[int]float64{503: 0.2, 429: 0.05, 0: 0.75}},
		{"every request", mustErrors("503"), map[int]float64{503: 1}},
		{"object form, relative weights", func(*testing.T) Errors {
			return Errors{Rate: 0.2, Codes: map[int]float64{503: 3, 500: 1}}
		}, map[int]float64{503: 0.15, 500: 0.05, 0: 0.8}},
		{"no codes means 500", func(*testing.T) Errors { return Errors{Rate: 0.3} }, map[int]float64{500: 0.3, 0: 0.7}},
		{"rate 0", func(*testing.T) Errors { return Errors{Rate: 0, Codes: map[int]float64{503: 1}} }, map[int]float64{0: 1}},
		{"zero-weight code never drawn", func(*testing.T) Errors {
			return Errors{Rate: 0.5, Codes: map[int]float64{503: 1, 500: 0}}
		}, map[int]float64{503: 0.5, 0: 0.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := tt.e(t)
			counts := sampleStatuses(t, e, nSamples)
			for code, n := range counts {
				if _, ok := tt.want[code]; !ok {
					t.Errorf("status %d drawn %d times, not in the mix", code, n)
				}
			}
			for code, p := range tt.want {
				checkFraction(t, "status "+itoa(code), counts[code], nSamples, p)
				if code != 0 {
					if got := e.Probability(code); math.Abs(got-p) > 1e-12 {
						t.Errorf("Probability(%d) = %v, want %v", code, got, p)
					}
				}
			}
			if got := e.Probability(418); got != 0 {
				t.Errorf("Probability(418) = %v, want 0", got)
			}
		})
	}
}

func mustErrors(s string) func(t *testing.T) Errors {
	return func(t *testing.T) Errors {
		t.Helper()
		e, err := ParseErrors(s)
		if err != nil {
			t.Fatalf("ParseErrors(%q): %v", s, err)
		}
		return e
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestParseErrorsGood(t *testing.T) {
	tests := []struct {
		in   string
		rate float64
		p    map[int]float64 // absolute probability per code
		str  string
	}{
		{"503", 1, map[int]float64{503: 1}, "503:1"},
		{" 503 ", 1, map[int]float64{503: 1}, "503:1"},
		{"503:0.2,500:0.1", 0.3, map[int]float64{503: 0.2, 500: 0.1}, "500:0.1,503:0.2"},
		{"503:20%", 0.2, map[int]float64{503: 0.2}, "503:0.2"},
		{" 503 : 0.5 , 500 : 25% ", 0.75, map[int]float64{503: 0.5, 500: 0.25}, "500:0.25,503:0.5"},
		// The same code twice adds up.
		{"503:0.1,503:0.1", 0.2, map[int]float64{503: 0.2}, "503:0.2"},
		{"503:0.5,500:0", 0.5, map[int]float64{503: 0.5, 500: 0}, "500:0,503:0.5"},
		{"429:1", 1, map[int]float64{429: 1}, "429:1"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			e, err := ParseErrors(tt.in)
			if err != nil {
				t.Fatalf("ParseErrors: %v", err)
			}
			if math.Abs(e.Rate-tt.rate) > 1e-12 {
				t.Errorf("Rate = %v, want %v", e.Rate, tt.rate)
			}
			for code, p := range tt.p {
				if got := e.Probability(code); math.Abs(got-p) > 1e-12 {
					t.Errorf("Probability(%d) = %v, want %v", code, got, p)
				}
			}
			if len(e.Codes) != len(tt.p) {
				t.Errorf("Codes = %v, want the codes of %v", e.Codes, tt.p)
			}
			if got := e.String(); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
			// Round trip: String parses back to the same probabilities.
			back, err := ParseErrors(e.String())
			if err != nil {
				t.Fatalf("ParseErrors(String()=%q): %v", e.String(), err)
			}
			for code := range tt.p {
				if math.Abs(back.Probability(code)-e.Probability(code)) > 1e-9 {
					t.Errorf("round trip: P(%d) = %v, want %v", code, back.Probability(code), e.Probability(code))
				}
			}
			// The JSON string form is the same.
			var viaJSON Errors
			b, _ := json.Marshal(tt.in)
			if err := json.Unmarshal(b, &viaJSON); err != nil {
				t.Fatalf("Unmarshal(%s): %v", b, err)
			}
			if viaJSON.String() != e.String() {
				t.Errorf("JSON string form: %q, want %q", viaJSON.String(), e.String())
			}
		})
	}
}

func TestParseErrorsBad(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", []string{"empty list", "503:0.2"}},
		{"abc", []string{"value:probability", "503:0.2"}},
		{"503:1.5", []string{"outside 0..1"}},
		{"503:-0.1", []string{"outside 0..1"}},
		{"503:lots", []string{"not a probability", "20%"}},
		{"50x:0.1", []string{"not an HTTP status code"}},
		{"503:0.6,500:0.6", []string{"rate", "between 0 and 1", "1.2"}},
		{"99:0.1", []string{"codes.99", "between 100 and 599"}},
		{"700", []string{"codes.700", "between 100 and 599"}},
		{"0", []string{"codes.0"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			e, err := ParseErrors(tt.in)
			if err == nil {
				t.Fatalf("ParseErrors(%q) = %v, want an error", tt.in, e)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestParseErrorsFloatSum: probabilities that add up to exactly 1 on paper
// must not be refused because their float64 sum is 1.0000000000000002
// (Errors.Validate allows 1+1e-9, as the mix and fault checks do).
func TestParseErrorsFloatSum(t *testing.T) {
	for _, in := range []string{"503:0.33,500:0.56,502:0.11", "503:0.34,500:0.55,502:0.11", "503:0.7,500:0.3"} {
		e, err := ParseErrors(in)
		if err != nil {
			t.Fatalf("ParseErrors(%q): %v", in, err)
		}
		checkFraction(t, in+": errors", nSamples-sampleStatuses(t, e, nSamples)[0], nSamples, 1)
	}
}

// TestErrorsStringTinyProbability: String must not round a small but
// positive probability to 0, which ParseErrors then refuses.
func TestErrorsStringTinyProbability(t *testing.T) {
	e, err := ParseErrors("503:1e-10")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseErrors(e.String()); err != nil {
		t.Errorf("String() of 503:1e-10 is %q, which does not parse back: %v", e.String(), err)
	}
	if back, _ := ParseErrors(e.String()); back.Probability(503) <= 0 {
		t.Errorf("round trip through %q lost the probability", e.String())
	}
}

func TestErrorsJSONObject(t *testing.T) {
	var e Errors
	if err := json.Unmarshal([]byte(`{"rate":0.1,"codes":{"503":3,"500":1}}`), &e); err != nil {
		t.Fatal(err)
	}
	if math.Abs(e.Probability(503)-0.075) > 1e-12 || math.Abs(e.Probability(500)-0.025) > 1e-12 {
		t.Errorf("P(503) = %v, P(500) = %v; want 0.075, 0.025", e.Probability(503), e.Probability(500))
	}
	for in, want := range map[string]string{
		`{"rate":0.1,"code":{"503":1}}`: "code",
		`{"rate":"lots"}`:               "rate",
		`"503:2"`:                       "outside 0..1",
	} {
		var e Errors
		err := json.Unmarshal([]byte(in), &e)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Unmarshal(%s) error = %v, want one mentioning %q", in, err, want)
		}
	}
}

func TestErrorsValidate(t *testing.T) {
	tests := []struct {
		e      Errors
		fields []string
	}{
		{Errors{Rate: 0.1}, nil},
		{Errors{Rate: 1, Codes: map[int]float64{503: 1}}, nil},
		{Errors{Rate: 2}, []string{"rate"}},
		{Errors{Rate: -0.1}, []string{"rate"}},
		{Errors{Rate: math.NaN()}, []string{"rate"}},
		{Errors{Rate: 0.1, Codes: map[int]float64{42: 1}}, []string{"codes.42"}},
		{Errors{Rate: 0.1, Codes: map[int]float64{503: -1, 500: 2}}, []string{"codes.503"}},
		{Errors{Rate: 0.1, Codes: map[int]float64{503: math.Inf(1)}}, []string{"codes.503"}},
		{Errors{Rate: 0.1, Codes: map[int]float64{503: 0}}, []string{"codes"}},
		{Errors{Rate: 5, Codes: map[int]float64{600: 1}}, []string{"rate", "codes.600"}},
	}
	for _, tt := range tests {
		errs := tt.e.Validate()
		var got []string
		for _, fe := range errs {
			got = append(got, fe.Field)
		}
		if strings.Join(got, " ") != strings.Join(tt.fields, " ") {
			t.Errorf("%+v: Validate fields %q, want %q (%v)", tt.e, got, tt.fields, errs)
		}
	}
}

// TestErrorsZeroRate: "503:0" means "never", and is what String prints for
// a zero rate, so it must parse back.
func TestErrorsZeroRate(t *testing.T) {
	for _, in := range []string{"503:0", "503:0,500:0"} {
		e, err := ParseErrors(in)
		if err != nil {
			t.Fatalf("ParseErrors(%q): %v", in, err)
		}
		if e.Rate != 0 || e.Probability(503) != 0 {
			t.Errorf("ParseErrors(%q) = rate %v, want 0", in, e.Rate)
		}
		if _, err := ParseErrors(e.String()); err != nil {
			t.Errorf("%q does not parse back: %v", e.String(), err)
		}
	}
	if _, err := ParseErrors(Errors{}.String()); err != nil {
		t.Errorf("the zero Errors prints %q, which does not parse: %v", Errors{}.String(), err)
	}
}
