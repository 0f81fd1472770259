// Package behavior is the mock behaviour model: what a version does to the
// requests it serves (latency distribution, error mix, connection faults).
//
// It is pure: no HTTP, no clock, no global random source. The mock server
// samples it to serve, and the simulator samples the very same type to draw
// synthetic outcomes, so the two cannot drift.
package behavior

import (
	"math/rand/v2"
	"time"
)

// Profile is one behaviour: any of latency, errors and faults. An unset part
// means "nothing injected" on its own, and "keep the part below" when the
// profile is laid over another (see Model.Over).
type Profile struct {
	Latency *Latency `json:"latency,omitempty"`
	Errors  *Errors  `json:"errors,omitempty"`
	Faults  *Faults  `json:"faults,omitempty"`
}

// IsZero reports whether the profile sets nothing.
func (p Profile) IsZero() bool { return p.Latency == nil && p.Errors == nil && p.Faults == nil }

// Validate checks every part; field paths are relative to the profile.
func (p Profile) Validate() []FieldError {
	var errs []FieldError
	if p.Latency != nil {
		errs = append(errs, Prefix("latency", p.Latency.Validate())...)
	}
	if p.Errors != nil {
		errs = append(errs, Prefix("errors", p.Errors.Validate())...)
	}
	if p.Faults != nil {
		errs = append(errs, Prefix("faults", p.Faults.Validate())...)
	}
	return errs
}

// String summarises the profile in the short forms.
func (p Profile) String() string {
	s := ""
	add := func(k, v string) {
		if s != "" {
			s += " "
		}
		s += k + "=" + v
	}
	if p.Latency != nil {
		add("latency", p.Latency.String())
	}
	if p.Errors != nil {
		add("errors", p.Errors.String())
	}
	if p.Faults != nil {
		add("faults", p.Faults.String())
	}
	if s == "" {
		return "healthy"
	}
	return s
}

// Model is a compiled Profile, cheap to copy and to lay over another, and
// safe for concurrent use (sampling takes the caller's random source).
type Model struct {
	latency *latencyModel
	errors  *errorModel
	faults  *faultModel
}

// Compile validates the profile and precomputes what sampling needs.
func (p Profile) Compile() (Model, error) {
	var m Model
	if errs := p.Validate(); len(errs) > 0 {
		return m, errs[0]
	}
	var err error
	if p.Latency != nil {
		if m.latency, err = p.Latency.compile(); err != nil {
			return m, err
		}
	}
	if p.Errors != nil {
		if m.errors, err = p.Errors.compile(); err != nil {
			return m, err
		}
	}
	if p.Faults != nil {
		if m.faults, err = p.Faults.compile(); err != nil {
			return m, err
		}
	}
	return m, nil
}

// MustCompile is Compile for profiles known to be valid (tests, literals).
func (p Profile) MustCompile() Model {
	m, err := p.Compile()
	if err != nil {
		panic("behavior: " + err.Error())
	}
	return m
}

// Over lays m over base: every part m sets replaces base's.
func (m Model) Over(base Model) Model {
	if m.latency != nil {
		base.latency = m.latency
	}
	if m.errors != nil {
		base.errors = m.errors
	}
	if m.faults != nil {
		base.faults = m.faults
	}
	return base
}

// IsZero reports whether the model injects nothing.
func (m Model) IsZero() bool { return m.latency == nil && m.errors == nil && m.faults == nil }

// LatencySource describes the latency distribution ("lognormal(50ms,400ms)").
func (m Model) LatencySource() string {
	if m.latency == nil {
		return ""
	}
	return m.latency.source
}

// Outcome is what the model decided for one request.
type Outcome struct {
	// Fault is the connection fault to apply, FaultNone for a normal answer.
	Fault FaultKind
	// FaultDuration bounds a hang or spreads a slow body.
	FaultDuration time.Duration
	// FaultFraction is the part of the body a truncated response sends.
	FaultFraction float64
	// Status is the injected error status, 0 when the route answers as usual.
	Status int
	// Delay is the injected delay before answering, after the cap.
	Delay time.Duration
	// Uncapped is the delay as drawn; it exceeds Delay when Capped.
	Uncapped time.Duration
	// Capped reports that the latency cap shortened the drawn delay.
	Capped bool
}

// Sample draws one request's outcome. The draws happen in a fixed order
// (fault, error, delay), so a seeded source gives a reproducible sequence.
// A fault that gives no response (reset, close, hang) skips the other draws.
func (m Model) Sample(r *rand.Rand) Outcome {
	var o Outcome
	if m.faults != nil {
		m.faults.sample(r, &o)
		switch o.Fault {
		case FaultReset, FaultClose, FaultHang:
			return o
		}
	}
	if m.errors != nil {
		o.Status = m.errors.sample(r)
	}
	if m.latency != nil {
		o.Delay, o.Uncapped = m.latency.sample(r)
		o.Capped = o.Delay != o.Uncapped
	}
	return o
}
