package main

import (
	"bytes"
	"fmt"
	"html"
	"math"
)

// plotPoint is one second of a run.
type plotPoint struct {
	T     float64 // seconds since the run started
	Dps   float64 // deliveries per second
	P99   float64 // p99 latency of that second's deliveries, ms
	Pps   float64 // accepted pushes per second
	Conns int64
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// renderSVG draws deliveries/s (left axis, blue) and p99 latency (right
// axis, red) against time: a self-contained SVG, no dependencies.
func renderSVG(title string, pts []plotPoint) []byte {
	const w, h, left, right, top, bottom = 900.0, 360.0, 80.0, 70.0, 40.0, 45.0
	pw, ph := w-left-right, h-top-bottom
	var tMax, dMax, lMax float64
	for _, p := range pts {
		tMax, dMax, lMax = math.Max(tMax, p.T), math.Max(dMax, p.Dps), math.Max(lMax, p.P99)
	}
	tMax, dMax, lMax = niceCeil(tMax), niceCeil(dMax), niceCeil(lMax)
	x := func(t float64) float64 { return left + pw*t/tMax }
	yd := func(v float64) float64 { return top + ph*(1-v/dMax) }
	yl := func(v float64) float64 { return top + ph*(1-v/lMax) }
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="14">%s</text>`+"\n", left, html.EscapeString(title))
	for i := 0; i <= 5; i++ {
		f := float64(i) / 5
		y := top + ph*(1-f)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, y, left+pw, y)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#1f5fbf">%s</text>`+"\n", left-6, y+4, human(f*dMax))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#c0392b">%g ms</text>`+"\n", left+pw+6, y+4, f*lMax)
		xt := left + pw*f
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%g s</text>`+"\n", xt, top+ph+18, f*tMax)
	}
	fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#888"/>`+"\n", left, top, pw, ph)
	line := func(color string, y func(plotPoint) float64) {
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="`, color)
		for _, p := range pts {
			fmt.Fprintf(&b, "%.1f,%.1f ", x(p.T), y(p))
		}
		b.WriteString(`"/>` + "\n")
	}
	line("#1f5fbf", func(p plotPoint) float64 { return yd(p.Dps) })
	line("#c0392b", func(p plotPoint) float64 { return yl(p.P99) })
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="#1f5fbf">deliveries/s</text>`+"\n", left, h-8)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="#c0392b">p99 latency (per second)</text>`+"\n", left+120, h-8)
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// human formats a count with k/M suffixes.
func human(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.3gk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}
