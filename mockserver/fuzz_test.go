package mockserver

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/canarylab/canarylab/mockserver/behavior"
)

// More seeds are committed under testdata/fuzz/<FuzzName>/.
var fuzzConfigSeeds = []string{
	"",
	"{}",
	`profile: {latency: "lognormal(20ms,200ms) cap 1s", errors: "503:0.1", faults: "reset:0.01,hang(1s):0.01"}`,
	`{"seed": 1, "routes": [{"path": "/users/:id", "template": "{{.Params.id}}", "bodySize": 0}]}`,
	"phases: {repeat: true, steps: [{duration: 1s}, {duration: 2s, profile: {errors: {rate: 0.5, codes: {500: 1, 503: 2}}}}]}",
	"rules: [{when: {headers: {X-A: \"*\"}, query: {q: \"?\"}}, profile: {latency: {percentiles: {p50: 1ms, p99: 9ms}}}}]",
	"server: {maxBodyBytes: 1.5KiB, maxInFlight: 3}\nrequestFaults: {maxDelay: 1m}",
	"routes: [{method: '*', path: /a/*, bodySize: 16k, headers: {x-y: z}, profile: {}}]",
}

// FuzzParseConfig: ParseConfig never panics, a config it accepts compiles,
// and the config's JSON form parses back to the same JSON.
func FuzzParseConfig(f *testing.F) {
	for _, s := range fuzzConfigSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		first := c.Marshal()
		again, err := ParseConfig(first)
		if err != nil {
			t.Fatalf("the marshalled form of an accepted config is refused: %v\ninput: %q\nmarshalled: %s", err, data, first)
		}
		if second := again.Marshal(); !bytes.Equal(first, second) {
			t.Fatalf("Marshal → ParseConfig → Marshal changed the config:\n%s\n%s", first, second)
		}
		// A config that validates must also compile (Apply would refuse it
		// otherwise, with an error Validate should have given).
		if _, err := (&Server{version: "v1", opts: Options{Seed: seedPtr(1)}}).compile(c); err != nil {
			t.Fatalf("valid config does not compile: %v\ninput: %q", err, data)
		}
	})
}

// FuzzParseRequestFaults: the request-driven parameters never panic, and
// what they accept compiles and never delays beyond the cap or below 0.
func FuzzParseRequestFaults(f *testing.F) {
	for _, s := range [][3]string{
		{"200ms", "503", "reset"},
		{"lognormal(50ms,400ms)", "503:0.2,500:0.1", "hang(1s):0.5"},
		{"", "", "slowBody(2s)"},
		{"5ms:0.9,50ms:0.1", "", "truncate(0.5):0.1,close:0.1"},
		{"percentiles(p50=10ms,p99=1s) cap 5s", "500", ""},
		{"normal(50ms,10ms)", "429:10%", ""},
		{"uniform(1ms,2m)", "", "slow_body"},
		{"1h", "", ""},
		{"bogus", "abc", "explode"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	const maxDelay = 30 * time.Second
	f.Fuzz(func(t *testing.T, delay, status, fault string) {
		p, err := ParseRequestFaults(delay, status, fault, maxDelay)
		if err != nil {
			return
		}
		if delay != "" && (p.Latency == nil || p.Latency.Cap.D() <= 0 || p.Latency.Cap.D() > maxDelay) {
			t.Fatalf("delay %q: latency %+v is not capped at %s", delay, p.Latency, maxDelay)
		}
		m, err := p.Compile()
		if err != nil {
			t.Fatalf("accepted parameters do not compile: %v (%q %q %q)", err, delay, status, fault)
		}
		r := rand.New(rand.NewPCG(1, 2))
		for range 64 {
			o := m.Sample(r)
			if o.Delay < 0 || o.Delay > maxDelay {
				t.Fatalf("delay %q sampled %v (uncapped %v), want 0..%s", delay, o.Delay, o.Uncapped, maxDelay)
			}
			if o.Status != 0 && (o.Status < 100 || o.Status > 599) {
				t.Fatalf("status %q sampled %d", status, o.Status)
			}
			if o.Fault == behavior.FaultTruncate && (o.FaultFraction < 0 || o.FaultFraction >= 1) {
				t.Fatalf("fault %q: fraction %v", fault, o.FaultFraction)
			}
			if (o.Fault == behavior.FaultHang || o.Fault == behavior.FaultSlowBody) && o.FaultDuration <= 0 {
				t.Fatalf("fault %q: duration %v", fault, o.FaultDuration)
			}
		}
	})
}
