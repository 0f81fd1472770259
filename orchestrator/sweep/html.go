package sweep

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/canarylab/canarylab/orchestrator/chart"
)

// HTMLOptions add context to an HTML report.
type HTMLOptions struct {
	// Command is the command line that made the sweep, shown so that a
	// reader can run it again.
	Command string
	// Elapsed is how long the sweep took.
	Elapsed time.Duration
}

// maxDecisionCharts bounds the time-to-decision charts (one per series).
const maxDecisionCharts = 12

// WriteHTML writes the sweep as a self-contained HTML page: detection
// (P(rollback)) against the varied fault size, one line per setting of
// the other varied fields, with its 95 % band; the false-rollback rate of
// a healthy canary likewise; the time to decision as a distribution at
// each point; and the table of every point.
//
// The x axis is the first varied field of the canary with two or more
// numeric values (the fault size), else the first numeric varied field,
// else the first varied field as categories.
func WriteHTML(w io.Writer, r *Result, opts HTMLOptions) error {
	v := newSweepView(r, opts)
	var body bytes.Buffer
	if err := sweepTmpl.Execute(&body, v); err != nil {
		return fmt.Errorf("render sweep %s: %w", r.Scenario, err)
	}
	return chart.Page{
		Title:    "canarylab sweep: " + r.Scenario,
		Subtitle: fmt.Sprintf("%d points × %d runs in virtual time, seed %d", len(r.Points), r.Runs, r.Seed),
		Body:     template.HTML(body.String()), // #nosec G203 -- rendered by html/template
	}.Write(w)
}

// series is the points that share every varied value but the x axis'.
type series struct {
	label  string
	points []*Point
}

// layout is how the sweep is drawn: its x axis and its series.
type layout struct {
	x       int // index of the x vary; -1: none
	numeric bool
	axis    chart.Axis
	series  []series
}

func planLayout(r *Result) layout {
	l := layout{x: -1}
	numeric := func(v Vary) bool {
		if len(v.Values) < 2 {
			return false
		}
		for _, x := range v.Values {
			if _, ok := toFloat(x); !ok {
				return false
			}
		}
		return true
	}
	for pass := range 3 {
		for i, v := range r.Varies {
			if l.x >= 0 {
				break
			}
			switch {
			case pass == 0 && numeric(v) && strings.HasPrefix(v.Path, "canary."),
				pass == 1 && numeric(v):
				l.x, l.numeric = i, true
			case pass == 2 && len(v.Values) >= 2:
				l.x = i
			}
		}
	}
	switch {
	case l.x < 0:
		l.axis = chart.Axis{Label: "point", Categories: []string{"all runs"}}
	case l.numeric:
		var xs []float64
		for _, v := range r.Varies[l.x].Values {
			f, _ := toFloat(v)
			xs = append(xs, f)
		}
		l.axis = chart.Axis{Label: r.Varies[l.x].Path, Min: slices.Min(xs), Max: slices.Max(xs)}
	default:
		var cats []string
		for _, v := range r.Varies[l.x].Values {
			cats = append(cats, FormatValue(v))
		}
		l.axis = chart.Axis{Label: r.Varies[l.x].Path, Categories: cats}
	}
	index := map[string]int{}
	for i := range r.Points {
		p := &r.Points[i]
		var parts []string
		for j, v := range r.Varies {
			if j != l.x {
				parts = append(parts, v.Path+"="+FormatValue(p.Values[v.Path]))
			}
		}
		label := strings.Join(parts, ", ")
		if label == "" {
			label = "P(rollback)"
		}
		k, ok := index[label]
		if !ok {
			k = len(l.series)
			index[label] = k
			l.series = append(l.series, series{label: label})
		}
		l.series[k].points = append(l.series[k].points, p)
	}
	return l
}

// xOf places a point on the x axis.
func (l *layout) xOf(r *Result, p *Point) float64 {
	if l.x < 0 {
		return 0
	}
	v := r.Varies[l.x]
	if l.numeric {
		f, _ := toFloat(p.Values[v.Path])
		return f
	}
	want := FormatValue(p.Values[v.Path])
	for i, c := range l.axis.Categories {
		if c == want {
			return float64(i)
		}
	}
	return 0
}

// gap is the smallest distance between two x positions (1 for
// categories), for offsets that keep neighbours apart.
func (l *layout) gap(r *Result) float64 {
	if !l.numeric {
		return 1
	}
	var xs []float64
	for _, v := range r.Varies[l.x].Values {
		f, _ := toFloat(v)
		xs = append(xs, f)
	}
	slices.Sort(xs)
	g := math.Inf(1)
	for i := 1; i < len(xs); i++ {
		if d := xs[i] - xs[i-1]; d > 0 {
			g = math.Min(g, d)
		}
	}
	if math.IsInf(g, 1) {
		return 1
	}
	return g
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	}
	return 0, false
}

type sweepView struct {
	*Result
	Command, Elapsed string
	TotalRuns        int
	VaryRows         []string
	Detection        template.HTML
	FalseRollback    template.HTML
	Decisions        []template.HTML
	DecisionsLeft    int
	Rows             []pointRow
	Headers          []string
	TimedOut, Errors int
	FirstError       string
	// SharedHealthy: every vary is the canary's, so every point has the
	// same healthy runs and the false-rollback lines are flat.
	SharedHealthy bool
}

type pointRow struct {
	Values                                   []string
	Runs                                     int
	Promote, Rollback, False, Decision, Fail string
}

func newSweepView(r *Result, opts HTMLOptions) sweepView {
	l := planLayout(r)
	v := sweepView{Result: r, Command: opts.Command, SharedHealthy: len(r.Varies) > 0}
	for _, vr := range r.Varies {
		v.SharedHealthy = v.SharedHealthy && strings.HasPrefix(vr.Path, "canary.")
	}
	if opts.Elapsed > 0 {
		v.Elapsed = opts.Elapsed.Round(time.Millisecond).String()
	}
	for _, vr := range r.Varies {
		v.VaryRows = append(v.VaryRows, vr.Spec)
		v.Headers = append(v.Headers, vr.Path)
	}
	v.Detection = probabilityChart(r, &l, "Detection: P(rollback) of the canary", "P(rollback)",
		func(p *Point) (Estimate, bool) { return p.PRollback, p.Runs > 0 })
	if r.Healthy {
		v.FalseRollback = probabilityChart(r, &l, "False rollbacks: P(rollback) of a healthy canary", "P(false rollback)",
			func(p *Point) (Estimate, bool) { return p.FalseRollback, p.HealthyRuns > 0 })
	}
	for i, s := range l.series {
		if i == maxDecisionCharts {
			v.DecisionsLeft = len(l.series) - i
			break
		}
		v.Decisions = append(v.Decisions, decisionChart(r, &l, s, len(l.series) > 1))
	}
	for _, p := range r.Points {
		row := pointRow{Runs: p.Runs, Promote: pctText(p.PPromote), Rollback: pctText(p.PRollback), False: "–", Decision: "–", Fail: "–"}
		for _, vr := range r.Varies {
			row.Values = append(row.Values, FormatValue(p.Values[vr.Path]))
		}
		if p.HealthyRuns > 0 {
			row.False = pctText(p.FalseRollback)
		}
		if p.Promoted+p.RolledBack > 0 {
			row.Decision = shortDuration(p.DecisionP50.Value) + " / " + shortDuration(p.DecisionP90.Value)
		}
		if p.RolledBack > 0 {
			row.Fail = fmt.Sprintf("%.1f", p.FailedChecksMean)
		}
		v.Rows = append(v.Rows, row)
		v.TotalRuns += p.Runs
		v.TimedOut += p.TimedOut
		v.Errors += p.Errors
		if v.FirstError == "" {
			v.FirstError = p.Error
		}
	}
	return v
}

func pctText(e Estimate) string {
	return fmt.Sprintf("%.1f %% [%.1f, %.1f]", 100*e.Value, 100*e.Lo, 100*e.Hi)
}

func shortDuration(d time.Duration) string { return chart.Seconds(d.Seconds()) }

// probabilityChart draws a proportion against x, a line and its 95 %
// band per series.
func probabilityChart(r *Result, l *layout, title, ylabel string, get func(*Point) (Estimate, bool)) template.HTML {
	// The y axis runs to 100 % unless every interval stays low (false
	// rollbacks, usually): then to the next 5 % above them.
	top := 0.0
	for i := range r.Points {
		if e, ok := get(&r.Points[i]); ok {
			top = math.Max(top, e.Hi)
		}
	}
	top = math.Min(1, math.Max(0.05, math.Ceil(top*20)/20))
	c := &chart.Chart{Title: title, Height: 320, X: l.axis, Y: chart.Axis{Label: ylabel, Min: 0, Max: top, Format: chart.Percent}}
	for i, s := range l.series {
		color := chart.Palette[i%len(chart.Palette)]
		var xs, lo, hi []float64
		var pts []chart.XY
		var titles []string
		for _, p := range s.points {
			e, ok := get(p)
			if !ok {
				continue
			}
			x := l.xOf(r, p)
			xs, lo, hi = append(xs, x), append(lo, e.Lo), append(hi, e.Hi)
			pts = append(pts, chart.XY{X: x, Y: e.Value})
			titles = append(titles, fmt.Sprintf("%s: %s %s", pointLabel(r, p), ylabel, pctText(e)))
		}
		c.Add(chart.Band{Color: color, X: xs, Lo: lo, Hi: hi})
		c.Add(chart.Line{Name: s.label, Color: color, Points: pts, Markers: true, Titles: titles})
	}
	return c.Render()
}

// decisionChart draws the distribution of the time to decision at each
// point of a series: a circle per decision time and verdict whose area is
// the share of the point's runs, green for promotions and red for
// rollbacks, with the median.
func decisionChart(r *Result, l *layout, s series, small bool) template.HTML {
	title, width := "Time to decision", 0
	if small { // small multiples, two abreast
		title, width = s.label, 520
	}
	off := 0.12 * l.gap(r)
	x := l.axis
	if l.numeric { // room for the offsets
		x.Min, x.Max = x.Min-2*off, x.Max+2*off
	}
	c := &chart.Chart{Title: title, Width: width, Height: 300, X: x, Y: chart.Axis{Label: "scenario time to the verdict", Seconds: true}}
	var promoted, rolled []chart.Dot
	var p50 []chart.XY
	for _, p := range s.points {
		x := l.xOf(r, p)
		for _, d := range p.Decisions {
			y := d.At.Seconds()
			for _, k := range []struct {
				n     int
				color string
				verb  string
				dx    float64
				into  *[]chart.Dot
			}{{d.Promoted, chart.Good, "promoted", -off, &promoted}, {d.RolledBack, chart.Bad, "rolled back", off, &rolled}} {
				if k.n == 0 {
					continue
				}
				share := float64(k.n) / float64(max(1, p.Runs))
				*k.into = append(*k.into, chart.Dot{X: x + k.dx, Y: y, R: 2 + 10*math.Sqrt(share), Color: k.color,
					Title: fmt.Sprintf("%s: %d of %d runs %s at %s (%.1f %%)", pointLabel(r, p), k.n, p.Runs, k.verb, shortDuration(d.At), 100*share)})
			}
		}
		if p.Promoted+p.RolledBack > 0 {
			p50 = append(p50, chart.XY{X: x, Y: p.DecisionP50.Value.Seconds()})
		}
	}
	c.Add(chart.Line{Name: "median", Color: chart.Neutral, Points: p50, Dashed: true})
	c.Add(chart.Dots{Name: "promoted", Color: chart.Good, Points: promoted})
	c.Add(chart.Dots{Name: "rolled back", Color: chart.Bad, Points: rolled})
	return c.Render()
}

func pointLabel(r *Result, p *Point) string {
	var parts []string
	for _, v := range r.Varies {
		parts = append(parts, v.Path+"="+FormatValue(p.Values[v.Path]))
	}
	return strings.Join(parts, ", ")
}

var sweepTmpl = template.Must(template.New("sweep").Parse(`
<dl class="facts">
<dt>Scenario</dt><dd>{{.Scenario}}</dd>
<dt>Varied</dt><dd>{{range $i, $v := .VaryRows}}{{if $i}}<br>{{end}}<code>--vary {{$v}}</code>{{end}}</dd>
<dt>Runs</dt><dd>{{.Runs}} per point, {{.TotalRuns}} with the fault{{if .Healthy}}, and as many with a healthy canary (shared by points that differ only in the canary){{end}}</dd>
<dt>Seed</dt><dd>{{.Seed}} (the same seed gives the same numbers)</dd>
{{with .Command}}<dt>Command</dt><dd><code>{{.}}</code></dd>{{end}}
{{with .Elapsed}}<dt>Took</dt><dd>{{.}}</dd>{{end}}
</dl>
{{if .TimedOut}}<p class="warning">{{.TimedOut}} runs reached no verdict within the scenario's timeout.</p>{{end}}
{{if .Errors}}<p class="warning">{{.Errors}} runs ended in an error; the first: {{.FirstError}}</p>{{end}}
<h2>Detection</h2>
<p class="note">The share of runs that rolled the canary back, with its 95 % interval (Wilson) shaded. Read across to see
how large a fault must be before the analysis catches it reliably; compare lines to see what a setting buys.</p>
{{.Detection}}
{{if .FalseRollback}}<h2>False rollbacks</h2>
<p class="note">The same analysis with the canary behaving exactly as the stable version: every rollback here is a false
alarm — the price of a stricter setting.{{if .SharedHealthy}} Only the canary is varied here, so every point shares the
same healthy runs and the lines are flat.{{end}}</p>
{{.FalseRollback}}{{end}}
<h2>Time to decision</h2>
<p class="note">Scenario time from the new revision to the verdict. A circle's area is the share of the point's runs decided
then: green promoted, red rolled back; the dashed line is the median over both.</p>
<div class="{{if gt (len .Decisions) 1}}grid2{{end}}">
{{range .Decisions}}{{.}}
{{end}}</div>
{{if .DecisionsLeft}}<p class="muted">{{.DecisionsLeft}} more series are in the table below.</p>{{end}}
<h2>Every point</h2>
<table class="points">
<tr>{{range .Headers}}<th>{{.}}</th>{{end}}<th class="num">runs</th><th>P(promote)</th><th>P(rollback)</th><th>false rollback</th><th>decision p50 / p90</th><th class="num">failed checks</th></tr>
{{range .Rows}}<tr>{{range .Values}}<td>{{.}}</td>{{end}}<td class="num">{{.Runs}}</td><td>{{.Promote}}</td><td>{{.Rollback}}</td><td>{{.False}}</td><td>{{.Decision}}</td><td class="num">{{.Fail}}</td></tr>
{{end}}</table>
<p class="note">P: share of runs with its 95 % interval (Wilson). False rollback: runs with a healthy canary that rolled back.
Failed checks: the mean status.failedChecks when a rollback started.</p>
`))
