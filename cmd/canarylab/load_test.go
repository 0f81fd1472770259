package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canarylab/canarylab/mockserver"
	"github.com/canarylab/canarylab/mockserver/behavior"
)

func startTestMock(t *testing.T, p behavior.Profile) string {
	t.Helper()
	srv, err := mockserver.New(mockserver.Config{Profile: p}, mockserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	run, err := mockserver.Start(srv, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = run.Shutdown(ctx)
	})
	return run.URL()
}

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRootCmd(buildInfo{Version: "test"})
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestLoadStandaloneWritesReportsAndChecksThresholds(t *testing.T) {
	errs, err := behavior.ParseErrors("503:0.5")
	if err != nil {
		t.Fatal(err)
	}
	url := startTestMock(t, behavior.Profile{Errors: &errs})
	dir := t.TempDir()
	jsonPath, csvPrefix := filepath.Join(dir, "out.json"), filepath.Join(dir, "run")
	out, err := runCLI(t, "load", "--host", url, "--users", "4", "--duration", "500ms", "--quiet",
		"--threshold", "errors<10%", "--threshold", "p99<5s", "--json", jsonPath, "--csv", csvPrefix)
	var te thresholdError
	if !errors.As(err, &te) || te.broken != 1 {
		t.Fatalf("error %v, want one broken threshold (errors<10%% with 50%% 503s)\n%s", err, out)
	}
	for _, want := range []string{"Aggregated", "threshold FAIL errors<10%", "threshold ok   p99<5s", "HTTP 503"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	var sum struct {
		Model string
		Total struct {
			Requests, Failures int64
		}
		Passed bool
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Model != "closed" || sum.Total.Requests == 0 || sum.Passed {
		t.Errorf("summary %+v", sum)
	}
	csvStats, err := os.ReadFile(csvPrefix + "_stats.csv")
	if err != nil || !strings.Contains(string(csvStats), ",Aggregated,") {
		t.Errorf("stats.csv: %v %q", err, csvStats)
	}
}

func TestLoadOpenModel(t *testing.T) {
	url := startTestMock(t, behavior.Profile{})
	jsonPath := filepath.Join(t.TempDir(), "open.json")
	out, err := runCLI(t, "load", "--host", url, "--rate", "100", "--duration", "500ms", "--quiet", "--json", jsonPath)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var sum struct {
		Model string
		Open  struct{ Intended, Sent, Dropped int64 }
	}
	b, _ := os.ReadFile(jsonPath)
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Model != "open" || sum.Open.Intended < 49 || sum.Open.Sent != sum.Open.Intended || sum.Open.Dropped != 0 {
		t.Errorf("open summary %+v", sum)
	}
}

func TestLoadUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"load", "--host", "http://127.0.0.1:1", "--users", "1"},
		{"load", "--host", "http://127.0.0.1:1", "--rate", "5"},
		{"load", "--host", "http://127.0.0.1:1", "--rate", "5", "--users", "2", "--duration", "1s"},
		{"load", "--host", "http://example.com", "--users", "1", "--duration", "1s"},
		{"load", "--host", "http://127.0.0.1:1", "--users", "1", "--duration", "1s", "--threshold", "p99<fast"},
		{"load", "--host", "http://127.0.0.1:1", "--stage", "1m"},
	} {
		_, err := runCLI(t, args...)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: error %v, want a usage error (exit 2)", args, err)
		}
	}
}
