package report_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/canarylab/canarylab/internal/browsertest"
	"github.com/canarylab/canarylab/orchestrator/report"
	"github.com/canarylab/canarylab/orchestrator/sim"
	"github.com/canarylab/canarylab/scenarios"
)

// simRun runs a ready scenario on the sim engine: a real record, in
// milliseconds.
func simRun(t *testing.T, name string) report.Run {
	t.Helper()
	s, err := scenarios.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	rec := report.NewRecorder(s, "scenarios/"+name+".yaml", sim.Name, 0, nil)
	err = sim.New(sim.Options{Seed: 11}).Run(context.Background(), s, rec)
	return rec.Finish(s, 0, err)
}

func TestWriteHTML(t *testing.T) {
	tests := []struct {
		scenario string
		want     []string // in the page, in order
		charts   int      // weight + failed checks + one per metric
	}{
		{"success", []string{`<span class="badge good">Promoted</span>`, "Canary weight", "Metric request-success-rate", "Metric request-duration", "No check failed.", "Promotion completed!"}, 4},
		{"failure-errors", []string{`<span class="badge bad">Rolled back</span>`, "failedChecks 5", "threshold 5: rollback at the next tick", "<td>request-success-rate</td>", "Rolling back podinfo.test failed checks threshold reached 5"}, 3},
		{"custom-metric", []string{"Metric my metric", "Halt canary-test-flexiblemockserver.mockserver advancement my metric"}, 4},
		{"no-traffic", []string{"no value"}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			run := simRun(t, tt.scenario)
			var b strings.Builder
			if err := report.WriteHTML(&b, []report.Run{run}); err != nil {
				t.Fatal(err)
			}
			page := b.String()
			at := 0
			for _, w := range tt.want {
				i := strings.Index(page[at:], w)
				if i < 0 {
					t.Fatalf("the page lacks %q after byte %d", w, at)
				}
				at += i + len(w)
			}
			if n := strings.Count(page, `<svg class="chart"`); n != tt.charts {
				t.Errorf("%d charts, want %d", n, tt.charts)
			}
			if regexp.MustCompile(`(?i)<script|<link|src="http|href="http`).MatchString(page) {
				t.Error("the page refers to something outside itself")
			}
		})
	}
}

// TestWriteHTMLEscapes checks that scenario text cannot inject markup.
func TestWriteHTMLEscapes(t *testing.T) {
	run := simRun(t, "failure-errors")
	run.Description = `<script>alert(1)</script>`
	run.Notes = append(run.Notes, `0s <img src=x onerror=alert(2)>`)
	run.Events[0].Message = `</td><script>alert(3)</script>`
	var b strings.Builder
	if err := report.WriteHTML(&b, []report.Run{run}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "<script") || strings.Contains(b.String(), "<img") {
		t.Error("scenario text reached the page as markup")
	}
}

// TestHTMLInChromium loads a report of every ready scenario in headless
// Chromium, checks every chart is laid out and drawn and nothing is
// fetched, and takes a screenshot.
func TestHTMLInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	var runs []report.Run
	for _, name := range scenarios.Names() {
		runs = append(runs, simRun(t, name))
	}
	path := filepath.Join(t.TempDir(), "run-report.html")
	if err := report.WriteHTMLFile(path, runs); err != nil {
		t.Fatal(err)
	}
	p := browsertest.Open(t, path)
	if p.Title != "canarylab run" {
		t.Errorf("title %q", p.Title)
	}
	p.CheckCharts(t, 2*len(runs))
	for _, r := range runs {
		if !strings.Contains(p.Text, r.Scenario) {
			t.Errorf("the page does not show %s", r.Scenario)
		}
	}
	if fi, err := os.Stat(p.ScreenshotPath); err != nil || fi.Size() < 10_000 {
		t.Errorf("screenshot %s: %v", p.ScreenshotPath, err)
	}
}
