package bench

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// WriteMarkdown prints the report for a person: the machine and setup, the
// columns side by side with ratios against the first when two or more ran,
// a table with every figure, and the errors of failed points.
func WriteMarkdown(w io.Writer, r *Report) error {
	var b strings.Builder
	s := r.Settings
	fmt.Fprintf(&b, "## ringbench, %s\n\n", r.Started.UTC().Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(&b, "- machine: %s\n", r.Machine)
	if len(s.Commands) == 0 {
		fmt.Fprintf(&b, "- server: `%s`, %s\n", s.Server, pinNote(s.ServerCPU, s.GeneratorCPUs))
	} else {
		fmt.Fprintf(&b, "- servers (%s), each started on a free port ({addr}):\n", pinNote(s.ServerCPU, s.GeneratorCPUs))
		for _, name := range s.Backends {
			fmt.Fprintf(&b, "  - %s: `%s`\n", name, s.Commands[name])
		}
	}
	fmt.Fprintf(&b, "- %d run(s) per point and server, median shown; %s warm-up, %s measured\n", s.Runs, s.Warmup, s.Duration)
	b.WriteString("- frames/s: frames delivered to clients (pingpong counts both directions); MB/s: payload, 10^6 B/s; " +
		"CPU µs/frame: server CPU time over the window / frames delivered; gen CPU %: the generator's own CPU time, % of one core\n\n")

	if len(s.Backends) >= 2 {
		writeComparison(&b, r)
	}
	writeDetails(&b, r.Points)
	writeSaturation(&b, r)
	writeSpread(&b, r.Points)
	writeErrors(&b, r.Points)
	_, err := io.WriteString(w, b.String())
	return err
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

// cpuList writes cpus comma-separated, in their order, no ranges: what
// {cpus} in a server's command line becomes, since an opponent's flag may
// not read ranges.
func cpuList(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}

// writeComparison prints one table per figure, one row per point and one
// column per server, each figure after the first with its ratio to the
// first.
func writeComparison(b *strings.Builder, r *Report) {
	cols := r.Settings.Backends
	base := cols[0]
	fmt.Fprintf(b, "### %s\n\n", strings.Join(cols, " vs "))
	fmt.Fprintf(b, "In parentheses: the ratio to %s, the first column (for frames/s above 1x is faster than %s; "+
		"for p99, CPU µs/frame and memory below 1x is better). A * marks a median taken with the generator near saturation: "+
		"that figure may measure the generator, not the server.\n\n", base, base)
	var traffic, timed, idle []PointResult
	for _, p := range r.Points {
		switch {
		case p.Point.Workload == "idle":
			idle = append(idle, p) // no traffic: its figure is memory
		case slices.ContainsFunc(p.Backends, func(br BackendResult) bool { return br.Median.RTT != nil }):
			timed = append(timed, p)
			fallthrough
		default:
			traffic = append(traffic, p)
		}
	}
	if len(traffic) > 0 {
		metricTable(b, r, "frames/s", traffic, func(f Figures) float64 { return f.FramesPerSec }, count, true)
	}
	if len(timed) > 0 {
		metricTable(b, r, "round-trip p99 µs", timed, func(f Figures) float64 {
			if f.RTT == nil {
				return 0
			}
			return f.RTT.P99
		}, micros, false)
	}
	if len(traffic) > 0 {
		metricTable(b, r, "server CPU µs/frame", traffic, func(f Figures) float64 {
			if !f.ServerMeasured {
				return 0
			}
			return f.ServerCPUPerFrameUs
		}, func(v float64) string { return fixed(v, 2) }, false)
	}
	if len(idle) > 0 {
		metricTable(b, r, "server memory per idle connection, KiB (RSS growth / connections)", idle,
			func(f Figures) float64 { return f.RSSPerConn / 1024 }, func(v float64) string { return fixed(v, 2) }, false)
	}
}

// metricTable prints one figure for every point and column.
func metricTable(b *strings.Builder, r *Report, title string, points []PointResult, get func(Figures) float64, format func(float64) string, mark bool) {
	fmt.Fprintf(b, "%s:\n\n", title)
	cols := r.Settings.Backends
	head := append(append([]string{"point"}, cols...), "status")
	align := []string{"---"}
	for range cols {
		align = append(align, "---:")
	}
	row(b, head...)
	row(b, append(align, "---")...)
	for _, p := range points {
		cells := []string{p.Point.Name}
		base := get(p.Backends[0].Median)
		for i, br := range p.Backends {
			v := get(br.Median)
			cell := format(v)
			if i > 0 && cell != "-" {
				if q := ratio(v, base); q != "-" {
					cell += " (" + q + "x)"
				}
			}
			if mark && generatorBound(r, br.Median) {
				cell += " *"
			}
			cells = append(cells, cell)
		}
		row(b, append(cells, status(p))...)
	}
	b.WriteString("\n")
}

// writeDetails prints every figure, one row per point and backend.
func writeDetails(b *strings.Builder, points []PointResult) {
	b.WriteString("### All figures\n\n")
	row(b, "point", "server", "frames/s", "MB/s", "p50 µs", "p99 µs", "p99.9 µs", "max µs",
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

// saturated is the generator CPU share, in % of one core per CPU it could
// use, above which it may have been the bottleneck.
const saturated = 90

// generatorBound reports whether the generator was near saturation: its
// CPU time reached saturated% of the CPUs it could use, the fewer of its
// worker threads and the CPUs it was pinned to.
func generatorBound(r *Report, f Figures) bool { return genSaturated(len(r.Settings.GeneratorCPUs), f) }

// genSaturated is generatorBound for a generator pinned to cpus CPUs (0:
// not pinned).
func genSaturated(cpus int, f Figures) bool {
	cores := cpus
	if f.GeneratorThreads > 0 && (cores == 0 || f.GeneratorThreads < cores) {
		cores = f.GeneratorThreads
	}
	return cores > 0 && f.GeneratorCPU >= saturated*float64(cores)
}

// writeSaturation names the rows where the pinned generator was nearly out
// of CPU, because there the server may not have been the limit.
func writeSaturation(b *strings.Builder, r *Report) {
	var rows []string
	for _, p := range r.Points {
		for _, br := range p.Backends {
			if generatorBound(r, br.Median) {
				rows = append(rows, fmt.Sprintf("%s on %s (%.0f%%)", p.Point.Name, br.Backend, br.Median.GeneratorCPU))
			}
		}
	}
	if len(rows) > 0 {
		fmt.Fprintf(b, "Generator near saturation (>= %d%% of the CPUs it could use); these rows may understate the server: %s.\n\n",
			saturated, strings.Join(rows, ", "))
	}
}

// spreadLimit is the ratio of a point's fastest run to its slowest above
// which the runs are said to disagree.
const spreadLimit = 1.5

// writeSpread names the rows whose runs disagree by more than spreadLimit
// in frames/s. A median of such runs stands for neither: the server may
// settle into one of two steady states (see README, Troubleshooting), or
// something else ran on the machine.
func writeSpread(b *strings.Builder, points []PointResult) {
	var rows []string
	for _, p := range points {
		for _, br := range p.Backends {
			if lo, hi, ok := runSpread(br.Runs); ok && hi > spreadLimit*lo {
				rows = append(rows, fmt.Sprintf("%s on %s (%s to %s frames/s)", p.Point.Name, br.Backend, count(lo), count(hi)))
			}
		}
	}
	if len(rows) > 0 {
		fmt.Fprintf(b, "Runs disagree (the fastest over %.1fx the slowest); the median of these rows stands for neither: %s.\n\n",
			spreadLimit, strings.Join(rows, ", "))
	}
}

// runSpread returns the lowest and highest frames/s of the runs that
// measured traffic without errors; ok is false when fewer than two did.
func runSpread(runs []Figures) (lo, hi float64, ok bool) {
	n := 0
	for _, f := range runs {
		if f.Failed() || f.FramesPerSec <= 0 {
			continue
		}
		if n == 0 || f.FramesPerSec < lo {
			lo = f.FramesPerSec
		}
		hi = max(hi, f.FramesPerSec)
		n++
	}
	return lo, hi, n >= 2
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
