package bench

import (
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"
)

// Chart geometry, in SVG user units.
const (
	chartWidth   = 960.0
	plotLeft     = 90.0
	plotRight    = chartWidth - 30
	panelHeight  = 230.0
	panel1Top    = 80.0
	panel2Top    = panel1Top + panelHeight + 110
	chartHeight  = panel2Top + panelHeight + 80
	barGroupFill = 0.7 // share of a point's slot covered by its bars
	maxBarWidth  = 70.0
)

var backendColors = []string{"#3b6fb6", "#e08a2c", "#4f9d55", "#9b5aa3"}

// bar is one value to draw; value <= 0 means there is nothing to draw.
type bar struct {
	value  float64
	failed bool
}

// barGroup is one point's bars, one per backend.
type barGroup struct {
	label string
	bars  []bar
}

// WriteSVG draws two panels of grouped bars, one bar per backend for each
// point: delivered frames/s, and round-trip p99 for the points that measure
// it. Both use a log scale, because frames/s spans orders of magnitude
// between a single ping-pong pair and a flood.
func WriteSVG(w io.Writer, r *Report) error {
	var rates, p99s []barGroup
	for _, p := range r.Points {
		g := barGroup{label: p.Point.Name}
		lat := barGroup{label: p.Point.Name}
		for _, br := range p.Backends {
			f := br.Median
			v := f.FramesPerSec
			if p.Point.Workload == "idle" {
				v = 0
			}
			g.bars = append(g.bars, bar{value: v, failed: f.Failed()})
			if f.RTT != nil {
				lat.bars = append(lat.bars, bar{value: f.RTT.P99, failed: f.Failed()})
			}
		}
		if p.Point.Workload != "idle" {
			rates = append(rates, g)
		}
		if len(lat.bars) > 0 {
			p99s = append(p99s, lat)
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" font-family="sans-serif">`+"\n",
		chartWidth, chartHeight, chartWidth, chartHeight)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	text(&b, chartWidth/2, 24, 16, "middle", "bold", "ringrelay: "+strings.Join(r.Settings.Backends, " vs ")+" ("+r.Started.UTC().Format("2006-01-02 15:04 MST")+")")
	text(&b, chartWidth/2, 44, 11, "middle", "", r.Machine.String())
	legend(&b, r.Settings.Backends)
	panel(&b, panel1Top, "Delivered frames per second (higher is better)", "frames/s, log scale", rates)
	panel(&b, panel2Top, "Round-trip time, 99th percentile (lower is better)", "p99 µs, log scale", p99s)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func legend(b *strings.Builder, backends []string) {
	x := plotRight - 110.0*float64(len(backends))
	for i, name := range backends {
		fmt.Fprintf(b, `<rect x="%.1f" y="56" width="14" height="14" fill="%s"/>`+"\n", x, color(i))
		text(b, x+20, 68, 12, "start", "", name)
		x += 110
	}
}

func color(i int) string { return backendColors[i%len(backendColors)] }

// panel draws one titled plot with its axes, decade grid lines and bars.
func panel(b *strings.Builder, top float64, title, yLabel string, groups []barGroup) {
	bottom := top + panelHeight
	text(b, plotLeft, top-12, 13, "start", "bold", title)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle" transform="rotate(-90 %.1f %.1f)">%s</text>`+"\n",
		plotLeft-62, top+panelHeight/2, plotLeft-62, top+panelHeight/2, esc(yLabel))
	lo, hi, ok := logRange(groups)
	if !ok {
		text(b, (plotLeft+plotRight)/2, top+panelHeight/2, 12, "middle", "", "no data for this panel")
		axes(b, top, bottom)
		return
	}
	y := func(v float64) float64 {
		return bottom - (math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*panelHeight
	}
	for d := lo; d <= hi*1.0001; d *= 10 {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#dddddd"/>`+"\n", plotLeft, y(d), plotRight, y(d))
		text(b, plotLeft-6, y(d)+4, 10, "end", "", si(d))
	}
	axes(b, top, bottom)
	slot := (plotRight - plotLeft) / float64(len(groups))
	for gi, g := range groups {
		width := min(maxBarWidth, slot*barGroupFill/float64(max(1, len(g.bars))))
		x0 := plotLeft + slot*(float64(gi)+0.5) - width*float64(len(g.bars))/2
		for i, bv := range g.bars {
			x := x0 + width*float64(i)
			if bv.value <= 0 {
				text(b, x+width/2, bottom-4, 9, "middle", "", "n/a")
				continue
			}
			stroke := ""
			if bv.failed {
				stroke = ` stroke="#d00000" stroke-width="2"`
			}
			fmt.Fprintf(b, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"%s/>`+"\n",
				x+1, y(bv.value), width-2, bottom-y(bv.value), color(i), stroke)
			label := si(bv.value)
			if bv.failed {
				label = "FAILED"
			}
			text(b, x+width/2, y(bv.value)-3, 9, "middle", "", label)
		}
		text(b, plotLeft+slot*(float64(gi)+0.5), bottom+16, 11, "middle", "", g.label)
	}
	text(b, (plotLeft+plotRight)/2, bottom+36, 11, "middle", "", "load point")
}

func axes(b *strings.Builder, top, bottom float64) {
	fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", plotLeft, top, plotLeft, bottom)
	fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", plotLeft, bottom, plotRight, bottom)
}

// logRange returns the decades that enclose every positive value.
func logRange(groups []barGroup) (lo, hi float64, ok bool) {
	lo, hi = math.Inf(1), 0
	for _, g := range groups {
		for _, bv := range g.bars {
			if bv.value > 0 {
				lo, hi = min(lo, bv.value), max(hi, bv.value)
			}
		}
	}
	if hi == 0 {
		return 0, 0, false
	}
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	if hi <= lo {
		hi = lo * 10
	}
	return lo, hi, true
}

func text(b *strings.Builder, x, y, size float64, anchor, weight, s string) {
	w := ""
	if weight != "" {
		w = fmt.Sprintf(` font-weight="%s"`, weight)
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="%g" text-anchor="%s"%s>%s</text>`+"\n", x, y, size, anchor, w, esc(s))
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // writes to a strings.Builder cannot fail
	return b.String()
}

// si formats v compactly: 950, 12.5k, 3.4M.
func si(v float64) string {
	switch {
	case v >= 1e9:
		return trim(v/1e9) + "G"
	case v >= 1e6:
		return trim(v/1e6) + "M"
	case v >= 1e3:
		return trim(v/1e3) + "k"
	default:
		return trim(v)
	}
}

func trim(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0")
	default:
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
	}
}
