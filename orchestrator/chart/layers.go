package chart

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// Line is a series of points joined by straight segments, or by steps
// when Step is set (the value holds until the next point, as a canary's
// weight does between ticks). Points with a NaN y break the line.
type Line struct {
	Name   string
	Color  string
	Points []XY
	Step   bool
	Dashed bool
	// Markers draws a dot on every point; Titles, when as long as
	// Points, are their hover texts.
	Markers bool
	Titles  []string
}

func (l Line) extent() (bounds, bool)         { return extentOf(l.Points) }
func (l Line) legend() (string, string, bool) { return l.Name, l.Color, l.Dashed }

func (l Line) draw(w *strings.Builder, s *scale) {
	dash := ""
	if l.Dashed {
		dash = ` stroke-dasharray="6 4"`
	}
	var path strings.Builder
	pen := false
	for _, p := range l.Points {
		if !finite(p.X, p.Y) {
			pen = false
			continue
		}
		x, y := s.x(p.X), s.y(p.Y)
		switch {
		case !pen:
			fmt.Fprintf(&path, "M%.1f %.1f", x, y)
		case l.Step:
			fmt.Fprintf(&path, "H%.1fV%.1f", x, y)
		default:
			fmt.Fprintf(&path, "L%.1f %.1f", x, y)
		}
		pen = true
	}
	if path.Len() > 0 {
		fmt.Fprintf(w, `<path d="%s" fill="none" stroke="%s" stroke-width="2"%s/>`, path.String(), l.Color, dash)
	}
	if l.Markers {
		for i, p := range l.Points {
			if !finite(p.X, p.Y) {
				continue
			}
			fmt.Fprintf(w, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s">`, s.x(p.X), s.y(p.Y), l.Color)
			if i < len(l.Titles) {
				fmt.Fprintf(w, `<title>%s</title>`, html.EscapeString(l.Titles[i]))
			}
			w.WriteString(`</circle>`)
		}
	}
}

// Band shades the area between Lo and Hi over X, such as a confidence
// interval around a line.
type Band struct {
	Name   string
	Color  string
	X      []float64
	Lo, Hi []float64
}

func (b Band) extent() (bounds, bool) {
	var pts []XY
	for i, x := range b.X {
		pts = append(pts, XY{x, b.Lo[i]}, XY{x, b.Hi[i]})
	}
	return extentOf(pts)
}

func (b Band) legend() (string, string, bool) { return b.Name, b.Color, false }

func (b Band) draw(w *strings.Builder, s *scale) {
	if len(b.X) == 0 {
		return
	}
	var pts []string
	for i, x := range b.X {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", s.x(x), s.y(b.Hi[i])))
	}
	for i := len(b.X) - 1; i >= 0; i-- {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", s.x(b.X[i]), s.y(b.Lo[i])))
	}
	fmt.Fprintf(w, `<polygon points="%s" fill="%s" fill-opacity="0.18" stroke="none"/>`, strings.Join(pts, " "), b.Color)
}

// Dot is one point of Dots.
type Dot struct {
	X, Y float64
	// R is the radius in pixels (default 3.5).
	R float64
	// Color overrides the layer's.
	Color string
	// Hollow draws a ring.
	Hollow bool
	Title  string
}

// Dots are individually sized, coloured and titled points: failed checks,
// or a distribution drawn as circles whose area is a share.
type Dots struct {
	Name   string
	Color  string
	Points []Dot
}

func (d Dots) extent() (bounds, bool) {
	pts := make([]XY, len(d.Points))
	for i, p := range d.Points {
		pts[i] = XY{p.X, p.Y}
	}
	return extentOf(pts)
}

func (d Dots) legend() (string, string, bool) { return d.Name, d.Color, false }

func (d Dots) draw(w *strings.Builder, s *scale) {
	for _, p := range d.Points {
		if !finite(p.X, p.Y) {
			continue
		}
		r, c := p.R, p.Color
		if r <= 0 {
			r = 3.5
		}
		if c == "" {
			c = d.Color
		}
		fill := fmt.Sprintf(`fill="%s" fill-opacity="0.75"`, c)
		if p.Hollow {
			fill = fmt.Sprintf(`fill="white" stroke="%s" stroke-width="2"`, c)
		}
		fmt.Fprintf(w, `<circle cx="%.1f" cy="%.1f" r="%.1f" %s>`, s.x(p.X), s.y(p.Y), r, fill)
		if p.Title != "" {
			fmt.Fprintf(w, `<title>%s</title>`, html.EscapeString(p.Title))
		}
		w.WriteString(`</circle>`)
	}
}

// Region shades y values from Lo to Hi across the plot (either may be
// infinite: the region then runs to the plot's edge), such as the range a
// metric must stay in. Its bounds do not widen the axes unless Fit is set.
type Region struct {
	Name   string
	Color  string
	Lo, Hi float64
	Fit    bool
}

func (r Region) extent() (bounds, bool) {
	if !r.Fit {
		return bounds{}, false
	}
	b, ok := emptyBounds(), false
	for _, v := range []float64{r.Lo, r.Hi} {
		if finite(v) {
			b.y0, b.y1 = math.Min(b.y0, v), math.Max(b.y1, v)
			ok = true
		}
	}
	if ok { // no x extent
		b.x0, b.x1 = math.Inf(1), math.Inf(-1)
	}
	return b, ok
}

func (r Region) legend() (string, string, bool) { return r.Name, r.Color, false }

func (r Region) draw(w *strings.Builder, s *scale) {
	top, bottom := s.top, s.bottom
	if !math.IsInf(r.Hi, 1) {
		top = s.y(r.Hi)
	}
	if !math.IsInf(r.Lo, -1) {
		bottom = s.y(r.Lo)
	}
	if bottom <= top {
		return
	}
	fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="0.12"/>`, s.left, top, s.right-s.left, bottom-top, r.Color)
	for _, v := range []float64{r.Lo, r.Hi} {
		if finite(v) && v >= s.y0 && v <= s.y1 {
			y := s.y(v)
			fmt.Fprintf(w, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="4 3"/>`, s.left, s.right, y, y, r.Color)
		}
	}
}

// Rule is a labelled line across the plot: vertical at X when Vertical
// is set, else horizontal at Y.
type Rule struct {
	Label    string
	Color    string
	Vertical bool
	At       float64
	Dashed   bool
}

func (r Rule) extent() (bounds, bool) {
	if !finite(r.At) {
		return bounds{}, false
	}
	if r.Vertical {
		return bounds{r.At, r.At, math.Inf(1), math.Inf(-1)}, true
	}
	return bounds{math.Inf(1), math.Inf(-1), r.At, r.At}, true
}

func (r Rule) legend() (string, string, bool) { return "", "", false }

func (r Rule) draw(w *strings.Builder, s *scale) {
	dash := ""
	if r.Dashed {
		dash = ` stroke-dasharray="6 4"`
	}
	label := html.EscapeString(r.Label)
	if r.Vertical {
		x := s.x(r.At)
		fmt.Fprintf(w, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5"%s/>`, x, x, s.top, s.bottom, r.Color, dash)
		anchor, dx := "end", -4.0
		if x < (s.left+s.right)/2 {
			anchor, dx = "start", 4
		}
		fmt.Fprintf(w, `<text class="rule" x="%.1f" y="%.1f" text-anchor="%s" fill="%s">%s</text>`, x+dx, s.top+14, anchor, r.Color, label)
		return
	}
	y := s.y(r.At)
	fmt.Fprintf(w, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5"%s/>`, s.left, s.right, y, y, r.Color, dash)
	fmt.Fprintf(w, `<text class="rule" x="%.1f" y="%.1f" text-anchor="end" fill="%s">%s</text>`, s.right-4, y-4, r.Color, label)
}
