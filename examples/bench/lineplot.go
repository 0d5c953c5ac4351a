package main

import (
	"bytes"
	"fmt"
	"html"
	"math"
)

// lineSeries is one line of a linePlot: a value per x, drawn against the
// left axis or, with right set, the right one.
type lineSeries struct {
	name, color string
	ys          []float64
	right       bool
}

// renderLines draws series against xs (points marked, joined by lines),
// with a left axis and, when a series asks for it, a right one; both
// start at 0. A self-contained SVG in renderSVG's style.
func renderLines(title, xLabel, leftLabel, rightLabel string, xs []float64, series []lineSeries) []byte {
	const w, h, left, right, top, bottom = 720.0, 340.0, 80.0, 80.0, 40.0, 60.0
	pw, ph := w-left-right, h-top-bottom
	var xMax, lMax, rMax float64
	for _, x := range xs {
		xMax = math.Max(xMax, x)
	}
	for _, s := range series {
		for _, y := range s.ys {
			if s.right {
				rMax = math.Max(rMax, y)
			} else {
				lMax = math.Max(lMax, y)
			}
		}
	}
	xMax, lMax, rMax = niceCeil(xMax), niceCeil(lMax), niceCeil(rMax)
	px := func(x float64) float64 { return left + pw*x/xMax }
	py := func(y, ymax float64) float64 { return top + ph*(1-y/ymax) }
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="14">%s</text>`+"\n", left, html.EscapeString(title))
	hasRight := false
	for _, s := range series {
		hasRight = hasRight || s.right
	}
	for i := 0; i <= 5; i++ {
		f := float64(i) / 5
		y := top + ph*(1-f)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, y, left+pw, y)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, axisNum(f*lMax))
		if hasRight {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", left+pw+6, y+4, axisNum(f*rMax))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", left+pw*f, top+ph+18, axisNum(f*xMax))
	}
	fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#888"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", left+pw/2, top+ph+36, html.EscapeString(xLabel))
	fmt.Fprintf(&b, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", top+ph/2, html.EscapeString(leftLabel))
	if hasRight {
		fmt.Fprintf(&b, `<text transform="translate(%.1f %.1f) rotate(90)" text-anchor="middle">%s</text>`+"\n", w-14, top+ph/2, html.EscapeString(rightLabel))
	}
	legend := left
	for _, s := range series {
		ymax := lMax
		if s.right {
			ymax = rMax
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="`, s.color)
		for i, y := range s.ys {
			fmt.Fprintf(&b, "%.1f,%.1f ", px(xs[i]), py(y, ymax))
		}
		b.WriteString(`"/>` + "\n")
		for i, y := range s.ys {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", px(xs[i]), py(y, ymax), s.color)
		}
		name := s.name
		if s.right {
			name += " (right axis)"
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="%s">%s</text>`+"\n", legend, h-8, s.color, html.EscapeString(name))
		legend += 9*float64(len(name)) + 20
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// axisNum is an axis label: k/M suffixes for counts, up to 3 significant
// digits below 1,000.
func axisNum(v float64) string {
	if v >= 1e3 {
		return human(v)
	}
	return fmt.Sprintf("%.3g", v)
}
