package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/canarylab/canarylab/orchestrator/sweep"
)

func TestSweepWritesTableCSVAndJSON(t *testing.T) {
	dir := t.TempDir()
	csvPath, jsonPath, htmlPath := filepath.Join(dir, "sweep.csv"), filepath.Join(dir, "sweep.json"), filepath.Join(dir, "sweep.html")
	out, err := runCLI(t, "sweep", "failure-errors", "--vary", "canary.errors.rate=0,0.2", "--runs", "10", "--seed", "7",
		"--workers", "2", "--csv", csvPath, "--json", jsonPath, "--report", htmlPath)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("\n%s", out)
	for _, re := range []string{
		`failure-errors: 2 points × 10 runs, 30 runs in all \(10 with a healthy canary\), seed 7`,
		`canary.errors.rate +runs +P\(promote\) +P\(rollback\) +false rollback +decision p50 / p90 +failed checks`,
		// Rate 0 is promoted, rate 0.2 rolled back at the fifth failed check.
		`\n0 +10 +100\.0% \[72\.2, 100\.0\] +0\.0% \[0\.0, 27\.8\] +0\.0% \[0\.0, 27\.8\] +\d+m(\d+s)? / \d+m(\d+s)? +-\n`,
		`\n0\.2 +10 +0\.0% \[0\.0, 27\.8\] +100\.0% \[72\.2, 100\.0\] +0\.0% \[0\.0, 27\.8\] +\d+m(\d+s)? / \d+m(\d+s)? +5\.0\n`,
		`sweep: 30 runs in .* runs/s\)`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output does not match %s", re)
		}
	}

	f, err := os.Open(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("%d CSV rows, want a header and 2 points: %q", len(rows), rows)
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	for _, h := range []string{"canary.errors.rate", "runs", "promoted", "rolledBack", "pPromote", "pPromoteLo", "pPromoteHi",
		"pRollbackLo", "falseRollbackHi", "decisionP50Seconds", "decisionP90HiSeconds", "failedChecksMean"} {
		if _, ok := col[h]; !ok {
			t.Errorf("CSV header %q lacks %s", rows[0], h)
		}
	}
	if r := rows[2]; r[col["canary.errors.rate"]] != "0.2" || r[col["runs"]] != "10" || r[col["rolledBack"]] != "10" ||
		r[col["pRollback"]] != "1" || !strings.HasPrefix(r[col["pRollbackLo"]], "0.722") || r[col["failedChecksMean"]] != "5" {
		t.Errorf("CSV row %q", r)
	}
	if r := rows[1]; r[col["canary.errors.rate"]] != "0" || r[col["promoted"]] != "10" || r[col["failedChecksMean"]] != "" {
		t.Errorf("CSV row %q", r)
	}

	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var res sweep.Result
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	if res.Seed != 7 || res.Runs != 10 || len(res.Varies) != 1 || len(res.Points) != 2 ||
		res.Points[1].RolledBack != 10 || res.Points[1].Values["canary.errors.rate"] != 0.2 || res.Points[0].HealthyRuns != 10 {
		t.Errorf("JSON %s", data)
	}
	for _, key := range []string{`"pPromote"`, `"falseRollback"`, `"decisionP50"`, `"failedChecksMean"`, `"lo"`, `"hi"`} {
		if !strings.Contains(string(data), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}

	page, err := os.ReadFile(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<title>canarylab sweep: failure-errors</title>", "Detection: P(rollback) of the canary",
		"canarylab sweep failure-errors --vary canary.errors.rate=0,0.2 --runs 10 --seed 7"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("--report lacks %q", want)
		}
	}

	// The same seed, the same table.
	again, err := runCLI(t, "sweep", "failure-errors", "--vary", "canary.errors.rate=0,0.2", "--runs", "10", "--seed", "7", "--workers", "1", "--quiet")
	if err != nil {
		t.Fatal(err)
	}
	table := out[strings.Index(out, "failure-errors: 2 points"):strings.Index(out, "\nP: ")]
	if !strings.HasPrefix(again, table) || strings.Contains(again, "sweep: ") {
		t.Errorf("--seed 7 --workers 1 --quiet:\n%s", again)
	}
}

func TestSweepUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"sweep", "failure-errors"}, "--vary is required"},
		{[]string{"sweep", "--vary", "analysis.threshold=2"}, "give one SCENARIO"},
		{[]string{"sweep", "failure-errors", "success", "--vary", "analysis.threshold=2"}, "give one SCENARIO"},
		{[]string{"sweep", "no-such-scenario", "--vary", "analysis.threshold=2"}, "neither a file nor a ready scenario"},
		{[]string{"sweep", "failure-errors", "--vary", "analysis.treshold=2"}, "--vary analysis.treshold=2: analysis.treshold: unknown field: did you mean threshold?"},
		{[]string{"sweep", "failure-errors", "--vary", "analysis.threshold=0:5:0"}, "the step must be positive"},
		{[]string{"sweep", "failure-errors", "--vary", "analysis.threshold=2", "--runs", "0"}, "--runs 0"},
		{[]string{"sweep", "failure-errors", "--vary", "analysis.threshold=2", "--workers", "-1"}, "--workers -1"},
		{[]string{"sweep", "failure-errors", "--vary", "analysis.threshold=2", "--runs", "many"}, "invalid argument"},
	} {
		t.Run(strings.Join(tc.args[1:], " "), func(t *testing.T) {
			out, err := runCLI(t, tc.args...)
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want a usage error (exit 2) with %q\n%s", err, tc.want, out)
			}
		})
	}
}

func TestSweepEnv(t *testing.T) {
	t.Setenv("CANARYLAB_SWEEP_VARY", "canary.errors.rate=0.3")
	t.Setenv("CANARYLAB_SWEEP_RUNS", "2")
	t.Setenv("CANARYLAB_SWEEP_HEALTHY", "false")
	out, err := runCLI(t, "sweep", "failure-errors", "--seed", "1", "--quiet")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "1 points × 2 runs, 2 runs in all, seed 1") || !regexp.MustCompile(`\n0\.3 +2 .* - +\S+ / \S+ +5\.0\n`).MatchString(out) {
		t.Errorf("output:\n%s", out)
	}
}

// A scenario the sim engine cannot run (a webhook outside the embedded
// loadtester) is invalid input: every run fails.
func TestSweepEveryRunFails(t *testing.T) {
	data, err := os.ReadFile("../../scenarios/failure-errors.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(data), "analysis:\n", "analysis:\n  webhooks:\n  - {name: gate, type: confirm-rollout, url: http://example.com/gate}\n", 1)
	path := filepath.Join(t.TempDir(), "hook.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "sweep", path, "--vary", "analysis.threshold=2", "--runs", "2", "--quiet")
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "every run ended in an error") || !strings.Contains(out, "2 runs ended in an error; the first: webhook gate") {
		t.Errorf("error %v, want a usage error\n%s", err, out)
	}
}
