package main

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A scenario whose expectation cannot hold: exit code 1, and the JSON and
// JUnit reports say which expectation broke.
func TestRunWritesReportsAndFailsOnBrokenExpectations(t *testing.T) {
	if testing.Short() {
		t.Skip("an end-to-end run of a few seconds; skipped with -short")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "wrong.yaml")
	doc := `apiVersion: canarylab.dev/v1alpha1
kind: Scenario
metadata: {name: wrong-expectation}
load: {rate: 5}
analysis:
  interval: 10s
  threshold: 1
  stepWeight: 100
expect:
  outcome: Failed
`
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	jsonPath, junitPath := filepath.Join(dir, "run.json"), filepath.Join(dir, "run.xml")
	out, err := runCLI(t, "run", "--speed", "10", "--json", jsonPath, "--junit", junitPath, file)
	var ee expectationError
	if !errors.As(err, &ee) || ee.failed != 1 {
		t.Fatalf("err %v, want 1 run that broke its expectations; output:\n%s", err, out)
	}
	for _, want := range []string{"Promotion completed! Scaling down podinfo.test", "FAIL wrong-expectation: Succeeded", "✗ outcome: want Failed, got Succeeded"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	var rep struct {
		Runs []struct {
			Scenario, Outcome string
			Passed            bool
			Ticks             []json.RawMessage
			Expectations      []struct{ Name string }
		}
	}
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 1 || rep.Runs[0].Outcome != "Succeeded" || rep.Runs[0].Passed || len(rep.Runs[0].Ticks) < 5 {
		t.Errorf("JSON report: %+v", rep.Runs)
	}
	var ju struct {
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name    string    `xml:"name,attr"`
				Failure *struct{} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	data, err = os.ReadFile(junitPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(data, &ju); err != nil {
		t.Fatal(err)
	}
	if ju.Failures != 1 || len(ju.Suites) != 1 || ju.Suites[0].Name != "wrong-expectation" || ju.Suites[0].Cases[0].Failure == nil {
		t.Errorf("JUnit report: %s", data)
	}
}

func TestRunUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "no-such-scenario"}, "neither a file nor a ready scenario"},
		{[]string{"run", "--engine", "cloud", "success"}, `--engine "cloud": use one of local, kube, sim`},
		{[]string{"run", "--engine", "sim", "--speed", "5", "success"}, "the sim engine runs in virtual time"},
		{[]string{"run", "--engine", "kube", "--speed", "30", "success"}, "the kube engine runs Flagger in real time"},
		{[]string{"run", "--speed", "-1", "success"}, "--speed -1: must be a positive factor"},
		{[]string{"run", "missing.yaml"}, "read scenario"},
		{[]string{"validate", "missing.yaml"}, "1 of 1 scenarios are invalid"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, err := runCLI(t, tc.args...)
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error()+out, tc.want) {
				t.Errorf("err %v (usage: %v), output %q; want a usage error with %q", err, errors.As(err, &ue), out, tc.want)
			}
		})
	}
}

// With no cluster to reach, the kube engine says so before it does
// anything.
func TestRunKubeWithoutACluster(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "config")
	cfg := "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\nusers:\n- name: u\n  user: {token: t}\n"
	if err := os.WriteFile(kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "run", "--engine", "kube", "--kubeconfig", kubeconfig, "success")
	if err == nil || !strings.Contains(err.Error()+out, "cannot reach the cluster at https://127.0.0.1:1") {
		t.Errorf("err %v, output %q", err, out)
	}
	_, err = runCLI(t, "run", "--engine", "kube", "--kubeconfig", filepath.Join(dir, "missing"), "success")
	if err == nil || !strings.Contains(err.Error(), "no cluster to run on") {
		t.Errorf("missing kubeconfig: %v", err)
	}
}

func TestRender(t *testing.T) {
	out, err := runCLI(t, "render", "--namespace", "demo", "--image", "canarylab/canarylab:v9", "failure-errors")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# the canary, before its new revision", "kind: Canary", "namespace: demo", "image: canarylab/canarylab:v9",
		"# the load", "locustio/locust:2.12.1", "# the new revision", "value: /etc/canarylab/mock/canary.yaml"} {
		if !strings.Contains(out, want) {
			t.Errorf("render output lacks %q", want)
		}
	}
}

// The sim engine runs a ready scenario in virtual time: minutes of
// analysis in well under a second.
func TestRunSim(t *testing.T) {
	html := filepath.Join(t.TempDir(), "run.html")
	out, err := runCLI(t, "run", "--engine", "sim", "--seed", "3", "--report", html, "failure-errors")
	if err != nil || !strings.Contains(out, "PASS failure-errors: Failed after 8m0s of analysis") {
		t.Errorf("err %v\n%s", err, out)
	}
	page, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<title>canarylab run: failure-errors</title>", "Rolled back", "Canary weight", "Metric request-success-rate"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("--report lacks %q", want)
		}
	}
}

func TestScenariosValidateAndSchema(t *testing.T) {
	out, err := runCLI(t, "scenarios")
	if err != nil || !strings.Contains(out, "failure-errors") || !strings.Contains(out, "Failed") {
		t.Errorf("scenarios: %v\n%s", err, out)
	}
	files, _ := filepath.Glob("../../scenarios/*.yaml")
	out, err = runCLI(t, append([]string{"validate"}, files...)...)
	if err != nil || strings.Count(out, ": valid") != len(files) || len(files) < 10 {
		t.Errorf("validate: %v\n%s", err, out)
	}
	out, err = runCLI(t, "schema")
	var m map[string]any
	if err != nil || json.Unmarshal([]byte(out), &m) != nil || m["title"] != "canarylab scenario" {
		t.Errorf("schema: %v\n%.300s", err, out)
	}
}
