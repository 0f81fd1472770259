package analysis

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func builtinMetrics() []Metric {
	return []Metric{
		{Name: RequestSuccessRate, Interval: "1m", ThresholdRange: &ThresholdRange{Min: f(99)}},
		{Name: RequestDuration, Interval: "30s", ThresholdRange: &ThresholdRange{Max: f(500)}},
	}
}

const (
	detect   = "New revision detected! Scaling up podinfo.test"
	starting = "Starting canary analysis for podinfo.test"
	copying  = "Copying podinfo.test template spec to podinfo-primary.test"
	routing  = "Routing all traffic to primary"
	done     = "Promotion completed! Scaling down podinfo.test"
	failed   = "Canary failed! Scaling down podinfo.test"
)

func adv(w int) string { return fmt.Sprintf("Advance podinfo.test canary weight %d", w) }

func TestCanaryStrategy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version Version
		an      Spec
		values  func(int, string) (float64, error)
		steps   []step
	}{
		{
			name: "happy path: stepWeight 10 to maxWeight 50",
			an:   Spec{Interval: "1m", Threshold: 5, MaxWeight: 50, StepWeight: 10, Metrics: builtinMetrics()},
			steps: []step{
				{phase: PhaseProgressing, routes: "100/0", events: ev(detect)},
				{phase: PhaseProgressing, weight: 10, routes: "90/10", events: ev(starting, adv(10))},
				{phase: PhaseProgressing, weight: 20, routes: "80/20", events: ev(adv(20))},
				{phase: PhaseProgressing, weight: 30, routes: "70/30", events: ev(adv(30))},
				{phase: PhaseProgressing, weight: 40, routes: "60/40", events: ev(adv(40))},
				{phase: PhaseProgressing, weight: 50, routes: "50/50", events: ev(adv(50))},
				{phase: PhasePromoting, weight: 50, routes: "50/50", events: ev(copying)},
				{phase: PhaseFinalising, routes: "100/0", events: ev(routing)},
				{phase: PhaseSucceeded, routes: "100/0", events: ev(done)},
				{phase: PhaseSucceeded, routes: "100/0", events: ev()},
			},
		},
		{
			name:    "happy path on 1.36: Promoting resets the status weight",
			version: V1_36,
			an:      Spec{Interval: "1m", Threshold: 5, MaxWeight: 20, StepWeight: 10, Metrics: builtinMetrics()},
			steps: []step{
				{phase: PhaseProgressing, events: ev(detect)},
				{phase: PhaseProgressing, weight: 10, events: ev(starting, adv(10))},
				{phase: PhaseProgressing, weight: 20, events: ev(adv(20))},
				{phase: PhasePromoting, weight: 0, routes: "80/20", events: ev(copying)},
				{phase: PhaseFinalising, routes: "100/0", events: ev(routing)},
				{phase: PhaseSucceeded, events: ev(done)},
			},
		},
		{
			name: "maxWeight overshoot: 20, 40, 60 then promotion",
			an:   Spec{Interval: "30s", Threshold: 1, MaxWeight: 50, StepWeight: 20},
			steps: []step{
				{phase: PhaseProgressing, events: ev(detect)},
				{phase: PhaseProgressing, weight: 20, events: ev(starting, adv(20))},
				{phase: PhaseProgressing, weight: 40, events: ev(adv(40))},
				{phase: PhaseProgressing, weight: 60, routes: "40/60", events: ev(adv(60))},
				{phase: PhasePromoting, weight: 60, events: ev(copying)},
			},
		},
		{
			name: "stepWeights ladder",
			an:   Spec{Threshold: 1, StepWeights: []int{1, 2, 10, 80}},
			steps: []step{
				{phase: PhaseProgressing, events: ev(detect)},
				{phase: PhaseProgressing, weight: 1, events: ev(starting, adv(1))},
				{phase: PhaseProgressing, weight: 2, events: ev(adv(2))},
				{phase: PhaseProgressing, weight: 10, events: ev(adv(10))},
				{phase: PhaseProgressing, weight: 80, routes: "20/80", events: ev(adv(80))},
				{phase: PhasePromoting, weight: 80, events: ev(copying)},
			},
		},
		{
			name: "Flagger's unit test trace: stepWeight 100, stepWeightPromotion 50",
			an:   Spec{Threshold: 1, StepWeight: 100, StepWeightPromotion: 50},
			steps: []step{
				{phase: PhaseProgressing, events: ev(detect)},
				{phase: PhaseProgressing, weight: 100, routes: "0/100", events: ev(starting, adv(100))},
				{phase: PhasePromoting, weight: 100, events: ev(copying)},
				{phase: PhasePromoting, weight: 50, routes: "50/50", events: ev("Advance podinfo.test primary weight 50")},
				{phase: PhaseFinalising, routes: "100/0", events: ev("Advance podinfo.test primary weight 100")},
				{phase: PhaseSucceeded, events: ev(done)},
			},
		},
		{
			name:    "1.36 with stepWeightPromotion 20 from 50/50",
			version: V1_36,
			an:      Spec{Threshold: 1, StepWeight: 50, MaxWeight: 50, StepWeightPromotion: 20},
			steps: []step{
				{phase: PhaseProgressing, events: ev(detect)},
				{phase: PhaseProgressing, weight: 50, events: ev(starting, adv(50))},
				{phase: PhasePromoting, weight: 0, routes: "50/50", events: ev(copying)},
				{phase: PhasePromoting, weight: 30, routes: "70/30", events: ev("Advance podinfo.test primary weight 70")},
				{phase: PhasePromoting, weight: 10, routes: "90/10", events: ev("Advance podinfo.test primary weight 90")},
				{phase: PhaseFinalising, routes: "100/0", events: ev("Advance podinfo.test primary weight 100")},
				{phase: PhaseSucceeded, events: ev(done)},
			},
		},
		{
			name:   "failure: success rate below the minimum, threshold 2",
			an:     Spec{Threshold: 2, StepWeight: 10, MaxWeight: 50, Metrics: builtinMetrics()},
			values: successRate(100, 100, 69.1666, 97),
			steps: []step{
				{phase: PhaseProgressing, events: ev(detect)},
				{phase: PhaseProgressing, weight: 10, events: ev(starting, adv(10))},
				{phase: PhaseProgressing, weight: 10, fc: 1, routes: "90/10", events: ev("Halt podinfo.test advancement success rate 69.17% < 99%")},
				{phase: PhaseProgressing, weight: 10, fc: 2, events: ev("Halt podinfo.test advancement success rate 97.00% < 99%")},
				{phase: PhaseFailed, routes: "100/0", events: ev("Rolling back podinfo.test failed checks threshold reached 2", failed)},
				{phase: PhaseFailed, routes: "100/0", events: ev()},
			},
		},
		{
			name:   "failed checks are cumulative: a passing tick does not reset them",
			an:     Spec{Threshold: 2, StepWeight: 10, MaxWeight: 50, Metrics: builtinMetrics()},
			values: successRate(100, 100, 50, 100, 50),
			steps: []step{
				{phase: PhaseProgressing, events: ev(detect)},
				{phase: PhaseProgressing, weight: 10, events: ev(starting, adv(10))},
				{phase: PhaseProgressing, weight: 10, fc: 1, events: ev("Halt podinfo.test advancement success rate 50.00% < 99%")},
				{phase: PhaseProgressing, weight: 20, fc: 1, events: ev(adv(20))},
				{phase: PhaseProgressing, weight: 20, fc: 2, events: ev("Halt podinfo.test advancement success rate 50.00% < 99%")},
				{phase: PhaseFailed, events: ev("Rolling back podinfo.test failed checks threshold reached 2", failed)},
			},
		},
		{
			name:   "no traffic: no values found is a failed check",
			an:     Spec{Threshold: 1, StepWeight: 10, Metrics: builtinMetrics()},
			values: successRate(-1),
			steps: []step{
				{phase: PhaseProgressing, events: ev(detect)},
				{phase: PhaseProgressing, weight: 10, events: ev(starting, adv(10))},
				{phase: PhaseProgressing, weight: 10, fc: 1, events: ev("Halt advancement no values found for istio metric request-success-rate probably podinfo.test is not receiving traffic: running query failed: running: no values found")},
				{phase: PhaseFailed, events: ev("Rolling back podinfo.test failed checks threshold reached 1", failed)},
			},
		},
		{
			name: "request duration: truncated to whole ms, printed as durations",
			an:   Spec{Threshold: 3, StepWeight: 50, Metrics: builtinMetrics()},
			values: func(tick int, q string) (float64, error) {
				if !strings.Contains(q, "histogram_quantile") {
					return 100, nil
				}
				return []float64{100, 100, 500.99, 501.2, 1500}[min(tick, 4)], nil
			},
			steps: []step{
				{phase: PhaseProgressing, events: ev(detect)},
				{phase: PhaseProgressing, weight: 50, events: ev(starting, adv(50))},
				{phase: PhaseProgressing, weight: 100, events: ev(adv(100))},
				{phase: PhaseProgressing, weight: 100, fc: 1, events: ev("Halt podinfo.test advancement request duration 501ms > 500ms")},
				{phase: PhaseProgressing, weight: 100, fc: 2, events: ev("Halt podinfo.test advancement request duration 1.5s > 500ms")},
			},
		},
		{
			name: "mirror: one mirrored step before the first weight",
			an:   Spec{Threshold: 1, StepWeight: 25, MaxWeight: 50, Mirror: true},
			steps: []step{
				{phase: PhaseProgressing, events: ev(detect)},
				{phase: PhaseProgressing, weight: 0, routes: "100/0m", events: ev(starting, adv(0))},
				{phase: PhaseProgressing, weight: 25, routes: "75/25", events: ev(adv(25))},
				{phase: PhaseProgressing, weight: 50, routes: "50/50", events: ev(adv(50))},
				{phase: PhasePromoting, weight: 50, events: ev(copying)},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newFakeEnv()
			env.values = tc.values
			cfg := podinfo(tc.an)
			cfg.Version = tc.version
			run(t, cfg, env, tc.steps)
		})
	}
}

func TestIterationStrategies(t *testing.T) {
	match := []HTTPMatchRequest{{Headers: map[string]StringMatch{"x-canary": {Exact: "insider"}}}}
	iter := func(i, n int) string { return fmt.Sprintf("Advance podinfo.test canary iteration %d/%d", i, n) }
	for _, tc := range []struct {
		name    string
		version Version
		an      Spec
		steps   []step
	}{
		{
			name: "A/B testing: 1 + N + 1 ticks, then Promoting and Finalising",
			an:   Spec{Threshold: 1, Iterations: 2, Match: match},
			steps: []step{
				{phase: PhaseProgressing, events: ev(detect)},
				{phase: PhaseProgressing, iter: 1, routes: "0/100", events: ev(starting, iter(1, 2))},
				{phase: PhaseProgressing, iter: 2, routes: "0/100", events: ev(iter(2, 2))},
				{phase: PhasePromoting, iter: 2, events: ev(copying)},
				{phase: PhaseFinalising, routes: "100/0", events: ev(routing)},
				{phase: PhaseSucceeded, events: ev(done)},
			},
		},
		{
			name:    "blue/green on 1.36 (probe A3): Promoting it=0",
			version: V1_36,
			an:      Spec{Threshold: 1, Iterations: 2},
			steps: []step{
				{phase: PhaseProgressing, events: ev(detect)},
				{phase: PhaseProgressing, iter: 1, routes: "100/0", events: ev(starting, iter(1, 2))},
				{phase: PhaseProgressing, iter: 2, routes: "100/0", events: ev(iter(2, 2))},
				{phase: PhaseProgressing, iter: 3, routes: "0/100", events: ev("Routing all traffic to canary")},
				{phase: PhasePromoting, iter: 0, routes: "0/100", events: ev(copying)},
				{phase: PhaseFinalising, routes: "100/0", events: ev(routing)},
				{phase: PhaseSucceeded, events: ev(done)},
			},
		},
		{
			name: "blue/green with mirroring",
			an:   Spec{Threshold: 1, Iterations: 1, Mirror: true},
			steps: []step{
				{phase: PhaseProgressing, events: ev(detect)},
				{phase: PhaseProgressing, iter: 1, routes: "100/0m", events: ev(starting, iter(1, 1))},
				{phase: PhaseProgressing, iter: 2, routes: "0/100", events: ev("Stop traffic mirroring and route all traffic to canary")},
				{phase: PhasePromoting, iter: 2, events: ev(copying)},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := podinfo(tc.an)
			cfg.Version = tc.version
			run(t, cfg, newFakeEnv(), tc.steps)
		})
	}
}

func TestWebhooks(t *testing.T) {
	hook := func(typ HookType, name string) Webhook {
		return Webhook{Type: typ, Name: name, URL: "http://flagger-loadtester.test/" + name}
	}
	// closedUntil answers 403 Forbidden for the named hook before tick n.
	closedUntil := func(name string, n int) func(int, string) error {
		return func(tick int, h string) error {
			if h == name && tick < n {
				return errForbidden
			}
			return nil
		}
	}
	for _, tc := range []struct {
		name  string
		an    Spec
		hooks func(int, string) error
		steps []step
		calls []string
	}{
		{
			name:  "confirm-rollout: Waiting until the gate opens",
			an:    Spec{Threshold: 1, StepWeight: 100, Webhooks: []Webhook{hook(HookConfirmRollout, "gate")}},
			hooks: closedUntil("gate", 2),
			steps: []step{
				{phase: PhaseWaiting, events: ev("Halt podinfo.test advancement waiting for approval gate")},
				{phase: PhaseWaiting, events: ev()},
				{phase: PhaseProgressing, events: ev("Confirm-rollout check gate passed", detect)},
			},
			calls: []string{"gate Initialized", "gate Waiting", "gate Waiting"},
		},
		{
			name:  "confirm-promotion: WaitingPromotion, iterations -1, analysis goes on",
			an:    Spec{Threshold: 2, StepWeight: 50, Webhooks: []Webhook{hook(HookConfirmPromotion, "promote")}},
			hooks: closedUntil("promote", 4),
			steps: []step{
				{phase: PhaseProgressing, events: ev(detect)},
				{phase: PhaseProgressing, weight: 50, events: ev(starting, adv(50))},
				{phase: PhaseProgressing, weight: 100, events: ev(adv(100))},
				{phase: PhaseWaitingPromotion, iter: -1, routes: "0/100", events: ev("Halt podinfo.test advancement waiting for promotion approval promote")},
				// 1.44 keeps the status through Promoting: iterations stay -1.
				{phase: PhasePromoting, iter: -1, events: ev("Confirm-promotion check promote passed", copying)},
			},
		},
		{
			name:  "confirm-traffic-increase: no step while closed, no failed check",
			an:    Spec{Threshold: 1, StepWeight: 50, Webhooks: []Webhook{hook(HookConfirmTrafficIncrease, "step")}},
			hooks: closedUntil("step", 2),
			steps: []step{
				{phase: PhaseProgressing, events: ev(detect)},
				{phase: PhaseProgressing, events: ev(starting, "Halt podinfo.test advancement waiting for traffic increase approval step")},
				// Still weight 0 and no iteration: a first analysis tick again.
				{phase: PhaseProgressing, weight: 50, events: ev(starting, "Confirm-traffic-increase check step passed", adv(50))},
			},
		},
		{
			name: "pre-rollout failing counts failed checks and rolls back",
			an:   Spec{Threshold: 2, StepWeight: 50, Webhooks: []Webhook{hook(HookPreRollout, "smoke")}},
			hooks: func(int, string) error {
				return fmt.Errorf("POST http://127.0.0.1:1/ giving up after 1 attempt(s)")
			},
			steps: []step{
				{phase: PhaseProgressing, events: ev(detect)},
				{phase: PhaseProgressing, fc: 1, events: ev(starting, "Halt podinfo.test advancement pre-rollout check smoke failed POST http://127.0.0.1:1/ giving up after 1 attempt(s)")},
				{phase: PhaseProgressing, fc: 2, events: ev(starting, "Halt podinfo.test advancement pre-rollout check smoke failed POST http://127.0.0.1:1/ giving up after 1 attempt(s)")},
				{phase: PhaseFailed, events: ev("Rolling back podinfo.test failed checks threshold reached 2", failed)},
			},
		},
		{
			name:  "rollback hook: a 2xx rolls back at once",
			an:    Spec{Threshold: 5, StepWeight: 10, Webhooks: []Webhook{hook(HookRollback, "abort"), hook(HookPostRollout, "notify")}},
			hooks: func(tick int, h string) error { return map[bool]error{true: errForbidden}[h == "abort" && tick < 2] },
			steps: []step{
				{phase: PhaseProgressing, events: ev(detect)},
				{phase: PhaseProgressing, weight: 10, events: ev("Rollback hook abort not signaling a rollback", starting, adv(10))},
				{phase: PhaseFailed, routes: "100/0", events: ev("Rollback check abort passed", "Rolling back podinfo.test manual webhook invoked", failed, "Post-rollout check notify passed")},
			},
			calls: []string{"abort Progressing", "abort Progressing", "notify Failed"},
		},
		{
			name:  "rollout hook failing: external check event",
			an:    Spec{Threshold: 5, StepWeight: 10, Webhooks: []Webhook{{Name: "load", URL: "http://x/"}}},
			hooks: func(tick int, h string) error { return map[bool]error{true: errForbidden}[tick == 2] },
			steps: []step{
				{phase: PhaseProgressing, events: ev(detect)},
				{phase: PhaseProgressing, weight: 10, events: ev(starting, adv(10))},
				{phase: PhaseProgressing, weight: 10, fc: 1, events: ev("Halt podinfo.test advancement external check load failed Forbidden")},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newFakeEnv()
			env.hooks = tc.hooks
			run(t, podinfo(tc.an), env, tc.steps)
			if tc.calls != nil && !equal(env.calls, tc.calls) {
				t.Errorf("hook calls %q, want %q", env.calls, tc.calls)
			}
		})
	}
}

// The seed's failure: a MetricTemplate on the mock server's own metrics,
// named "my metric", over its bound.
func TestCustomMetricTemplate(t *testing.T) {
	an := Spec{Interval: "30s", Threshold: 2, StepWeight: 10, Metrics: []Metric{{
		Name: "my metric", Interval: "1m", TemplateRef: &TemplateRef{Name: "my-metric"},
		ThresholdRange: &ThresholdRange{Max: f(10)}, TemplateVariables: map[string]string{"route": "/api"},
	}}}
	cfg := Config{Canary: Canary{Name: "canary-test-flexiblemockserver", Namespace: "mockserver", Analysis: &an},
		Templates: []MetricTemplate{{Metadata: ObjectMeta{Name: "my-metric", Namespace: "mockserver"},
			Spec: MetricTemplateSpec{Provider: MetricProvider{Type: "prometheus", Address: "http://prometheus:9090"},
				Query: `sum(rate(canarylab_mock_requests_total{namespace="{{ namespace }}",deployment="{{ target }}",route="{{ variables.route }}"}[{{ interval }}]))`}}}}
	env := newFakeEnv()
	env.values = func(tick int, q string) (float64, error) { return []float64{1, 1, 91.5678, 133.65}[min(tick, 3)], nil }
	name := "canary-test-flexiblemockserver.mockserver"
	run(t, cfg, env, []step{
		{phase: PhaseProgressing, events: ev("New revision detected! Scaling up " + name)},
		{phase: PhaseProgressing, weight: 10, events: ev("Starting canary analysis for "+name, "Advance "+name+" canary weight 10")},
		{phase: PhaseProgressing, weight: 10, fc: 1, events: ev("Halt " + name + " advancement my metric 91.57 > 10")},
		{phase: PhaseProgressing, weight: 10, fc: 2, events: ev("Halt " + name + " advancement my metric 133.65 > 10")},
		{phase: PhaseFailed, events: ev("Rolling back "+name+" failed checks threshold reached 2", "Canary failed! Scaling down "+name)},
	})
	want := `sum(rate(canarylab_mock_requests_total{namespace="mockserver",deployment="canary-test-flexiblemockserver",route="/api"}[1m]))`
	if len(env.queries) == 0 || env.queries[0] != want {
		t.Errorf("rendered query %q, want %q", env.queries, want)
	}
}

func TestMetricErrors(t *testing.T) {
	tmpl := func(q string) []MetricTemplate {
		return []MetricTemplate{{Metadata: ObjectMeta{Name: "t"}, Spec: MetricTemplateSpec{Provider: MetricProvider{Type: "prometheus"}, Query: q}}}
	}
	for _, tc := range []struct {
		name      string
		version   Version
		metric    Metric
		templates []MetricTemplate
		value     func(int, string) (float64, error)
		want      string // the halting event of the first analysed tick
		fatal     bool
	}{
		{name: "missing template", metric: Metric{Name: "m", TemplateRef: &TemplateRef{Name: "nope"}},
			want: `Metric template nope.test error: metrictemplates.flagger.app "nope" not found`},
		{name: "missing variable", metric: Metric{Name: "m", TemplateRef: &TemplateRef{Name: "t"}}, templates: tmpl(`x{a="{{ variables.nope }}"}`),
			want: `Metric template t.test query render error: template: tmpl:1:8: executing "tmpl" at <variables>: map has no entry for key "nope"`},
		{name: "custom no values", metric: Metric{Name: "error-rate", TemplateRef: &TemplateRef{Name: "t"}}, templates: tmpl(`x`),
			value: func(int, string) (float64, error) { return 0, ErrNoValuesFound },
			want:  "Halt advancement no values found for custom metric: error-rate: no values found"},
		{name: "custom query error", metric: Metric{Name: "error-rate", TemplateRef: &TemplateRef{Name: "t"}}, templates: tmpl(`x`),
			value: func(int, string) (float64, error) { return 0, fmt.Errorf("parse error") },
			want:  "Metric query failed for error-rate: parse error"},
		{name: "custom min", metric: Metric{Name: "rps", TemplateRef: &TemplateRef{Name: "t"}, ThresholdRange: &ThresholdRange{Min: f(10)}}, templates: tmpl(`x`),
			value: func(int, string) (float64, error) { return 2.5, nil },
			want:  "Halt podinfo.test advancement rps 2.50 < 10"},
		{name: "no template and no query (1.44)", metric: Metric{Name: "mystery"},
			want: "Metric query failed for no usable metrics template and query were configured"},
		{name: "inline query passes on 1.44", metric: Metric{Name: "inline", Query: "up", ThresholdRange: &ThresholdRange{Min: f(1)}},
			value: func(int, string) (float64, error) { return 1, nil }},
		{name: "inline query always fails on 1.36", version: V1_36, metric: Metric{Name: "inline", Query: "up", ThresholdRange: &ThresholdRange{Min: f(1)}},
			value: func(int, string) (float64, error) { return 1, nil },
			want:  "Metric query failed for no usable metrics template were configured"},
		{name: "inline no values", metric: Metric{Name: "inline", Query: "up"},
			value: func(int, string) (float64, error) { return 0, ErrNoValuesFound },
			want:  "Halt advancement no values found for metric: inline"},
		{name: "prometheus error on a builtin", metric: Metric{Name: RequestSuccessRate, Threshold: 99},
			value: func(int, string) (float64, error) { return 0, fmt.Errorf("error response: bad") },
			want:  "Prometheus query failed: running query failed: error response: bad"},
		{name: "legacy threshold on success rate", metric: Metric{Name: RequestSuccessRate, Threshold: 99},
			value: func(int, string) (float64, error) { return 90, nil },
			want:  "Halt podinfo.test advancement success rate 90.00% < 99%"},
		{name: "range vector on 1.36 crashes Flagger", version: V1_36, metric: Metric{Name: "m", TemplateRef: &TemplateRef{Name: "t"}}, templates: tmpl(`x[1m]`),
			value: func(int, string) (float64, error) { return 0, ErrMultipleValues }, fatal: true,
			want: "Metric query failed for m: query returned multiple values"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			an := Spec{Threshold: 5, StepWeight: 10, Metrics: []Metric{tc.metric}}
			cfg := podinfo(an)
			cfg.Version, cfg.Templates = tc.version, tc.templates
			env := newFakeEnv()
			env.values = tc.value
			m, err := New(cfg, env)
			if err != nil {
				t.Fatal(err)
			}
			ctx, now := context.Background(), time.Now()
			m.Tick(ctx, now)
			m.SetTarget("2")
			m.Tick(ctx, now) // detect
			m.Tick(ctx, now) // first tick: pre-rollout only
			tk := m.Tick(ctx, now)
			got := msgs(tk.Events)
			switch {
			case tc.want == "":
				if tk.Status.FailedChecks != 0 || len(got) != 1 || !strings.HasPrefix(got[0], "Advance") {
					t.Errorf("events %q, failed checks %d: want a pass", got, tk.Status.FailedChecks)
				}
			case len(got) == 0 || got[len(got)-1] != tc.want:
				t.Errorf("events %q, want last %q", got, tc.want)
			case !tc.fatal && tk.Status.FailedChecks != 1:
				t.Errorf("failed checks %d, want 1", tk.Status.FailedChecks)
			}
			if tc.fatal != (tk.Fatal != "") {
				t.Errorf("fatal %q, want fatal %v", tk.Fatal, tc.fatal)
			}
		})
	}
}

func TestRevisionChangeRestartsAnalysis(t *testing.T) {
	run(t, podinfo(Spec{Threshold: 1, StepWeight: 10}), newFakeEnv(), []step{
		{phase: PhaseProgressing, events: ev(detect)},
		{phase: PhaseProgressing, weight: 10, events: ev(starting, adv(10))},
		{phase: PhaseProgressing, weight: 0, routes: "100/0", revised: "3", events: ev("New revision detected! Restarting analysis for podinfo.test")},
		{phase: PhaseProgressing, weight: 10, events: ev(starting, adv(10))},
	})
}

func TestRevertToPromotedSpecDoesNotStartAnalysis(t *testing.T) {
	m, _ := New(podinfo(Spec{Threshold: 1, StepWeight: 10}), newFakeEnv())
	ctx, now := context.Background(), time.Now()
	m.Tick(ctx, now)
	m.SetTarget("1") // the promoted spec
	if tk := m.Tick(ctx, now); tk.Status.Phase != PhaseInitialized || len(tk.Events) != 0 {
		t.Errorf("phase %s events %q, want Initialized and quiet", tk.Status.Phase, msgs(tk.Events))
	}
}

func TestSkipAnalysis(t *testing.T) {
	for _, v := range []Version{V1_44, V1_36} {
		t.Run(string(v), func(t *testing.T) {
			an := Spec{Webhooks: []Webhook{{Type: HookPostRollout, Name: "notify", URL: "http://x/"}}}
			cfg := podinfo(an)
			cfg.Canary.SkipAnalysis, cfg.Version = true, v
			env := newFakeEnv()
			events := ev("Copying podinfo.test template spec to podinfo-primary.test", "Post-rollout check notify passed", "Promotion completed! Canary analysis was skipped for podinfo.test")
			if v == V1_36 {
				events = ev(events[0], events[2])
			}
			run(t, cfg, env, []step{
				{phase: PhaseProgressing, events: ev(detect)},
				{phase: PhaseSucceeded, events: events},
			})
		})
	}
}

func TestEventWebhookSeesEveryEventWithItsPhase(t *testing.T) {
	for _, tc := range []struct {
		version Version
		last    string
	}{{V1_44, "Succeeded Promotion completed! Scaling down podinfo.test"}, {V1_36, "Finalising Promotion completed! Scaling down podinfo.test"}} {
		t.Run(string(tc.version), func(t *testing.T) {
			an := Spec{Threshold: 1, StepWeight: 100, Webhooks: []Webhook{{Type: HookEvent, Name: "events", URL: "http://x/"}}}
			cfg := podinfo(an)
			cfg.Version = tc.version
			env := newFakeEnv()
			run(t, cfg, env, []step{
				{phase: PhaseProgressing, events: ev(detect)},
				{phase: PhaseProgressing, weight: 100, events: ev(starting, adv(100))},
				{phase: PhasePromoting, weight: map[Version]int{V1_44: 100, V1_36: 0}[tc.version], events: ev(copying)},
				{phase: PhaseFinalising, events: ev(routing)},
				{phase: PhaseSucceeded, events: ev(done)},
			})
			want := []string{
				"Initializing all the metrics providers are available!",
				"Initializing Initialization done! podinfo.test",
				"Initialized " + detect, "Progressing " + starting, "Progressing " + adv(100),
				"Progressing " + copying, "Promoting " + routing, tc.last,
			}
			if !equal(env.events, want) {
				t.Errorf("event webhook got\n %q\nwant\n %q", env.events, want)
			}
		})
	}
}

func TestFailedRollbackEventCarriesFailedPhase(t *testing.T) {
	an := Spec{Threshold: 1, StepWeight: 10, Metrics: builtinMetrics(), Webhooks: []Webhook{{Type: HookEvent, Name: "events", URL: "http://x/"}}}
	env := newFakeEnv()
	env.values = successRate(100, 100, 10)
	run(t, podinfo(an), env, []step{
		{phase: PhaseProgressing, events: ev(detect)},
		{phase: PhaseProgressing, weight: 10, events: ev(starting, adv(10))},
		{phase: PhaseProgressing, weight: 10, fc: 1, events: ev("Halt podinfo.test advancement success rate 10.00% < 99%")},
		{phase: PhaseFailed, events: ev("Rolling back podinfo.test failed checks threshold reached 1", failed)},
	})
	if got := env.events[len(env.events)-1]; got != "Failed "+failed {
		t.Errorf("last event webhook delivery %q", got)
	}
	if got := env.events[len(env.events)-2]; !strings.HasPrefix(got, "Progressing Rolling back") {
		t.Errorf("threshold event delivered as %q", got)
	}
}

func TestPrimaryPastDeadlineDuringPromotion(t *testing.T) {
	deadline := fmt.Errorf(`podinfo-primary.test not ready: deployment "podinfo-primary" exceeded its progress deadline`)
	for _, tc := range []struct {
		version Version
		last    step
	}{
		{V1_44, step{phase: PhaseFailed, weight: 100, routes: "0/100", events: ev(deadline.Error(), "Promotion of podinfo.test failed, primary not ready: "+deadline.Error())}},
		{V1_36, step{phase: PhaseFailed, routes: "100/0", events: ev(deadline.Error(), failed)}},
	} {
		t.Run(string(tc.version), func(t *testing.T) {
			cfg := podinfo(Spec{Threshold: 1, StepWeight: 100})
			cfg.Version = tc.version
			env := newFakeEnv()
			env.primaryReady = func(tick int) (bool, error) {
				if tick == 3 {
					return false, deadline
				}
				return true, nil
			}
			run(t, cfg, env, []step{
				{phase: PhaseProgressing, events: ev(detect)},
				{phase: PhaseProgressing, weight: 100, events: ev(starting, adv(100))},
				{phase: PhasePromoting, weight: map[Version]int{V1_44: 100, V1_36: 0}[tc.version], events: ev(copying)},
				tc.last,
			})
		})
	}
}

func TestDefaults(t *testing.T) {
	for _, tc := range []struct {
		an       Spec
		interval time.Duration
		thresh   int
		maxW     int
		strategy string
	}{
		{Spec{}, 60 * time.Second, 1, 100, "canary"},
		{Spec{Interval: "5s", Threshold: -1}, 10 * time.Second, 1, 100, "canary"},
		{Spec{Interval: "bogus", MaxWeight: 50}, 60 * time.Second, 1, 50, "canary"},
		{Spec{Interval: "2m", Threshold: 7, StepWeights: []int{5, 120}}, 2 * time.Minute, 7, 100, "canary"},
		{Spec{Iterations: 3}, time.Minute, 1, 100, "blue-green"},
		{Spec{Iterations: 3, Match: []HTTPMatchRequest{{}}}, time.Minute, 1, 100, "ab-testing"},
	} {
		m, _ := New(podinfo(tc.an), newFakeEnv())
		if m.Interval() != tc.interval || m.Threshold() != tc.thresh || m.MaxWeight() != tc.maxW || m.Strategy() != tc.strategy {
			t.Errorf("%+v: interval %s threshold %d maxWeight %d strategy %s", tc.an, m.Interval(), m.Threshold(), m.MaxWeight(), m.Strategy())
		}
	}
}

func TestSpeedShrinksQueryWindows(t *testing.T) {
	an := Spec{Threshold: 1, StepWeight: 50, Metrics: builtinMetrics()}
	cfg := podinfo(an)
	cfg.Speed = 60
	env := newFakeEnv()
	run(t, cfg, env, []step{
		{phase: PhaseProgressing, events: ev(detect)},
		{phase: PhaseProgressing, weight: 50, events: ev(starting, adv(50))},
		{phase: PhaseProgressing, weight: 100, events: ev(adv(100))},
	})
	if len(env.queries) != 2 || !strings.Contains(env.queries[0], "[1s]") || !strings.Contains(env.queries[1], "[500ms]") {
		t.Errorf("queries %q, want windows 1s and 500ms", env.queries)
	}
	want := ` sum( rate( istio_requests_total{ reporter="destination", destination_workload_namespace="test", destination_workload=~"podinfo", response_code!~"5.*" }[1s] ) ) / sum( rate( istio_requests_total{ reporter="destination", destination_workload_namespace="test", destination_workload=~"podinfo" }[1s] ) ) * 100`
	if env.queries[0] != want {
		t.Errorf("query sent\n%q\nwant\n%q", env.queries[0], want)
	}
}

func TestObserveAllMetricsKeepsTheDecision(t *testing.T) {
	an := Spec{Threshold: 5, StepWeight: 10, Metrics: builtinMetrics()}
	cfg := podinfo(an)
	cfg.ObserveAllMetrics = true
	env := newFakeEnv()
	env.values = successRate(100, 100, 50)
	m, _ := New(cfg, env)
	ctx, now := context.Background(), time.Now()
	m.Tick(ctx, now)
	m.SetTarget("2")
	m.Tick(ctx, now)
	m.Tick(ctx, now)
	env.tick = 2
	tk := m.Tick(ctx, now)
	if len(tk.Checks) != 2 || tk.Checks[0].Passed || !tk.Checks[0].Counted || !tk.Checks[1].Passed || tk.Checks[1].Counted {
		t.Fatalf("checks %+v: want a counted failure then an observed pass", tk.Checks)
	}
	if len(tk.Events) != 1 || tk.Status.FailedChecks != 1 {
		t.Errorf("events %q failed checks %d: want one halt", msgs(tk.Events), tk.Status.FailedChecks)
	}
}

func TestSuspend(t *testing.T) {
	cfg := podinfo(Spec{})
	cfg.Canary.Suspend = true
	m, _ := New(cfg, newFakeEnv())
	tk := m.Tick(context.Background(), time.Now())
	if got := msgs(tk.Events); !equal(got, ev("skipping canary run as object is suspended")) || tk.Status.Phase != PhaseInitializing {
		t.Errorf("events %q phase %s", got, tk.Status.Phase)
	}
}

// Windows shrink with the speed, truncated to whole milliseconds so that a
// scaled window never reaches a scrape the real one leaves out.
func TestScaleWindow(t *testing.T) {
	tests := []struct {
		window string
		speed  float64
		want   string
	}{
		{"1m", 1, "1m"},
		{"1m", 30, "2s"},
		{"10s", 60, "166ms"}, // 166.67 ms: not 167, past the scrape at -166.67 ms
		{"30s", 7, "4s285ms"},
		{"1s", 5000, "1ms"}, // never an empty window
		{"", 30, ""},
		{"bogus", 30, "bogus"}, // left for Prometheus to reject
	}
	for _, tt := range tests {
		m := &Machine{cfg: Config{Speed: tt.speed}}
		if got := m.scaleWindow(tt.window); got != tt.want {
			t.Errorf("scaleWindow(%q) at %g× = %q, want %q", tt.window, tt.speed, got, tt.want)
		}
	}
}
