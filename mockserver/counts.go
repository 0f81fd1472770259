package mockserver

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/canarylab/canarylab/mockserver/behavior"
)

// Counts are the realised counts of everything the server did since it
// started or since the counts were last reset: what a scenario checks to
// trust that "10 % 503s" really meant 10 %.
type Counts struct {
	Since    time.Time `json:"since"`
	Requests uint64    `json:"requests"`
	// Statuses counts the statuses sent, by code ("0": no response).
	Statuses map[string]uint64 `json:"statuses"`
	// InjectedErrors counts injected error statuses, by code.
	InjectedErrors map[string]uint64 `json:"injectedErrors"`
	// Faults counts connection faults, by kind.
	Faults map[string]uint64 `json:"faults"`
	// Delayed counts requests given an injected delay, DelaySeconds their sum.
	Delayed      uint64  `json:"delayed"`
	DelaySeconds float64 `json:"delaySeconds"`
	// DelayCapped counts delays a cap shortened.
	DelayCapped uint64 `json:"delayCapped"`
	// RequestDriven counts requests shaped by their own parameters.
	RequestDriven uint64 `json:"requestDriven"`
	// Rejected counts requests refused by the server's limits, by reason.
	Rejected map[string]uint64 `json:"rejected"`
	// ClientGaveUp counts clients that left during an injected delay.
	ClientGaveUp uint64 `json:"clientGaveUp"`
	// ErrorRatio is the share of requests given an injected error status or
	// a connection fault (a request with both counts once).
	ErrorRatio float64 `json:"errorRatio"`
}

// counters is the lock-free tally behind Counts.
type counters struct {
	since         time.Time
	requests      atomic.Uint64
	statuses      [600]atomic.Uint64
	injected      [600]atomic.Uint64
	faults        [behavior.NumFaultKinds]atomic.Uint64
	delayed       atomic.Uint64
	delayNanos    atomic.Int64
	delayCapped   atomic.Uint64
	requestDriven atomic.Uint64
	rejected      [numRejectReasons]atomic.Uint64
	clientGaveUp  atomic.Uint64
	bad           atomic.Uint64 // requests with an injected error or fault
}

type rejectReason int

const (
	rejectInFlight rejectReason = iota
	rejectBodyTooLarge
	rejectBadFault
	numRejectReasons
)

var rejectNames = [numRejectReasons]string{"in_flight_limit", "body_too_large", "bad_request_fault"}

func (c *counters) status(code int) {
	if code >= 0 && code < len(c.statuses) {
		c.statuses[code].Add(1)
	}
}

func (c *counters) snapshot() Counts {
	out := Counts{
		Since:          c.since,
		Requests:       c.requests.Load(),
		Statuses:       map[string]uint64{},
		InjectedErrors: map[string]uint64{},
		Faults:         map[string]uint64{},
		Rejected:       map[string]uint64{},
		Delayed:        c.delayed.Load(),
		DelaySeconds:   time.Duration(c.delayNanos.Load()).Seconds(),
		DelayCapped:    c.delayCapped.Load(),
		RequestDriven:  c.requestDriven.Load(),
		ClientGaveUp:   c.clientGaveUp.Load(),
	}
	for code := range c.statuses {
		if n := c.statuses[code].Load(); n > 0 {
			out.Statuses[strconv.Itoa(code)] = n
		}
		if n := c.injected[code].Load(); n > 0 {
			out.InjectedErrors[strconv.Itoa(code)] = n
		}
	}
	for _, k := range behavior.FaultKinds {
		out.Faults[k.String()] = c.faults[k].Load()
	}
	for r, name := range rejectNames {
		out.Rejected[name] = c.rejected[r].Load()
	}
	if out.Requests > 0 {
		out.ErrorRatio = float64(c.bad.Load()) / float64(out.Requests)
	}
	return out
}
