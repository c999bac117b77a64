package bench

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// WriteMarkdown prints the report for a person: the machine and setup, a
// side-by-side table with ratios when two backends ran, a table with every
// figure, and the errors of failed points.
func WriteMarkdown(w io.Writer, r *Report) error {
	var b strings.Builder
	s := r.Settings
	fmt.Fprintf(&b, "## ringbench, %s\n\n", r.Started.UTC().Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(&b, "- machine: %s\n", r.Machine)
	fmt.Fprintf(&b, "- server: `%s`%s, %s\n", s.Server, flagsNote(s.ServerFlags), pinNote(s.ServerCPU, s.GeneratorCPUs))
	fmt.Fprintf(&b, "- %d run(s) per point and backend, median shown; %s warm-up, %s measured\n", s.Runs, s.Warmup, s.Duration)
	b.WriteString("- frames/s: frames delivered to clients (pingpong counts both directions); MB/s: payload, 10^6 B/s; " +
		"CPU µs/frame: server CPU time over the window / frames delivered; gen CPU %: the generator's own CPU time, % of one core\n\n")

	if len(s.Backends) == 2 {
		writeComparison(&b, r)
	}
	writeDetails(&b, r.Points)
	writeSaturation(&b, r)
	writeErrors(&b, r.Points)
	_, err := io.WriteString(w, b.String())
	return err
}

func flagsNote(flags []string) string {
	if len(flags) == 0 {
		return ""
	}
	return " " + strings.Join(flags, " ")
}

func pinNote(server int, gen []int) string {
	var parts []string
	if server >= 0 {
		parts = append(parts, fmt.Sprintf("server pinned to CPU %d", server))
	}
	if len(gen) > 0 {
		parts = append(parts, fmt.Sprintf("generator to CPU %s", cpuList(gen)))
	}
	if len(parts) == 0 {
		return "server and generator not pinned"
	}
	return strings.Join(parts, ", ")
}

func cpuList(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}

// writeComparison prints one row per point with the two backends side by
// side and their ratio.
func writeComparison(b *strings.Builder, r *Report) {
	x, y := r.Settings.Backends[0], r.Settings.Backends[1]
	fmt.Fprintf(b, "### %s vs %s\n\n", x, y)
	fmt.Fprintf(b, "Ratios are %s/%s: for frames/s above 1 favours %s; for p99 and CPU/frame below 1 favours %s.\n\n", x, y, x, x)
	row(b, "point",
		"frames/s "+x, "frames/s "+y, "ratio",
		"p99 µs "+x, "p99 µs "+y, "ratio",
		"CPU µs/frame "+x, "CPU µs/frame "+y, "ratio", "status")
	row(b, "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---")
	var idle []PointResult
	for _, p := range r.Points {
		if p.Point.Workload == "idle" {
			idle = append(idle, p) // no traffic: its figure is memory
			continue
		}
		fx, fy := p.Backends[0].Median, p.Backends[1].Median
		p99 := func(f Figures) float64 {
			if f.RTT == nil {
				return 0
			}
			return f.RTT.P99
		}
		cpu := func(f Figures) float64 {
			if !f.ServerMeasured {
				return 0
			}
			return f.ServerCPUPerFrameUs
		}
		row(b, p.Point.Name,
			count(fx.FramesPerSec), count(fy.FramesPerSec), ratio(fx.FramesPerSec, fy.FramesPerSec),
			micros(p99(fx)), micros(p99(fy)), ratio(p99(fx), p99(fy)),
			fixed(cpu(fx), 2), fixed(cpu(fy), 2), ratio(cpu(fx), cpu(fy)),
			status(p))
	}
	b.WriteString("\n")
	if len(idle) == 0 {
		return
	}
	fmt.Fprintf(b, "Server memory per idle connection (RSS growth / connections; below 1 favours %s):\n\n", x)
	row(b, "point", "RSS/conn KiB "+x, "RSS/conn KiB "+y, "ratio", "status")
	row(b, "---", "---:", "---:", "---:", "---")
	for _, p := range idle {
		kx, ky := p.Backends[0].Median.RSSPerConn/1024, p.Backends[1].Median.RSSPerConn/1024
		row(b, p.Point.Name, fixed(kx, 2), fixed(ky, 2), ratio(kx, ky), status(p))
	}
	b.WriteString("\n")
}

// writeDetails prints every figure, one row per point and backend.
func writeDetails(b *strings.Builder, points []PointResult) {
	b.WriteString("### All figures\n\n")
	row(b, "point", "backend", "frames/s", "MB/s", "p50 µs", "p99 µs", "p99.9 µs", "max µs",
		"srv CPU µs/frame", "srv RSS MiB", "RSS/conn KiB", "gen CPU %", "errors")
	row(b, "---", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:")
	for _, p := range points {
		idle := p.Point.Workload == "idle"
		for _, br := range p.Backends {
			f := br.Median
			var lat Latency
			if f.RTT != nil {
				lat = *f.RTT
			}
			rate, mb, cpu := f.FramesPerSec, f.MBPerSec, f.ServerCPUPerFrameUs
			if idle {
				rate, mb, cpu = 0, 0, 0
			}
			rss, perConn := "-", "-"
			if f.ServerMeasured {
				rss = fixed(float64(f.ServerRSS)/(1<<20), 1)
				if idle {
					perConn = fixed(f.RSSPerConn/1024, 2)
				}
			} else {
				cpu = 0
			}
			row(b, p.Point.Name, br.Backend, count(rate), fixed(mb, 1),
				micros(lat.P50), micros(lat.P99), micros(lat.P999), micros(lat.Max),
				fixed(cpu, 2), rss, perConn, fixed(f.GeneratorCPU, 0), errorsCell(f))
		}
	}
	b.WriteString("\n")
}

// saturated is the generator CPU share, in % of one core per CPU it is
// pinned to, above which it may have been the bottleneck.
const saturated = 90

// writeSaturation names the rows where the pinned generator was nearly out
// of CPU, because there the server may not have been the limit.
func writeSaturation(b *strings.Builder, r *Report) {
	cores := len(r.Settings.GeneratorCPUs)
	if cores == 0 {
		return
	}
	var rows []string
	for _, p := range r.Points {
		for _, br := range p.Backends {
			if br.Median.GeneratorCPU >= saturated*float64(cores) {
				rows = append(rows, fmt.Sprintf("%s on %s (%.0f%%)", p.Point.Name, br.Backend, br.Median.GeneratorCPU))
			}
		}
	}
	if len(rows) > 0 {
		fmt.Fprintf(b, "Generator near saturation (>= %d%% of its %d CPU(s)); these rows may understate the server: %s.\n\n",
			saturated, cores, strings.Join(rows, ", "))
	}
}

func writeErrors(b *strings.Builder, points []PointResult) {
	first := true
	for _, p := range points {
		for _, br := range p.Backends {
			if !br.Median.Failed() {
				continue
			}
			if first {
				b.WriteString("### Errors\n\n")
				first = false
			}
			fmt.Fprintf(b, "- %s on %s: %d error(s)\n", p.Point.Name, br.Backend, br.Median.Errors)
			for _, e := range br.Median.ErrorSamples {
				fmt.Fprintf(b, "  - %s\n", e)
			}
		}
	}
	if !first {
		b.WriteString("\n")
	}
}

func row(b *strings.Builder, cells ...string) {
	b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
}

func status(p PointResult) string {
	var bad []string
	for _, br := range p.Backends {
		if br.Median.Failed() {
			bad = append(bad, br.Backend)
		}
	}
	if len(bad) == 0 {
		return "ok"
	}
	return "FAILED (" + strings.Join(bad, ", ") + ")"
}

func errorsCell(f Figures) string {
	if f.Failed() {
		return fmt.Sprintf("FAILED (%d)", f.Errors)
	}
	return "0"
}

// count formats a rate with thousands separators; 0 is shown as "-".
func count(v float64) string {
	if v <= 0 {
		return "-"
	}
	s := strconv.FormatInt(int64(v+0.5), 10)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// micros formats microseconds with about three significant digits; 0 is
// shown as "-".
func micros(v float64) string {
	switch {
	case v <= 0:
		return "-"
	case v < 10:
		return fixed(v, 2)
	case v < 1000:
		return fixed(v, 1)
	default:
		return count(v)
	}
}

// fixed formats v with the given decimals; 0 is shown as "-".
func fixed(v float64, decimals int) string {
	if v <= 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', decimals, 64)
}

// ratio is x/y, or "-" when either is missing.
func ratio(x, y float64) string {
	if x <= 0 || y <= 0 {
		return "-"
	}
	return strconv.FormatFloat(x/y, 'f', 2, 64)
}
