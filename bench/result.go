package bench

import (
	"os"
	"slices"
	"time"
)

// Report is everything one `ringbench compare` produced; it is what the
// JSON file holds.
type Report struct {
	Machine  Machine       `json:"machine"`
	Started  time.Time     `json:"started"`
	Finished time.Time     `json:"finished"`
	Command  []string      `json:"command"`
	Settings Settings      `json:"settings"`
	Points   []PointResult `json:"points"`
}

// newReport starts a report of runs runs per point, stamped now, with
// nothing pinned yet.
func newReport(runs int, warmup, duration time.Duration) *Report {
	return &Report{
		Machine: DescribeMachine(),
		Started: time.Now(),
		Command: os.Args,
		Settings: Settings{
			Runs: runs, Warmup: warmup.String(), Duration: duration.String(), ServerCPU: -1,
		},
	}
}

// Settings records how the run was set up.
type Settings struct {
	Server        string            `json:"server,omitempty"`   // load: the address measured
	Backends      []string          `json:"backends"`           // the column names, in order
	Commands      map[string]string `json:"commands,omitempty"` // compare: column name -> command line
	Runs          int               `json:"runs"`
	Warmup        string            `json:"warmup"`
	Duration      string            `json:"duration"`
	ServerCPU     int               `json:"server_cpu"`               // -1: not pinned
	GeneratorCPUs []int             `json:"generator_cpus,omitempty"` // empty: not pinned
	StartLines    map[string]string `json:"server_start_lines,omitempty"`
}

// PointResult holds one point's results, one entry per backend in the order
// of Settings.Backends.
type PointResult struct {
	Point    Point           `json:"point"`
	Backends []BackendResult `json:"backends"`
}

// BackendResult is one point against one backend: every run, and the
// per-figure median over the runs.
type BackendResult struct {
	Backend string    `json:"backend"`
	Median  Figures   `json:"median"`
	Runs    []Figures `json:"runs"`
}

// Failed reports whether any run of any backend of the point saw errors.
func (p PointResult) Failed() bool {
	return slices.ContainsFunc(p.Backends, func(b BackendResult) bool { return b.Median.Failed() })
}

// Failed reports whether any point failed.
func (r *Report) Failed() bool {
	return slices.ContainsFunc(r.Points, PointResult.Failed)
}

// Median returns the middle value of xs (the mean of the two middle values
// for an even count), or 0 for none. xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// MedianFigures combines runs of one point and backend: each figure is the
// median of that figure over the runs, taken separately, so the result need
// not be any single run. Errors add up instead: one bad run fails the point.
func MedianFigures(runs []Figures) Figures {
	if len(runs) == 0 {
		return Figures{}
	}
	med := func(get func(Figures) float64) float64 {
		xs := make([]float64, 0, len(runs))
		for _, f := range runs {
			xs = append(xs, get(f))
		}
		return Median(xs)
	}
	out := Figures{
		Seconds:             med(func(f Figures) float64 { return f.Seconds }),
		Conns:               runs[0].Conns,
		Frames:              int64(med(func(f Figures) float64 { return float64(f.Frames) })),
		FramesPerSec:        med(func(f Figures) float64 { return f.FramesPerSec }),
		MBPerSec:            med(func(f Figures) float64 { return f.MBPerSec }),
		ServerMeasured:      runs[0].ServerMeasured,
		ServerCPUSeconds:    med(func(f Figures) float64 { return f.ServerCPUSeconds }),
		ServerCPUPerFrameUs: med(func(f Figures) float64 { return f.ServerCPUPerFrameUs }),
		ServerRSS:           int64(med(func(f Figures) float64 { return float64(f.ServerRSS) })),
		RSSPerConn:          med(func(f Figures) float64 { return f.RSSPerConn }),
		GeneratorCPU:        med(func(f Figures) float64 { return f.GeneratorCPU }),
		GeneratorThreads:    runs[0].GeneratorThreads,
	}
	var rtts []Latency
	for _, f := range runs {
		out.Errors += f.Errors
		if room := maxErrorSamples - len(out.ErrorSamples); room > 0 {
			out.ErrorSamples = append(out.ErrorSamples, f.ErrorSamples[:min(room, len(f.ErrorSamples))]...)
		}
		if f.RTT != nil {
			rtts = append(rtts, *f.RTT)
		}
	}
	if len(rtts) > 0 {
		lat := func(get func(Latency) float64) float64 {
			xs := make([]float64, len(rtts))
			for i, l := range rtts {
				xs[i] = get(l)
			}
			return Median(xs)
		}
		out.RTT = &Latency{
			P50:   lat(func(l Latency) float64 { return l.P50 }),
			P99:   lat(func(l Latency) float64 { return l.P99 }),
			P999:  lat(func(l Latency) float64 { return l.P999 }),
			Max:   lat(func(l Latency) float64 { return l.Max }),
			Count: int64(lat(func(l Latency) float64 { return float64(l.Count) })),
		}
	}
	return out
}
