package sweep

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/canarylab/canarylab/internal/browsertest"
)

// fakeResult builds a Result over the varies' grid without running anything.
func fakeResult(t *testing.T, specs ...string) *Result {
	t.Helper()
	r := &Result{Scenario: "s", Runs: 10, Seed: 1, Healthy: true}
	for _, s := range specs {
		r.Varies = append(r.Varies, mustVary(t, s))
	}
	n := 1
	for _, v := range r.Varies {
		n *= len(v.Values)
	}
	for idx := range n {
		p := Point{Values: map[string]any{}, Runs: 10, Promoted: 6, RolledBack: 4, HealthyRuns: 10,
			PPromote: Wilson(6, 10), PRollback: Wilson(4, 10), FalseRollback: Wilson(0, 10),
			DecisionP50: DurationEstimate{Value: 6 * time.Minute}, FailedChecksMean: 5,
			Decisions: []DecisionCount{{At: 6 * time.Minute, RolledBack: 4}, {At: 9 * time.Minute, Promoted: 6}}}
		rest := idx
		for i := len(r.Varies) - 1; i >= 0; i-- {
			v := r.Varies[i]
			p.Values[v.Path] = v.Values[rest%len(v.Values)]
			rest /= len(v.Values)
		}
		r.Points = append(r.Points, p)
	}
	return r
}

func TestPlanLayout(t *testing.T) {
	tests := []struct {
		name    string
		varies  []string
		x       string // the x axis' path ("" for none)
		numeric bool
		series  []string
	}{
		{"the canary's numeric field is x", []string{"analysis.threshold=2,5", "canary.errors.rate=0:0.02:0.01"},
			"canary.errors.rate", true, []string{"analysis.threshold=2", "analysis.threshold=5"}},
		{"else the first numeric field", []string{"analysis.interval=30s,1m", "load.rate=5,20"},
			"load.rate", true, []string{"analysis.interval=30s", "analysis.interval=1m"}},
		{"else categories", []string{"analysis.interval=30s,1m"}, "analysis.interval", false, []string{"P(rollback)"}},
		{"one value: one point", []string{"load.rate=5"}, "", false, []string{"load.rate=5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := fakeResult(t, tt.varies...)
			l := planLayout(r)
			x := ""
			if l.x >= 0 {
				x = r.Varies[l.x].Path
			}
			var series []string
			for _, s := range l.series {
				series = append(series, s.label)
			}
			if x != tt.x || l.numeric != tt.numeric || strings.Join(series, "|") != strings.Join(tt.series, "|") {
				t.Errorf("x %q numeric %v series %q; want %q %v %q", x, l.numeric, series, tt.x, tt.numeric, tt.series)
			}
			points := 0
			for _, s := range l.series {
				points += len(s.points)
			}
			if points != len(r.Points) {
				t.Errorf("the series hold %d points of %d", points, len(r.Points))
			}
		})
	}
}

func TestWriteHTML(t *testing.T) {
	r := fakeResult(t, "canary.errors.rate=0:0.02:0.01", "analysis.threshold=2,5")
	r.Points[1].Errors, r.Points[1].Error = 1, `boom <b>`
	var b strings.Builder
	if err := WriteHTML(&b, r, HTMLOptions{Command: "canarylab sweep s --vary 'x=<1>'", Elapsed: time.Second}); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{"Detection: P(rollback) of the canary", "False rollbacks", "Time to decision",
		"analysis.threshold=2", "40.0 % [16.8, 68.7]", "--vary canary.errors.rate=0:0.02:0.01", "x=&lt;1&gt;", "boom &lt;b&gt;"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	// Detection, false rollbacks, and a time-to-decision chart per series.
	if n := strings.Count(page, `<svg class="chart"`); n != 4 {
		t.Errorf("%d charts, want 4", n)
	}
	if strings.Contains(page, "every point shares") {
		t.Error("analysis.threshold is varied too: the healthy runs are not all shared")
	}
	var only strings.Builder
	if err := WriteHTML(&only, fakeResult(t, "canary.errors.rate=0:0.02:0.01"), HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(only.String(), "every point shares") {
		t.Error("only the canary is varied: the page should say the healthy runs are shared")
	}
	if regexp.MustCompile(`(?i)<script|<link|src="http|href="http|<b>`).MatchString(page) {
		t.Error("the page refers to something outside itself, or lets text in as markup")
	}
}

// TestHTMLInChromium makes a real sweep's report and loads it in headless
// Chromium: every chart laid out and drawn, nothing fetched, a screenshot.
func TestHTMLInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	res, err := Run(t.Context(), ready(t, "failure-errors"),
		[]Vary{mustVary(t, "canary.errors.rate=0:0.03:0.01"), mustVary(t, "analysis.threshold=2,5")},
		Options{Runs: 30, Seed: 3, Healthy: true})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sweep-report.html")
	var b strings.Builder
	if err := WriteHTML(&b, res, HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	p := browsertest.Open(t, path)
	if p.Title != "canarylab sweep: failure-errors" {
		t.Errorf("title %q", p.Title)
	}
	p.CheckCharts(t, 4)
	for _, want := range []string{"Detection", "False rollbacks", "Time to decision", "Every point"} {
		if !strings.Contains(p.Text, want) {
			t.Errorf("the page does not show %q", want)
		}
	}
}
