package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ScaleReport is everything one `ringbench scale` produced; it is what its
// JSON file holds.
type ScaleReport struct {
	Machine  Machine       `json:"machine"`
	Started  time.Time     `json:"started"`
	Finished time.Time     `json:"finished"`
	Command  []string      `json:"command"`
	Settings ScaleSettings `json:"settings"`
	Points   []ScalePoint  `json:"points"`
	// Interrupted says the run was stopped before the end: the report
	// holds what was measured by then.
	Interrupted bool `json:"interrupted,omitempty"`
}

// ScaleSettings records how a scale run was set up.
type ScaleSettings struct {
	Columns        []string          `json:"columns"`                 // in order; ratios are against the first
	Commands       map[string]string `json:"commands"`                // column -> command line template
	Fixed          []string          `json:"fixed_columns,omitempty"` // columns whose command has no {loops}
	Runs           int               `json:"runs"`
	Warmup         string            `json:"warmup"`
	Duration       string            `json:"duration"`
	ServerCPUs     []int             `json:"server_cpus"`
	GeneratorCPUs  []int             `json:"generator_cpus,omitempty"` // empty: not pinned
	ThreadsPerCore int               `json:"threads_per_core,omitempty"`
	Handoff        bool              `json:"handoff,omitempty"`
	Steps          []Step            `json:"steps"`
	// StartLines holds each column's start line (see Server.StartLine)
	// by loop count, from its last start.
	StartLines map[string]map[int]string `json:"server_start_lines,omitempty"`
}

// ScalePoint is one point at every step and column.
type ScalePoint struct {
	Point Point      `json:"point"`
	Rows  []ScaleRow `json:"rows"` // step by step, the columns in order within each
}

// ScaleRow is one point on one column at one step: every run, their
// median, and the ratios the report shows.
type ScaleRow struct {
	Step
	Column string    `json:"column"`
	Median Figures   `json:"median"`
	Runs   []Figures `json:"runs"`
	// Scaling is frames/s here over frames/s at the first step, divided by
	// how many times more server CPUs this step has: at N loops on N CPUs
	// after one loop on one, frames/s at N / (N x frames/s at 1); 1 is
	// perfect. With -handoff every step has one CPU, so it is plain
	// frames/s over the first step's. 0: not computable.
	Scaling float64 `json:"scaling"`
	// VsFirst is frames/s over the first column's at the same step.
	VsFirst float64 `json:"frames_vs_first_column,omitempty"`
}

// Failed reports whether any row saw errors.
func (r *ScaleReport) Failed() bool {
	return slices.ContainsFunc(r.Points, func(p ScalePoint) bool {
		return slices.ContainsFunc(p.Rows, func(row ScaleRow) bool { return row.Median.Failed() })
	})
}

// fillRatios computes every row's Scaling and VsFirst.
func (r *ScaleReport) fillRatios() {
	for pi := range r.Points {
		rows := r.Points[pi].Rows
		for i := range rows {
			row := &rows[i]
			base, first := r.row(pi, r.Settings.Steps[0].Loops, row.Column), r.row(pi, row.Loops, r.Settings.Columns[0])
			if base != nil && base.Median.FramesPerSec > 0 && len(row.CPUs) > 0 {
				row.Scaling = row.Median.FramesPerSec / base.Median.FramesPerSec * float64(len(base.CPUs)) / float64(len(row.CPUs))
			}
			if first != nil && first.Median.FramesPerSec > 0 && row.Column != first.Column {
				row.VsFirst = row.Median.FramesPerSec / first.Median.FramesPerSec
			}
		}
	}
}

// row finds point pi's row for a loop count and column.
func (r *ScaleReport) row(pi, loops int, column string) *ScaleRow {
	rows := r.Points[pi].Rows
	i := slices.IndexFunc(rows, func(row ScaleRow) bool { return row.Loops == loops && row.Column == column })
	if i < 0 {
		return nil
	}
	return &rows[i]
}

// WriteScaleMarkdown prints the report for a person: the setup, then one
// table per point with a row per loop count and column.
func WriteScaleMarkdown(w io.Writer, r *ScaleReport) error {
	var b strings.Builder
	s := r.Settings
	title := "ringbench scale"
	if s.Handoff {
		title += " -handoff"
	}
	fmt.Fprintf(&b, "## %s, %s\n\n", title, r.Started.UTC().Format("2006-01-02 15:04:05 MST"))
	if r.Interrupted {
		b.WriteString("**Interrupted**: this is what was measured before the run was stopped; rows and runs are missing.\n\n")
	}
	fmt.Fprintf(&b, "- machine: %s", r.Machine)
	if s.ThreadsPerCore > 1 {
		fmt.Fprintf(&b, "; %d hyperthreads per core", s.ThreadsPerCore)
	}
	b.WriteString("\n")
	if s.Handoff {
		fmt.Fprintf(&b, "- server: every loop count on CPU %s, the loops sharing it", cpuList(s.ServerCPUs[:1]))
	} else {
		fmt.Fprintf(&b, "- server: N loops on the first N of CPUs %s, loop k pinned to the k-th", cpuList(s.ServerCPUs))
	}
	if len(s.GeneratorCPUs) > 0 {
		fmt.Fprintf(&b, "; generator on CPUs %s, one worker thread pinned to each\n", cpuList(s.GeneratorCPUs))
	} else {
		b.WriteString("; generator not pinned\n")
	}
	b.WriteString("- servers, each started fresh per run and loop count on a free port ({addr}), {loops} and {cpus} filled in:\n")
	for _, name := range s.Columns {
		note := ""
		if slices.Contains(s.Fixed, name) {
			note = " (no {loops}: the same server at every loop count)"
		}
		fmt.Fprintf(&b, "  - %s: `%s`%s\n", name, s.Commands[name], note)
	}
	fmt.Fprintf(&b, "- %d run(s) per point, loop count and server, median shown; %s warm-up, %s measured\n", s.Runs, s.Warmup, s.Duration)
	scaling := "scaling: frames/s at N loops / (N x frames/s at the first loop count, per CPU); 1.00 is perfect"
	if s.Handoff {
		scaling = "vs 1st: frames/s over frames/s at the first loop count, on the same one CPU (the cost of handing frames between loops)"
	}
	vs := ""
	if len(s.Columns) > 1 {
		vs = fmt.Sprintf("vs %s: frames/s over %s's at the same loop count; ", s.Columns[0], s.Columns[0])
	}
	fmt.Fprintf(&b, "- frames/s: frames delivered to clients (pingpong counts both directions); %s; %s"+
		"CPU µs/frame: server CPU time over the window / frames delivered; "+
		"gen CPU %%: the generator's CPU time, %% of one core; * marks a median taken with the generator near saturation\n\n",
		scaling, vs)

	for _, p := range r.Points {
		writeScalePoint(&b, r, p)
	}
	writeHandoff(&b, r)
	writeScaleSaturation(&b, r)
	writeScaleErrors(&b, r)
	_, err := io.WriteString(w, b.String())
	return err
}

func writeScalePoint(b *strings.Builder, r *ScaleReport, p ScalePoint) {
	s := r.Settings
	fmt.Fprintf(b, "### %s\n\n", p.Point.Name)
	scaling := "scaling"
	if s.Handoff {
		scaling = "vs 1st"
	}
	several := len(s.Columns) > 1
	head := []string{"loops", "server CPUs", "server", "frames/s", scaling, "vs " + s.Columns[0], "CPU µs/frame", "p99 µs", "gen CPU %", "status"}
	align := []string{"---:", "---", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---"}
	if !several {
		head, align = slices.Delete(head, 5, 6), slices.Delete(align, 5, 6)
	}
	row(b, head...)
	row(b, align...)
	for _, rw := range p.Rows {
		f := rw.Median
		rate := count(f.FramesPerSec)
		if genSaturated(len(s.GeneratorCPUs), f) {
			rate += " *"
		}
		var p99 float64
		if f.RTT != nil {
			p99 = f.RTT.P99
		}
		cpu := 0.0
		if f.ServerMeasured {
			cpu = f.ServerCPUPerFrameUs
		}
		st := "ok"
		if f.Failed() {
			st = "FAILED"
		}
		cells := []string{fmt.Sprint(rw.Loops), cpuList(rw.CPUs), rw.Column, rate, fixed(rw.Scaling, 2), fixed(rw.VsFirst, 2),
			fixed(cpu, 2), micros(p99), fixed(f.GeneratorCPU, 0), st}
		if !several {
			cells = slices.Delete(cells, 5, 6)
		}
		row(b, cells...)
	}
	b.WriteString("\n")
}

// writeHandoff sums up a -handoff run: for each point, column and loop
// count after the first, frames/s and server CPU per frame against the
// first loop count's, all on the same CPU.
func writeHandoff(b *strings.Builder, r *ScaleReport) {
	steps := r.Settings.Steps
	if !r.Settings.Handoff || len(steps) < 2 {
		return
	}
	b.WriteString("### Handoff cost\n\n")
	for pi, p := range r.Points {
		for _, col := range r.Settings.Columns {
			if slices.Contains(r.Settings.Fixed, col) {
				continue // the same server at every step: no handoff to measure
			}
			base := r.row(pi, steps[0].Loops, col)
			for _, st := range steps[1:] {
				rw := r.row(pi, st.Loops, col)
				if base == nil || rw == nil {
					continue
				}
				fmt.Fprintf(b, "- %s, %s: %d loops sharing CPU %s deliver %sx the frames/s of %d (%s against %s), at %sx the server CPU per frame\n",
					p.Point.Name, col, st.Loops, cpuList(st.CPUs), ratio(rw.Median.FramesPerSec, base.Median.FramesPerSec), base.Loops,
					count(rw.Median.FramesPerSec), count(base.Median.FramesPerSec),
					ratio(rw.Median.ServerCPUPerFrameUs, base.Median.ServerCPUPerFrameUs))
			}
		}
	}
	b.WriteString("\n")
}

// writeScaleSaturation names the rows where the generator was nearly out
// of CPU.
func writeScaleSaturation(b *strings.Builder, r *ScaleReport) {
	var rows []string
	for _, p := range r.Points {
		for _, rw := range p.Rows {
			if genSaturated(len(r.Settings.GeneratorCPUs), rw.Median) {
				rows = append(rows, fmt.Sprintf("%s, %d loop(s), %s (%.0f%%)", p.Point.Name, rw.Loops, rw.Column, rw.Median.GeneratorCPU))
			}
		}
	}
	if len(rows) > 0 {
		fmt.Fprintf(b, "Generator near saturation (>= %d%% of the CPUs it could use); these rows may understate the server: %s.\n\n",
			saturated, strings.Join(rows, "; "))
	}
}

func writeScaleErrors(b *strings.Builder, r *ScaleReport) {
	first := true
	for _, p := range r.Points {
		for _, rw := range p.Rows {
			if !rw.Median.Failed() {
				continue
			}
			if first {
				b.WriteString("### Errors\n\n")
				first = false
			}
			fmt.Fprintf(b, "- %s, %d loop(s), %s: %d error(s)\n", p.Point.Name, rw.Loops, rw.Column, rw.Median.Errors)
			for _, e := range rw.Median.ErrorSamples {
				fmt.Fprintf(b, "  - %s\n", e)
			}
		}
	}
	if !first {
		b.WriteString("\n")
	}
}

// SaveScaleReport writes the report into dir as
// ringbench-scale-<UTC time>.json and returns the path.
func SaveScaleReport(dir string, r *ScaleReport) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("results directory: %w", err)
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode report: %w", err)
	}
	path := filepath.Join(dir, "ringbench-scale-"+r.Started.UTC().Format("20060102T150405Z")+".json")
	return path, writeAtomic(path, append(js, '\n'))
}
