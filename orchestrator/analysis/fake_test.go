package analysis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// fakeEnv is a scripted world: routes in memory, metric values by metric
// (matched on the query text), hooks answering by name.
type fakeEnv struct {
	primary, canary int
	mirrored        bool
	// values returns the value of a query at a tick (tick counts from 0
	// at the first Tick call).
	values func(tick int, query string) (float64, error)
	// hooks answers a hook call by name (nil error: passed).
	hooks        func(tick int, name string) error
	primaryReady func(tick int) (bool, error)
	tick         int
	calls        []string // "hook phase"
	events       []string // event webhook deliveries "phase message"
	promoted     int
	scaledDown   int
	scaledUp     int
	queries      []string
}

func newFakeEnv() *fakeEnv { return &fakeEnv{primary: 100} }

func (f *fakeEnv) SetRoutes(p, c int, m bool) error {
	if p+c != 100 {
		return fmt.Errorf("weights %d+%d", p, c)
	}
	f.primary, f.canary, f.mirrored = p, c, m
	return nil
}
func (f *fakeEnv) GetRoutes() (int, int, bool, error) { return f.primary, f.canary, f.mirrored, nil }
func (f *fakeEnv) PrimaryReady() (bool, error) {
	if f.primaryReady != nil {
		return f.primaryReady(f.tick)
	}
	return true, nil
}
func (f *fakeEnv) CanaryReady() (bool, error) { return true, nil }
func (f *fakeEnv) Promote() error             { f.promoted++; return nil }
func (f *fakeEnv) ScaleToZero() error         { f.scaledDown++; return nil }
func (f *fakeEnv) ScaleFromZero() error       { f.scaledUp++; return nil }
func (f *fakeEnv) Query(_ context.Context, _ *MetricProvider, q string) (float64, error) {
	f.queries = append(f.queries, Collapse(q))
	if f.values == nil {
		return 100, nil
	}
	return f.values(f.tick, q)
}
func (f *fakeEnv) ProviderOnline(context.Context, *MetricProvider) error { return nil }
func (f *fakeEnv) CallWebhook(_ context.Context, h Webhook, p Payload) error {
	f.calls = append(f.calls, h.Name+" "+string(p.Phase))
	if f.hooks == nil {
		return nil
	}
	return f.hooks(f.tick, h.Name)
}
func (f *fakeEnv) CallEventWebhook(_ context.Context, _ Webhook, p Payload, e Event) error {
	f.events = append(f.events, string(p.Phase)+" "+e.Message)
	return nil
}

// step is what a tick should leave: status and router weights, and the
// events it emitted (exact texts, in order).
type step struct {
	phase   Phase
	weight  int
	fc      int
	iter    int
	routes  string // "primary/canary" (+"m" when mirrored)
	events  []string
	revised string // SetTarget before this tick
}

// run initialises the machine (one tick), changes the target's revision
// and checks each following tick against steps.
func run(t *testing.T, cfg Config, env *fakeEnv, steps []step) *Machine {
	t.Helper()
	m, err := New(cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	init := m.Tick(context.Background(), now)
	if init.Status.Phase != PhaseInitialized {
		t.Fatalf("after the first tick: phase %s, events %v", init.Status.Phase, msgs(init.Events))
	}
	m.SetTarget("2")
	for i, s := range steps {
		env.tick = i
		if s.revised != "" {
			m.SetTarget(s.revised)
		}
		now = now.Add(m.Interval())
		tk := m.Tick(context.Background(), now)
		st := tk.Status
		routes := fmt.Sprintf("%d/%d", env.primary, env.canary)
		if env.mirrored {
			routes += "m"
		}
		got := msgs(tk.Events)
		if st.Phase != s.phase || st.CanaryWeight != s.weight || st.FailedChecks != s.fc || st.Iterations != s.iter ||
			(s.routes != "" && routes != s.routes) || !equal(got, s.events) {
			t.Fatalf("tick %d:\n got  %s weight %d fc %d it %d routes %s events %q\n want %s weight %d fc %d it %d routes %s events %q",
				i+1, st.Phase, st.CanaryWeight, st.FailedChecks, st.Iterations, routes, got,
				s.phase, s.weight, s.fc, s.iter, s.routes, s.events)
		}
	}
	return m
}

func msgs(es []Event) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.Message)
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func ev(s ...string) []string { return s }

func f(v float64) *float64 { return &v }

// podinfo is Flagger's tutorial canary, test namespace.
func podinfo(an Spec) Config {
	return Config{Canary: Canary{Name: "podinfo", Namespace: "test", Analysis: &an}}
}

// successRate scripts request-success-rate per tick and keeps
// request-duration at 100 ms.
func successRate(rates ...float64) func(int, string) (float64, error) {
	return func(tick int, q string) (float64, error) {
		if strings.Contains(q, "histogram_quantile") {
			return 100, nil
		}
		r := rates[min(tick, len(rates)-1)]
		if r < 0 {
			return 0, fmt.Errorf("running: %w", ErrNoValuesFound)
		}
		return r, nil
	}
}

var errForbidden = errors.New("Forbidden")
