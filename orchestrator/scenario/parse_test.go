package scenario

import (
	"strings"
	"testing"
)

const validDoc = `apiVersion: canarylab.dev/v1alpha1
kind: Scenario
metadata:
  name: example
canary:
  latency: lognormal(20ms, 80ms)
  errors: "503:0.1"
load:
  rate: 20
analysis:
  interval: 1m
  threshold: 5
  stepWeight: 10
  metrics:
  - name: request-success-rate
    interval: 1m
    thresholdRange:
      min: 99
expect:
  outcome: Failed
`

func TestParseReportsEveryProblemWithItsPath(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(string) string
		want []string
	}{
		{"valid", func(s string) string { return s }, nil},
		{"unknown field, with a suggestion", func(s string) string { return strings.Replace(s, "stepWeight: 10", "stepWeigth: 10", 1) },
			[]string{"analysis.stepWeigth: unknown field: did you mean stepWeight?"}},
		{"not a number", func(s string) string { return strings.Replace(s, "min: 99", "min: high", 1) },
			[]string{`analysis.metrics[0].thresholdRange.min: must be a number`}},
		{"no step", func(s string) string { return strings.Replace(s, "  stepWeight: 10\n", "", 1) },
			[]string{"analysis: set stepWeight, stepWeights (canary) or iterations"}},
		{"interval under 10s and threshold 0", func(s string) string {
			return strings.Replace(s, "interval: 1m\n  threshold: 5", "interval: 5s\n  threshold: 0", 1)
		}, []string{"analysis.interval: 5s is under Flagger's minimum of 10s", "analysis.threshold: must be 1 or more"}},
		{"interval not the CRD's pattern", func(s string) string {
			return strings.Replace(s, "interval: 1m\n  threshold", "interval: 1h\n  threshold", 1)
		},
			[]string{`analysis.interval: "1h" must be whole seconds or minutes`}},
		{"missing template", func(s string) string {
			return strings.Replace(s, "  - name: request-success-rate\n", "  - name: my metric\n    templateRef: {name: nope}\n  - name: request-success-rate\n", 1)
		}, []string{`analysis.metrics[0].templateRef.name: "nope" is not one of metricTemplates`}},
		{"custom metric without a source", func(s string) string {
			return strings.Replace(s, "  - name: request-success-rate\n", "  - name: mystery\n    thresholdRange: {max: 1}\n  - name: request-success-rate\n", 1)
		}, []string{`analysis.metrics[0]: "mystery" is not a builtin metric`}},
		{"bad outcome and regex", func(s string) string {
			return strings.Replace(s, "outcome: Failed", "outcome: Maybe\n  events: {include: ['(']}", 1)
		}, []string{`expect.outcome: must be Succeeded or Failed (got "Maybe")`, `expect.events.include[0]: "(" is not an RE2 regular expression`}},
		{"bad profile", func(s string) string { return strings.Replace(s, `errors: "503:0.1"`, `errors: "503:2"`, 1) },
			[]string{"canary.errors"}},
		{"both rate and users", func(s string) string { return strings.Replace(s, "rate: 20", "rate: 20\n  users: 5", 1) },
			[]string{"load: give rate (open model) or users (closed model), not both"}},
		{"webhook type and url", func(s string) string {
			return strings.Replace(s, "  metrics:", "  webhooks:\n  - {name: g, type: confirm-everything, url: 'ftp://x'}\n  metrics:", 1)
		}, []string{`analysis.webhooks[0].type: "confirm-everything" is not a webhook type`, `analysis.webhooks[0].url: "ftp://x" must be an http(s) URL`}},
		{"action without its profile", func(s string) string { return s + "actions:\n- {at: 1m, do: setCanary}\n" },
			[]string{"actions[0].canary: is required by setCanary"}},
		{"non-prometheus template", func(s string) string {
			return s + "metricTemplates:\n- metadata: {name: t}\n  spec: {provider: {type: datadog}, query: x}\n"
		}, []string{`metricTemplates[0].spec.provider.type: "datadog" cannot be evaluated here`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.edit(validDoc)))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("valid document refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\nlacks %q", err, w)
				}
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	s, err := Parse([]byte(validDoc))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != "podinfo" || s.Namespace() != "test" || s.Version() != "1.44" {
		t.Errorf("defaults: %s.%s Flagger %s", s.Name(), s.Namespace(), s.Version())
	}
}
