package report

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/canarylab/canarylab/orchestrator/analysis"
	"github.com/canarylab/canarylab/orchestrator/chart"
)

// WriteHTMLFile writes runs as one self-contained HTML page (see
// WriteHTML).
func WriteHTMLFile(path string, runs []Run) error {
	var buf bytes.Buffer
	if err := WriteHTML(&buf, runs); err != nil {
		return err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// WriteHTML writes runs as one self-contained HTML page, a section per
// run: the verdict and expectations, the canary's weight over time with
// the ticks whose checks failed, the failed checks against the
// threshold, each metric against its threshold range, the failed checks
// and the events. It is the picture a dashboard of the real canary shows,
// for any engine.
func WriteHTML(w io.Writer, runs []Run) error {
	var body bytes.Buffer
	for i := range runs {
		if err := runTmpl.Execute(&body, newRunView(&runs[i])); err != nil {
			return fmt.Errorf("render run %s: %w", runs[i].Scenario, err)
		}
	}
	title := "canarylab run"
	if len(runs) == 1 {
		title = "canarylab run: " + runs[0].Scenario
	}
	passed := 0
	for _, r := range runs {
		if r.Passed {
			passed++
		}
	}
	sub := fmt.Sprintf("%d of %d scenario runs met their expectations", passed, len(runs))
	gen := ""
	if len(runs) > 0 && !runs[0].Started.IsZero() {
		gen = "started " + runs[0].Started.UTC().Format(time.RFC3339)
	}
	return chart.Page{Title: title, Subtitle: sub, Generated: gen, Body: template.HTML(body.String())}.Write(w) // #nosec G203 -- rendered by html/template
}

// runView is what the run template shows.
type runView struct {
	*Run
	Badge, BadgeClass string
	Decision          string
	Weight, Failed    template.HTML
	Metrics           []template.HTML
	FailedRows        []failedCheck
	RealTime          string
	EventRows         []eventRow
}

type failedCheck struct {
	At, Metric, Value, Range, Note string
}

type eventRow struct {
	At, Type, Message string
	Warning           bool
}

func newRunView(r *Run) runView {
	v := runView{Run: r, Badge: r.Outcome, BadgeClass: "warn"}
	switch r.Outcome {
	case string(analysis.PhaseSucceeded):
		v.Badge, v.BadgeClass = "Promoted", "good"
	case string(analysis.PhaseFailed):
		v.Badge, v.BadgeClass = "Rolled back", "bad"
	}
	if r.DecisionTime > 0 {
		v.Decision = FormatAt(r.DecisionTime)
	}
	v.RealTime = r.Elapsed.Round(time.Millisecond).String()
	if r.Elapsed < time.Millisecond {
		v.RealTime = r.Elapsed.String()
	}
	v.Weight = weightChart(r)
	v.Failed = failedChart(r)
	v.Metrics = metricCharts(r)
	for _, t := range r.Ticks {
		for _, c := range t.Checks {
			if c.Passed {
				continue
			}
			fc := failedCheck{At: FormatAt(t.At), Metric: c.Metric, Value: checkValue(c), Range: checkRange(c), Note: c.Error}
			if !c.Counted {
				fc.Note = strings.TrimSpace(fc.Note + " not counted: Flagger stops at a tick's first failed check")
			}
			v.FailedRows = append(v.FailedRows, fc)
		}
	}
	for _, e := range r.Events {
		v.EventRows = append(v.EventRows, eventRow{At: FormatAt(e.At), Type: string(e.Type), Message: e.Message, Warning: e.Type == analysis.Warning})
	}
	return v
}

func seconds(d time.Duration) float64 { return d.Seconds() }

// timeAxis is a chart's scenario-time axis.
func timeAxis() chart.Axis {
	return chart.Axis{Label: "scenario time (from the new revision)", Seconds: true}
}

// verdictRules marks the new revision and the verdict.
func verdictRules(r *Run) []chart.Layer {
	rules := []chart.Layer{chart.Rule{Label: "new revision", Color: chart.Neutral, Vertical: true, At: 0, Dashed: true}}
	switch r.Outcome {
	case string(analysis.PhaseSucceeded):
		rules = append(rules, chart.Rule{Label: "promoted " + FormatAt(r.DecisionTime), Color: chart.Good, Vertical: true, At: seconds(r.DecisionTime)})
	case string(analysis.PhaseFailed):
		rules = append(rules, chart.Rule{Label: "rolled back " + FormatAt(r.DecisionTime), Color: chart.Bad, Vertical: true, At: seconds(r.DecisionTime)})
	}
	return rules
}

func weightChart(r *Run) template.HTML {
	c := &chart.Chart{Title: "Canary weight", X: timeAxis(), Y: chart.Axis{Label: "canary weight (%)", Min: 0, Max: 100}}
	var pts []chart.XY
	var titles []string
	var failed []chart.Dot
	for _, t := range r.Ticks {
		x := seconds(t.At)
		pts = append(pts, chart.XY{X: x, Y: float64(t.Routes.Canary)})
		titles = append(titles, fmt.Sprintf("%s: canary %d %%, primary %d %%, %s", FormatAt(t.At), t.Routes.Canary, t.Routes.Primary, t.Status.Phase))
		if n := failedCount(t); n > 0 {
			failed = append(failed, chart.Dot{X: x, Y: float64(t.Routes.Canary), R: 5, Color: chart.Bad, Hollow: true,
				Title: fmt.Sprintf("%s: %d failed check(s), failedChecks %d", FormatAt(t.At), n, t.Status.FailedChecks)})
		}
	}
	c.Add(verdictRules(r)...)
	c.Add(chart.Line{Name: "canary weight", Color: chart.Palette[0], Points: pts, Step: true, Markers: true, Titles: titles})
	if len(failed) > 0 {
		c.Add(chart.Dots{Name: "tick with a failed check", Color: chart.Bad, Points: failed})
	}
	return c.Render()
}

func failedCount(t Tick) int {
	n := 0
	for _, c := range t.Checks {
		if !c.Passed {
			n++
		}
	}
	return n
}

func failedChart(r *Run) template.HTML {
	c := &chart.Chart{Title: "Failed checks", Height: 200, X: timeAxis(),
		Y: chart.Axis{Label: "status.failedChecks", Min: 0, Max: float64(r.Threshold + 2)}}
	var pts []chart.XY
	for _, t := range r.Ticks {
		pts = append(pts, chart.XY{X: seconds(t.At), Y: float64(t.Status.FailedChecks)})
	}
	c.Add(verdictRules(r)...)
	c.Add(chart.Rule{Label: fmt.Sprintf("threshold %d: rollback at the next tick", r.Threshold), Color: chart.Bad, At: float64(r.Threshold), Dashed: true})
	c.Add(chart.Line{Name: "failed checks", Color: chart.Palette[1], Points: pts, Step: true})
	return c.Render()
}

// metricCharts draws each metric's values against its threshold range, in
// the order the metrics first appear.
func metricCharts(r *Run) []template.HTML {
	type series struct {
		name, unit string
		min, max   *float64
		pts        []chart.XY
		titles     []string
		bad        []chart.Dot
		missing    []chart.Dot
	}
	var order []*series
	byName := map[string]*series{}
	for _, t := range r.Ticks {
		for _, c := range t.Checks {
			s := byName[c.Metric]
			if s == nil {
				s = &series{name: c.Metric}
				byName[c.Metric] = s
				order = append(order, s)
			}
			s.unit, s.min, s.max = c.Unit, c.Min, c.Max
			x := seconds(t.At)
			if c.Value == nil || math.IsNaN(*c.Value) || math.IsInf(*c.Value, 0) {
				// No value (no traffic, a query error): drawn on the
				// bound it failed to meet, so the tick still shows.
				y := 0.0
				switch {
				case c.Min != nil:
					y = *c.Min
				case c.Max != nil:
					y = *c.Max
				}
				s.missing = append(s.missing, chart.Dot{X: x, Y: y, R: 5, Color: chart.Neutral, Hollow: true,
					Title: fmt.Sprintf("%s: %s", FormatAt(t.At), strings.TrimSpace(checkValue(c)+" "+c.Error))})
				continue
			}
			s.pts = append(s.pts, chart.XY{X: x, Y: *c.Value})
			s.titles = append(s.titles, fmt.Sprintf("%s: %s (%s)", FormatAt(t.At), checkValue(c), checkRange(c)))
			if !c.Passed {
				s.bad = append(s.bad, chart.Dot{X: x, Y: *c.Value, R: 5, Color: chart.Bad, Hollow: !c.Counted,
					Title: fmt.Sprintf("%s: %s outside %s", FormatAt(t.At), checkValue(c), checkRange(c))})
			}
		}
	}
	var out []template.HTML
	for _, s := range order {
		label := s.name
		if s.unit != "" {
			label += " (" + s.unit + ")"
		}
		c := &chart.Chart{Title: "Metric " + s.name, X: timeAxis(), Y: chart.Axis{Label: label}}
		lo, hi := math.Inf(-1), math.Inf(1)
		if s.min != nil {
			lo = *s.min
		}
		if s.max != nil {
			hi = *s.max
		}
		c.Add(chart.Region{Name: "passes (" + rangeText(s.min, s.max, s.unit) + ")", Color: chart.Good, Lo: lo, Hi: hi, Fit: true})
		c.Add(verdictRules(r)...)
		c.Add(chart.Line{Name: s.name, Color: chart.Palette[0], Points: s.pts, Markers: true, Titles: s.titles})
		if len(s.bad) > 0 {
			c.Add(chart.Dots{Name: "failed", Color: chart.Bad, Points: s.bad})
		}
		if len(s.missing) > 0 {
			c.Add(chart.Dots{Name: "no value", Color: chart.Neutral, Points: s.missing})
		}
		out = append(out, c.Render())
	}
	return out
}

func checkValue(c analysis.Check) string {
	if c.Value == nil {
		return "no value"
	}
	return fmt.Sprintf("%.4g%s", *c.Value, unitSuffix(c.Unit))
}

func checkRange(c analysis.Check) string { return rangeText(c.Min, c.Max, c.Unit) }

func rangeText(lo, hi *float64, unit string) string {
	switch {
	case lo != nil && hi != nil:
		return fmt.Sprintf("%g–%g%s", *lo, *hi, unitSuffix(unit))
	case lo != nil:
		return fmt.Sprintf("≥ %g%s", *lo, unitSuffix(unit))
	case hi != nil:
		return fmt.Sprintf("≤ %g%s", *hi, unitSuffix(unit))
	}
	return "no range"
}

func unitSuffix(u string) string {
	switch u {
	case "":
		return ""
	case "%":
		return " %"
	}
	return " " + u
}

var runTmpl = template.Must(template.New("run").Parse(`
<section class="run" id="run-{{.Scenario}}">
<h2>{{.Scenario}} <span class="badge {{.BadgeClass}}">{{.Badge}}</span>
{{if .Passed}}<span class="pass">expectations met</span>{{else}}<span class="fail">expectations not met</span>{{end}}</h2>
{{with .Description}}<p>{{.}}</p>{{end}}
<dl class="facts">
<dt>Canary</dt><dd><code>{{.Canary}}</code></dd>
<dt>Engine</dt><dd>{{.Engine}}{{if gt .Speed 1.0}}, {{.Speed}}× real time{{end}}, Flagger {{.Flagger}}</dd>
<dt>Analysis</dt><dd>interval {{.Interval}}, threshold {{.Threshold}}</dd>
<dt>Verdict</dt><dd>{{.Outcome}}{{with .Decision}} after {{.}} of analysis{{end}}{{if eq .Outcome "Failed"}}, failedChecks {{.FailedChecks}}{{end}}, max canary weight {{.MaxCanaryWeight}} %</dd>
{{with .File}}<dt>File</dt><dd><code>{{.}}</code></dd>{{end}}
<dt>Real time</dt><dd>{{.RealTime}}</dd>
{{with .Error}}<dt>Error</dt><dd class="fail">{{.}}</dd>{{end}}
</dl>
{{if .Expectations}}<table class="expectations">
<tr><th></th><th>Expectation</th><th>Want</th><th>Got</th></tr>
{{range .Expectations}}<tr><td>{{if .Passed}}<span class="pass">✓</span>{{else}}<span class="fail">✗</span>{{end}}</td><td>{{.Name}}</td><td>{{.Want}}</td><td>{{.Got}}</td></tr>
{{end}}</table>{{end}}
{{.Weight}}
{{.Failed}}
{{range .Metrics}}{{.}}
{{end}}
<h3>Failed checks</h3>
{{if .FailedRows}}<table class="failed-checks">
<tr><th class="num">At</th><th>Metric</th><th class="num">Value</th><th>Must be</th><th>Note</th></tr>
{{range .FailedRows}}<tr><td class="num">{{.At}}</td><td>{{.Metric}}</td><td class="num">{{.Value}}</td><td>{{.Range}}</td><td>{{.Note}}</td></tr>
{{end}}</table>{{else}}<p class="muted">No check failed.</p>{{end}}
<h3>Events</h3>
{{if .EventRows}}<table class="events">
<tr><th class="num">At</th><th>Type</th><th>Message</th></tr>
{{range .EventRows}}<tr><td class="num">{{.At}}</td><td{{if .Warning}} class="warning"{{end}}>{{.Type}}</td><td>{{.Message}}</td></tr>
{{end}}</table>{{else}}<p class="muted">No events.</p>{{end}}
{{if .Notes}}<details><summary>{{len .Notes}} notes (actions, load, engine)</summary><ul>
{{range .Notes}}<li><code>{{.}}</code></li>
{{end}}</ul></details>{{end}}
</section>
`))
