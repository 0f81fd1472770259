// Package chart draws the charts of canarylab's HTML reports as inline
// SVG, and wraps them in a self-contained page: no script, no stylesheet
// or font to fetch, so a report opens the same from a CI artifact, an
// e-mail or a laptop offline.
//
// A [Chart] has two linear axes and layers drawn in order: [Line] (also
// as steps), [Band] (an interval around a line), [Dots] (sized and
// titled points), [Region] (a shaded range of y, such as a threshold's
// acceptable values) and [Rule] (a labelled vertical or
// horizontal line). Every point carries an SVG <title>, which browsers
// show on hover.
package chart

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"
)

// Palette is a colour-blind-safe palette (Okabe and Ito) for series.
var Palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999999"}

// Colours with a meaning across reports.
const (
	Good    = "#1a9850"
	Bad     = "#d73027"
	Neutral = "#4d4d4d"
)

// Axis is one axis of a chart.
type Axis struct {
	// Label names the axis, with its unit.
	Label string
	// Min and Max fix the range; when both are zero (or equal) the range
	// is the layers' extent, widened to nice ticks.
	Min, Max float64
	// Format formats tick values (default: %g).
	Format func(float64) string
	// Categories, if set, makes the axis categorical: value i is drawn at
	// position i and labelled Categories[i].
	Categories []string
	// Seconds says the values are seconds: ticks fall on whole seconds,
	// minutes or hours and read as durations (Format defaults to Seconds).
	Seconds bool
}

// Chart is one SVG chart.
type Chart struct {
	// Title is drawn above the plot and read by screen readers.
	Title string
	// Width and Height are the SVG's size in pixels (default 960×260).
	Width, Height int
	X, Y          Axis
	layers        []Layer
}

// Layer is something drawn in a chart's plot area.
type Layer interface {
	// extent returns the layer's data bounds; ok is false when it has no
	// finite data (it then does not widen the axes).
	extent() (b bounds, ok bool)
	draw(w *strings.Builder, s *scale)
	// legend returns the layer's legend entry ("" for none).
	legend() (name, color string, dashed bool)
}

// Add appends layers; later layers are drawn on top.
func (c *Chart) Add(l ...Layer) *Chart {
	c.layers = append(c.layers, l...)
	return c
}

// XY is a data point.
type XY struct{ X, Y float64 }

type bounds struct{ x0, x1, y0, y1 float64 }

func (b *bounds) grow(o bounds) {
	b.x0, b.x1 = math.Min(b.x0, o.x0), math.Max(b.x1, o.x1)
	b.y0, b.y1 = math.Min(b.y0, o.y0), math.Max(b.y1, o.y1)
}

func emptyBounds() bounds { return bounds{math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)} }

func finite(v ...float64) bool {
	for _, f := range v {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return false
		}
	}
	return true
}

func extentOf(pts []XY) (bounds, bool) {
	b, ok := emptyBounds(), false
	for _, p := range pts {
		if finite(p.X, p.Y) {
			b.grow(bounds{p.X, p.X, p.Y, p.Y})
			ok = true
		}
	}
	return b, ok
}

// scale maps data to pixels.
type scale struct {
	left, right, top, bottom float64 // plot area, px
	x0, x1, y0, y1           float64 // data range
}

func (s *scale) x(v float64) float64 {
	if s.x1 == s.x0 {
		return (s.left + s.right) / 2
	}
	return s.left + (clamp(v, s.x0, s.x1)-s.x0)/(s.x1-s.x0)*(s.right-s.left)
}

func (s *scale) y(v float64) float64 {
	if s.y1 == s.y0 {
		return (s.top + s.bottom) / 2
	}
	return s.bottom - (clamp(v, s.y0, s.y1)-s.y0)/(s.y1-s.y0)*(s.bottom-s.top)
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

// Render draws the chart as an inline SVG element.
func (c *Chart) Render() template.HTML {
	w, h := c.Width, c.Height
	if w <= 0 {
		w = 960
	}
	if h <= 0 {
		h = 260
	}
	b, any := emptyBounds(), false
	for _, l := range c.layers {
		if lb, ok := l.extent(); ok {
			b.grow(lb)
			any = true
		}
	}
	if !any {
		b = bounds{0, 1, 0, 1}
	}
	xt := axisTicks(&c.X, b.x0, b.x1)
	yt := axisTicks(&c.Y, b.y0, b.y1)

	var legend []legendEntry
	for _, l := range c.layers {
		if name, color, dashed := l.legend(); name != "" {
			legend = append(legend, legendEntry{name, color, dashed, legendKind(l)})
		}
	}
	const titleH, left, right, bottom = 28.0, 64.0, 32.0, 44.0
	legendRows := legendHeight(legend, float64(w)-left-right)
	s := &scale{left: left, right: float64(w) - right, top: titleH + legendRows + 6, bottom: float64(h) - bottom,
		x0: xt.lo, x1: xt.hi, y0: yt.lo, y1: yt.hi}
	h += int(legendRows)
	s.bottom += legendRows

	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`,
		w, h, w, h, html.EscapeString(c.Title))
	fmt.Fprintf(&sb, `<title>%s</title>`, html.EscapeString(c.Title))
	fmt.Fprintf(&sb, `<text class="title" x="%g" y="18">%s</text>`, left, html.EscapeString(c.Title))
	drawLegend(&sb, legend, left, titleH, float64(w)-left-right)
	// Grid and ticks.
	for i, v := range yt.values {
		y := s.y(v)
		fmt.Fprintf(&sb, `<line class="grid" x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f"/>`, s.left, s.right, y, y)
		fmt.Fprintf(&sb, `<text class="tick" x="%.1f" y="%.1f" text-anchor="end">%s</text>`, s.left-6, y+4, html.EscapeString(yt.labels[i]))
	}
	for i, v := range xt.values {
		x := s.x(v)
		fmt.Fprintf(&sb, `<line class="grid" x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f"/>`, x, x, s.top, s.bottom)
		fmt.Fprintf(&sb, `<text class="tick" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, x, s.bottom+16, html.EscapeString(xt.labels[i]))
	}
	fmt.Fprintf(&sb, `<rect class="frame" x="%.1f" y="%.1f" width="%.1f" height="%.1f"/>`, s.left, s.top, s.right-s.left, s.bottom-s.top)
	fmt.Fprintf(&sb, `<text class="label" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, (s.left+s.right)/2, s.bottom+36, html.EscapeString(c.X.Label))
	fmt.Fprintf(&sb, `<text class="label" transform="translate(14 %.1f) rotate(-90)" text-anchor="middle">%s</text>`, (s.top+s.bottom)/2, html.EscapeString(c.Y.Label))
	for _, l := range c.layers {
		l.draw(&sb, s)
	}
	sb.WriteString(`</svg>`)
	return template.HTML(sb.String()) // #nosec G203 -- every text is escaped above
}

type legendEntry struct {
	name, color string
	dashed      bool
	kind        string // "line", "dot", "ring" or "area"
}

func legendKind(l Layer) string {
	switch l := l.(type) {
	case Dots:
		if len(l.Points) > 0 && l.Points[0].Hollow {
			return "ring"
		}
		return "dot"
	case Band, Region:
		return "area"
	}
	return "line"
}

// legendWidth estimates an entry's width: 7 px a character at 12 px.
func legendWidth(e legendEntry) float64 { return 28 + 7*float64(len([]rune(e.name))) + 16 }

func legendHeight(entries []legendEntry, width float64) float64 {
	if len(entries) == 0 {
		return 0
	}
	rows, x := 1.0, 0.0
	for _, e := range entries {
		if x > 0 && x+legendWidth(e) > width {
			rows, x = rows+1, 0
		}
		x += legendWidth(e)
	}
	return rows * 18
}

func drawLegend(sb *strings.Builder, entries []legendEntry, left, top, width float64) {
	x, y := 0.0, top+8
	for _, e := range entries {
		if x > 0 && x+legendWidth(e) > width {
			x, y = 0, y+18
		}
		dash := ""
		if e.dashed {
			dash = ` stroke-dasharray="5 3"`
		}
		switch e.kind {
		case "ring":
			fmt.Fprintf(sb, `<circle cx="%.1f" cy="%.1f" r="5" fill="white" stroke="%s" stroke-width="2"/>`, left+x+11, y, e.color)
		case "dot":
			fmt.Fprintf(sb, `<circle cx="%.1f" cy="%.1f" r="5" fill="%s" fill-opacity="0.75"/>`, left+x+11, y, e.color)
		case "area":
			fmt.Fprintf(sb, `<rect x="%.1f" y="%.1f" width="22" height="10" fill="%s" fill-opacity="0.25"/>`, left+x, y-5, e.color)
		default:
			fmt.Fprintf(sb, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="2.5"%s/>`, left+x, left+x+22, y, y, e.color, dash)
		}
		fmt.Fprintf(sb, `<text class="legend" x="%.1f" y="%.1f">%s</text>`, left+x+28, y+4, html.EscapeString(e.name))
		x += legendWidth(e)
	}
}

// ticks is an axis' range and its labelled values.
type ticks struct {
	lo, hi float64
	values []float64
	labels []string
}

func axisTicks(a *Axis, lo, hi float64) ticks {
	format := a.Format
	switch {
	case format == nil && a.Seconds:
		format = Seconds
	case format == nil:
		format = func(v float64) string { return trimFloat(v) }
	}
	if n := len(a.Categories); n > 0 {
		t := ticks{lo: -0.5, hi: float64(n) - 0.5}
		for i, c := range a.Categories {
			t.values = append(t.values, float64(i))
			t.labels = append(t.labels, c)
		}
		return t
	}
	if a.Min != a.Max {
		lo, hi = a.Min, a.Max
	}
	if lo == hi {
		lo, hi = lo-1, hi+1
		if lo < 0 && hi > 0 && lo == -1 { // a constant 0: 0..1 reads better
			lo = 0
		}
	}
	step := niceStep((hi - lo) / 6)
	if a.Seconds {
		step = niceSeconds((hi - lo) / 6)
	}
	t := ticks{lo: lo, hi: hi}
	if a.Min == a.Max { // automatic: widen to whole ticks
		t.lo, t.hi = math.Floor(lo/step)*step, math.Ceil(hi/step)*step
	}
	for v := math.Ceil(t.lo/step) * step; v <= t.hi+step*1e-9; v += step {
		v = math.Round(v/step) * step // no 0.30000000000000004
		t.values = append(t.values, v)
		t.labels = append(t.labels, format(v))
	}
	return t
}

// niceStep rounds a raw tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || !finite(raw) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	switch f := raw / p; {
	case f <= 1:
		return p
	case f <= 2:
		return 2 * p
	case f <= 5:
		return 5 * p
	default:
		return 10 * p
	}
}

// niceSeconds rounds a raw tick step in seconds up to a step a clock
// reads well: 1, 2, 5, 10, 15 or 30 seconds, minutes or hours.
func niceSeconds(raw float64) float64 {
	for _, unit := range []float64{1, 60, 3600} {
		for _, m := range []float64{1, 2, 5, 10, 15, 30} {
			if raw <= m*unit {
				return m * unit
			}
		}
	}
	return niceStep(raw/3600) * 3600
}

func trimFloat(v float64) string {
	if v == 0 {
		return "0"
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.6f", v), "0"), ".")
}

// Percent formats a proportion in [0, 1] as a percentage.
func Percent(v float64) string { return trimFloat(math.Round(v*1000)/10) + "%" }

// Seconds formats a value in seconds as a short duration (90 → 1m30s).
func Seconds(v float64) string {
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	m, s := math.Floor(v/60), math.Mod(v, 60)
	switch {
	case m == 0:
		return sign + trimFloat(math.Round(s*10)/10) + "s"
	case s < 0.05:
		return sign + trimFloat(m) + "m"
	default:
		return sign + trimFloat(m) + "m" + trimFloat(math.Round(s)) + "s"
	}
}
