package chart

import (
	"math"
	"strings"
	"testing"
)

func TestNiceStep(t *testing.T) {
	tests := []struct{ raw, want float64 }{
		{0.006, 0.01}, {0.004, 0.005}, {0.0015, 0.002}, {1, 1}, {1.2, 2}, {3, 5}, {7, 10}, {45, 50}, {0, 1}, {math.NaN(), 1},
	}
	for _, tt := range tests {
		if got := niceStep(tt.raw); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("niceStep(%g) = %g, want %g", tt.raw, got, tt.want)
		}
	}
}

func TestNiceSeconds(t *testing.T) {
	tests := []struct{ raw, want float64 }{
		{0.4, 1}, {7, 10}, {12, 15}, {40, 60}, {61, 120}, {200, 300}, {1000, 1800}, {4000, 7200},
	}
	for _, tt := range tests {
		if got := niceSeconds(tt.raw); got != tt.want {
			t.Errorf("niceSeconds(%g) = %g, want %g", tt.raw, got, tt.want)
		}
	}
}

func TestAxisTicks(t *testing.T) {
	tests := []struct {
		name   string
		axis   Axis
		lo, hi float64
		want   []string
	}{
		{"auto widens to whole ticks", Axis{}, 0.3, 9.2, []string{"0", "2", "4", "6", "8", "10"}},
		{"fixed range", Axis{Min: 0, Max: 1, Format: Percent}, 0.2, 0.4, []string{"0%", "20%", "40%", "60%", "80%", "100%"}},
		{"small steps without float noise", Axis{Min: 0, Max: 0.03}, 0, 0.03, []string{"0", "0.005", "0.01", "0.015", "0.02", "0.025", "0.03"}},
		{"durations", Axis{Seconds: true}, -60, 540, []string{"-2m", "0s", "2m", "4m", "6m", "8m", "10m"}},
		{"constant", Axis{}, 0, 0, []string{"0", "0.2", "0.4", "0.6", "0.8", "1"}},
		{"categories", Axis{Categories: []string{"a", "b"}}, 0, 1, []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := axisTicks(&tt.axis, tt.lo, tt.hi).labels
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("ticks %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSeconds(t *testing.T) {
	tests := map[float64]string{0: "0s", 12.34: "12.3s", 60: "1m", 90: "1m30s", -120: "-2m", 600: "10m"}
	for v, want := range tests {
		if got := Seconds(v); got != want {
			t.Errorf("Seconds(%g) = %q, want %q", v, got, want)
		}
	}
}

func TestRenderEscapesAndScales(t *testing.T) {
	c := &Chart{Title: `a <b> & "c"`, X: Axis{Label: "x<"}, Y: Axis{Label: "y", Min: 0, Max: 10}}
	c.Add(
		Region{Name: "ok", Color: Good, Lo: 2, Hi: math.Inf(1)},
		Line{Name: "s<1>", Color: Palette[0], Points: []XY{{0, 1}, {1, math.NaN()}, {2, 20}}, Markers: true, Titles: []string{"<t>", "", ""}},
		Dots{Name: "d", Color: Bad, Points: []Dot{{X: 1, Y: 5, Title: "x&y"}}},
		Rule{Label: "r", Color: Bad, Vertical: true, At: 1},
	)
	svg := string(c.Render())
	for _, bad := range []string{"<b>", "s<1>", "<t>", "x<", "x&y"} {
		if strings.Contains(svg, bad) {
			t.Errorf("unescaped %q in %s", bad, svg)
		}
	}
	for _, want := range []string{"a &lt;b&gt; &amp; &#34;c&#34;", "s&lt;1&gt;", "<title>&lt;t&gt;</title>", "x&amp;y"} {
		if !strings.Contains(svg, want) {
			t.Errorf("missing %q", want)
		}
	}
	// The NaN breaks the line: two moves, and the out-of-range 20 is
	// clamped to the plot's top edge.
	if n := strings.Count(svg, `d="M`); n != 1 || strings.Count(svg, "M") < 2 {
		t.Errorf("the line should restart after the NaN: %s", svg)
	}
	if !strings.HasPrefix(svg, `<svg class="chart"`) || !strings.HasSuffix(svg, "</svg>") {
		t.Error("not one svg element")
	}
}

func TestEmptyChart(t *testing.T) {
	svg := string((&Chart{Title: "nothing"}).Render())
	if !strings.Contains(svg, "nothing") {
		t.Error("an empty chart still has its title")
	}
}

func TestPage(t *testing.T) {
	var b strings.Builder
	if err := (Page{Title: "t<1>", Subtitle: "s", Body: "<p>body</p>"}).Write(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{"<!DOCTYPE html>", "<title>t&lt;1&gt;</title>", "<style>", "svg.chart", "<p>body</p>"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "http://") && !strings.Contains(page, "http://www.w3.org") {
		t.Error("the page refers to something outside itself")
	}
}
