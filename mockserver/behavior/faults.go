package behavior

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// FaultKind names a connection-level fault.
type FaultKind uint8

// The connection faults, in the order their probabilities are laid out.
const (
	FaultNone FaultKind = iota
	// FaultReset aborts the connection with a TCP RST (SO_LINGER 0): the
	// client sees "connection reset by peer".
	FaultReset
	// FaultClose closes the connection cleanly without answering: the client
	// sees EOF where a response should be.
	FaultClose
	// FaultHang holds the request without answering until the client gives
	// up, or the fault's duration ends, then closes the connection.
	FaultHang
	// FaultSlowBody sends the headers at once and dribbles the body over the
	// fault's duration.
	FaultSlowBody
	// FaultTruncate declares the full Content-Length, sends only a fraction
	// of the body and closes the connection.
	FaultTruncate
	// NumFaultKinds is one past the last kind, for arrays indexed by kind.
	NumFaultKinds
)

// FaultKinds lists every fault kind but FaultNone.
var FaultKinds = []FaultKind{FaultReset, FaultClose, FaultHang, FaultSlowBody, FaultTruncate}

var faultNames = [...]string{"none", "reset", "close", "hang", "slow_body", "truncate"}

func (k FaultKind) String() string {
	if int(k) < len(faultNames) {
		return faultNames[k]
	}
	return "unknown"
}

// ParseFaultKind reads a fault name (slow_body, slowBody and slowbody are
// one).
func ParseFaultKind(s string) (FaultKind, error) {
	n := strings.ToLower(strings.ReplaceAll(strings.ReplaceAll(strings.TrimSpace(s), "_", ""), "-", ""))
	for _, k := range FaultKinds {
		if strings.ReplaceAll(k.String(), "_", "") == n {
			return k, nil
		}
	}
	return FaultNone, fmt.Errorf("unknown fault %q: use reset, close, hang, slowBody or truncate", s)
}

// Default fault parameters, used when a fault gives only its rate.
const (
	DefaultHangFor          = 30 * time.Second
	DefaultSlowBodyDuration = 5 * time.Second
	DefaultTruncateFraction = 0.5
)

// FaultSpec is the probability of one fault and its parameter. In a config
// file a bare number is the rate:
//
//	faults: {hang: 0.01}
//	faults: {hang: {rate: 0.01, duration: 10s}, truncate: {rate: 0.05, fraction: 0.2}}
type FaultSpec struct {
	Rate float64 `json:"rate"`
	// Duration bounds a hang (default 30s) or spreads a slow body (default 5s).
	Duration Duration `json:"duration,omitempty"`
	// Fraction of the body a truncated response sends (default 0.5).
	Fraction float64 `json:"fraction,omitempty"`
}

// UnmarshalJSON accepts a bare rate or the object form.
func (f *FaultSpec) UnmarshalJSON(b []byte) error {
	var rate float64
	if err := json.Unmarshal(b, &rate); err == nil {
		*f = FaultSpec{Rate: rate}
		return nil
	}
	type plain FaultSpec
	var p plain
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("must be a rate such as 0.01 or {rate: 0.01, duration: 10s}: %w", err)
	}
	*f = FaultSpec(p)
	return nil
}

// Faults are connection-level faults, each with its own probability; at
// most one happens to a request, so the rates sum to at most 1.
type Faults struct {
	Reset    *FaultSpec `json:"reset,omitempty"`
	Close    *FaultSpec `json:"close,omitempty"`
	Hang     *FaultSpec `json:"hang,omitempty"`
	SlowBody *FaultSpec `json:"slowBody,omitempty"`
	Truncate *FaultSpec `json:"truncate,omitempty"`
}

// UnmarshalJSON accepts the short string form or the object form.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		parsed, err := ParseFaults(s)
		if err != nil {
			return err
		}
		*f = parsed
		return nil
	}
	type plain Faults
	var p plain
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("must be \"reset:0.01,hang(10s):0.02\" or {reset: 0.01, hang: {rate: 0.02, duration: 10s}}: %w", err)
	}
	*f = Faults(p)
	return nil
}

func (f *Faults) slot(k FaultKind) **FaultSpec {
	switch k {
	case FaultReset:
		return &f.Reset
	case FaultClose:
		return &f.Close
	case FaultHang:
		return &f.Hang
	case FaultSlowBody:
		return &f.SlowBody
	case FaultTruncate:
		return &f.Truncate
	}
	return nil
}

// Spec returns the spec of one kind, or nil.
func (f Faults) Spec(k FaultKind) *FaultSpec {
	if s := f.slot(k); s != nil {
		return *s
	}
	return nil
}

func fieldName(k FaultKind) string {
	if k == FaultSlowBody {
		return "slowBody"
	}
	return k.String()
}

// ParseFaults reads "reset:0.01,close:1%,hang(10s):0.01,slowBody(5s):0.05,truncate(0.2):0.01".
func ParseFaults(s string) (Faults, error) {
	var f Faults
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, rate, ok := strings.Cut(part, ":")
		if !ok {
			return f, fmt.Errorf("fault %q must be kind:probability, such as reset:0.01 or hang(10s):0.02", part)
		}
		p, err := parseProbability(rate)
		if err != nil {
			return f, fmt.Errorf("fault %q: %w", part, err)
		}
		spec := &FaultSpec{Rate: p}
		kindName, args, isCall, err := splitCall(name)
		if err != nil {
			return f, fmt.Errorf("fault %q: %w", part, err)
		}
		if !isCall {
			kindName = name
		}
		kind, err := ParseFaultKind(kindName)
		if err != nil {
			return f, err
		}
		if isCall {
			if len(args) != 1 {
				return f, fmt.Errorf("fault %q takes one parameter", part)
			}
			if kind == FaultTruncate {
				fr, err := strconv.ParseFloat(args[0], 64)
				if err != nil || fr <= 0 {
					return f, fmt.Errorf("fault %q: the parameter is the fraction of the body sent, above 0 and below 1, such as 0.5", part)
				}
				spec.Fraction = fr
			} else {
				d, err := ParseDuration(args[0])
				if err != nil {
					return f, fmt.Errorf("fault %q: %w", part, err)
				}
				spec.Duration = Duration(d)
			}
		}
		*f.slot(kind) = spec
	}
	return f, firstErr(f.Validate())
}

// String renders the faults in the short form.
func (f Faults) String() string {
	var parts []string
	for _, k := range FaultKinds {
		s := f.Spec(k)
		if s == nil {
			continue
		}
		name := fieldName(k)
		switch {
		case k == FaultTruncate && s.Fraction > 0:
			name += "(" + trimFloat(s.Fraction) + ")"
		case s.Duration > 0:
			name += "(" + s.Duration.String() + ")"
		}
		parts = append(parts, name+":"+trimFloat(s.Rate))
	}
	return strings.Join(parts, ",")
}

// Validate checks the rates and parameters.
func (f Faults) Validate() []FieldError {
	var errs []FieldError
	total := 0.0
	for _, k := range FaultKinds {
		s := f.Spec(k)
		if s == nil {
			continue
		}
		name := fieldName(k)
		if s.Rate < 0 || s.Rate > 1 || math.IsNaN(s.Rate) {
			errs = append(errs, FieldError{Field: name + ".rate", Message: fmt.Sprintf("must be a probability between 0 and 1 (0.01 = 1%% of requests), got %v", s.Rate)})
		}
		total += s.Rate
		if k == FaultTruncate {
			if s.Fraction < 0 || s.Fraction >= 1 || math.IsNaN(s.Fraction) {
				errs = append(errs, FieldError{Field: name + ".fraction", Message: fmt.Sprintf("must be above 0 and below 1 (the part of the body sent; unset means 0.5), got %v", s.Fraction)})
			}
		} else if s.Fraction != 0 {
			errs = append(errs, FieldError{Field: name + ".fraction", Message: "only truncate takes a fraction"})
		}
		if (k == FaultReset || k == FaultClose || k == FaultTruncate) && s.Duration != 0 {
			errs = append(errs, FieldError{Field: name + ".duration", Message: "only hang and slowBody take a duration"})
		}
	}
	if total > 1+1e-9 {
		errs = append(errs, FieldError{Field: "", Message: fmt.Sprintf("fault rates sum to %.4g; at most one fault happens to a request, so they must sum to at most 1", total)})
	}
	return errs
}

// faultModel is a compiled Faults.
type faultModel struct {
	kinds    []FaultKind
	cum      []float64
	duration []time.Duration
	fraction []float64
}

func (f Faults) compile() (*faultModel, error) {
	if err := firstErr(f.Validate()); err != nil {
		return nil, err
	}
	m := &faultModel{}
	sum := 0.0
	for _, k := range FaultKinds {
		s := f.Spec(k)
		if s == nil || s.Rate == 0 {
			continue
		}
		sum += s.Rate
		d := s.Duration.D()
		fr := s.Fraction
		switch k {
		case FaultHang:
			if d == 0 {
				d = DefaultHangFor
			}
		case FaultSlowBody:
			if d == 0 {
				d = DefaultSlowBodyDuration
			}
		case FaultTruncate:
			if fr == 0 {
				fr = DefaultTruncateFraction
			}
		}
		m.kinds = append(m.kinds, k)
		m.cum = append(m.cum, sum)
		m.duration = append(m.duration, d)
		m.fraction = append(m.fraction, fr)
	}
	return m, nil
}

func (m *faultModel) sample(r *rand.Rand, o *Outcome) {
	u := r.Float64()
	for i, c := range m.cum {
		if u < c {
			o.Fault = m.kinds[i]
			o.FaultDuration = m.duration[i]
			o.FaultFraction = m.fraction[i]
			return
		}
	}
}
