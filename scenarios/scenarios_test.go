package scenarios

import (
	"testing"

	"github.com/canarylab/canarylab/orchestrator/scenario"
)

// Every ready scenario parses and validates.
func TestReadyScenariosValidate(t *testing.T) {
	want := []string{"ab-testing", "blue-green", "custom-metric", "failure-errors", "failure-latency",
		"flaky-under-threshold", "gated", "no-traffic", "step-weights", "success"}
	if got := Names(); len(got) != len(want) {
		t.Fatalf("ready scenarios %v, want %v", got, want)
	}
	for _, name := range Names() {
		data, err := Get(name)
		if err != nil {
			t.Fatal(err)
		}
		s, err := scenario.Parse(data)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if s.Metadata.Name != name {
			t.Errorf("%s.yaml is named %q", name, s.Metadata.Name)
		}
	}
	if _, err := Get("nope"); err == nil {
		t.Error("Get(nope) found something")
	}
}
