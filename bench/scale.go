package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/ringrelay/ringrelay/internal/servertest"
	"github.com/ringrelay/ringrelay/shard"
)

// ScaleConfig is what `ringbench scale` runs: every point against every
// column at each loop count.
type ScaleConfig struct {
	// Columns are the servers; ratios are against the first. Their command
	// lines take the loop count and CPUs through {loops} and {cpus}.
	Columns []Contender
	Points  []Point
	// Loops are the loop counts to run, in order.
	Loops []int
	// ServerCPUs are the server's CPUs: at N loops the server runs on the
	// first N, loop k pinned to the k-th. GeneratorCPUs are the
	// generator's, one worker thread pinned to each; empty leaves the
	// generator unpinned. The two must not overlap.
	ServerCPUs    []int
	GeneratorCPUs []int
	// Handoff runs every loop count on ServerCPUs[0] alone: the loops share
	// one CPU, so what changes between the steps is the cost of handing
	// frames between loops, not the CPU power.
	Handoff  bool
	Runs     int
	Warmup   time.Duration
	Duration time.Duration
}

// Step is one loop count and the CPUs the server has for it.
type Step struct {
	Loops int   `json:"loops"`
	CPUs  []int `json:"cpus"`
}

// PowersOfTwo lists 1, 2, 4, ... up to n, and n itself when it is not a
// power of two: the loop counts scale runs by default.
func PowersOfTwo(n int) []int {
	var out []int
	for k := 1; k <= n; k *= 2 {
		out = append(out, k)
	}
	if len(out) > 0 && out[len(out)-1] != n {
		out = append(out, n)
	}
	return out
}

// Steps are the placements the configuration runs, in order.
func (c ScaleConfig) Steps() []Step {
	steps := make([]Step, 0, len(c.Loops))
	for _, n := range c.Loops {
		cpus := c.ServerCPUs[:min(n, len(c.ServerCPUs))]
		if c.Handoff {
			cpus = c.ServerCPUs[:min(1, len(c.ServerCPUs))]
		}
		steps = append(steps, Step{Loops: n, CPUs: slices.Clone(cpus)})
	}
	return steps
}

// Validate checks the configuration before anything starts.
func (c ScaleConfig) Validate() error {
	cc := CompareConfig{Columns: c.Columns, Points: c.Points, Runs: c.Runs, Warmup: c.Warmup, Duration: c.Duration}
	errs := []error{cc.Validate()}
	for _, p := range c.Points {
		if p.Workload == "idle" {
			errs = append(errs, fmt.Errorf("point %s: scale measures traffic; idle has none", p.Name))
		}
	}
	if len(c.ServerCPUs) == 0 {
		errs = append(errs, errors.New("no CPU for the server"))
	}
	for _, cpu := range c.GeneratorCPUs {
		if slices.Contains(c.ServerCPUs, cpu) {
			errs = append(errs, fmt.Errorf("CPU %d is both the server's and the generator's", cpu))
		}
	}
	if len(c.Loops) == 0 {
		errs = append(errs, errors.New("no loop count to run"))
	}
	for i, n := range c.Loops {
		switch {
		case n < 1:
			errs = append(errs, fmt.Errorf("loop count %d: must be at least 1", n))
		case !c.Handoff && n > len(c.ServerCPUs):
			errs = append(errs, fmt.Errorf("%d loops need %d server CPUs, have %d (%s)", n, n, len(c.ServerCPUs), cpuList(c.ServerCPUs)))
		case slices.Contains(c.Loops[:i], n):
			errs = append(errs, fmt.Errorf("loop count %d listed twice", n))
		}
	}
	return errors.Join(errs...)
}

// Scale runs every point against every column at every step, runs times.
// Each (run, step, column) starts a fresh server placed for the step and
// runs every point on it; within a step the columns take turns, and each
// run goes through all the steps, so drift on the machine is spread over
// all of them. The generator is pinned to GeneratorCPUs, one worker per
// CPU, for the whole of it.
func Scale(ctx context.Context, cfg ScaleConfig, progress *Progress) (*ScaleReport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &ScaleReport{
		Machine: DescribeMachine(),
		Started: time.Now(),
		Command: os.Args,
		Settings: ScaleSettings{
			Commands: map[string]string{}, StartLines: map[string]map[int]string{},
			Runs: cfg.Runs, Warmup: cfg.Warmup.String(), Duration: cfg.Duration.String(),
			ServerCPUs: cfg.ServerCPUs, GeneratorCPUs: cfg.GeneratorCPUs, Handoff: cfg.Handoff,
			Steps: cfg.Steps(), ThreadsPerCore: ThreadsPerCore(append(slices.Clone(cfg.ServerCPUs), cfg.GeneratorCPUs...)),
		},
	}
	for _, col := range cfg.Columns {
		r.Settings.Columns = append(r.Settings.Columns, col.Name)
		r.Settings.Commands[col.Name] = col.CommandLine()
		r.Settings.StartLines[col.Name] = map[int]string{}
		if !col.Scales() {
			r.Settings.Fixed = append(r.Settings.Fixed, col.Name)
			progress.Log("note: %s's command has no {loops}: it runs the same server at every loop count", col.Name)
		}
	}
	if len(cfg.GeneratorCPUs) > 0 {
		restore, err := pinGenerator(cfg.GeneratorCPUs)
		if err != nil {
			return nil, err
		}
		defer restore()
	}
	if limit, err := servertest.RaiseFileLimit(); err != nil {
		progress.Log("warning: %v", err)
	} else if need := maxConns(cfg.Points) + 100; limit < uint64(need) {
		progress.Log("warning: RLIMIT_NOFILE is %d, the points need about %d", limit, need)
	}

	steps := r.Settings.Steps
	// figs[point][step][column] collects the runs.
	figs := make([][][][]Figures, len(cfg.Points))
	for pi := range figs {
		figs[pi] = make([][][]Figures, len(steps))
		for si := range figs[pi] {
			figs[pi][si] = make([][]Figures, len(cfg.Columns))
		}
	}
	s := &scaling{cfg: cfg, progress: progress, total: cfg.Runs * len(steps) * len(cfg.Columns) * len(cfg.Points)}
	for run := range cfg.Runs {
		for si, st := range steps {
			for ci, col := range cfg.Columns {
				if ctx.Err() != nil {
					break
				}
				for pi, fig := range s.serve(ctx, r, col, st, run) {
					figs[pi][si][ci] = append(figs[pi][si][ci], fig)
				}
			}
		}
	}
	if ctx.Err() != nil {
		r.Interrupted = true
		progress.Log("interrupted: reporting what was measured so far")
	}
	progress.Done()

	for pi, p := range cfg.Points {
		sp := ScalePoint{Point: p}
		for si, st := range steps {
			for ci, col := range cfg.Columns {
				runs := figs[pi][si][ci]
				if len(runs) == 0 {
					continue // interrupted before it ran
				}
				sp.Rows = append(sp.Rows, ScaleRow{Step: st, Column: col.Name, Median: MedianFigures(runs), Runs: runs})
			}
		}
		r.Points = append(r.Points, sp)
	}
	r.fillRatios()
	r.Finished = time.Now()
	return r, nil
}

// scaling is the state of one Scale while it runs.
type scaling struct {
	cfg         ScaleConfig
	progress    *Progress
	step, total int
}

// serve starts col placed for st and runs every point against it, once.
// It returns the points' figures in order, fewer when ctx ends first (a
// measurement cut short is no result). A server that does not start, or
// cannot be restarted after it died, fails the points it should have run.
func (s *scaling) serve(ctx context.Context, r *ScaleReport, col Contender, st Step, run int) []Figures {
	var figs []Figures
	var srv *Server
	defer func() {
		if srv != nil {
			if err := srv.Stop(); err != nil {
				s.progress.Log("warning: %s server (pid %d) stop: %v", srv.Name, srv.Pid(), err)
			}
		}
	}()
	for _, p := range s.cfg.Points {
		s.step++
		label := fmt.Sprintf("[%d/%d] run %d/%d  %2d loop(s)  %-24s %-6s", s.step, s.total, run+1, s.cfg.Runs, st.Loops, p.Name, col.Name)
		if srv == nil || !srv.Alive() {
			if srv != nil {
				s.progress.Log("%s server exited; restarting it. Its output:\n%s", col.Name, srv.Logs())
				_ = srv.Stop()
				srv = nil
			}
			started, err := s.start(ctx, col, st)
			if ctx.Err() != nil {
				return figs
			}
			if err != nil {
				s.progress.Log("%s FAILED: %v", label, err)
				figs = append(figs, Figures{Errors: 1, ErrorSamples: []string{"server did not start: " + firstLine(err.Error())}})
				continue
			}
			srv = started
			r.Settings.StartLines[col.Name][st.Loops] = srv.StartLine()
		}
		fig := s.measure(ctx, srv, label, p)
		if fig.Interrupted {
			return figs
		}
		figs = append(figs, fig)
		if ctx.Err() != nil {
			return figs
		}
	}
	return figs
}

func (s *scaling) start(ctx context.Context, col Contender, st Step) (*Server, error) {
	srv, err := StartServer(ctx, col, Placement(st))
	if err != nil {
		return nil, err
	}
	s.progress.Log("started %s with %d loop(s) on CPU %s, pid %d, on %s: %s", col.Name, st.Loops, cpuList(st.CPUs), srv.Pid(), srv.Addr, srv.StartLine())
	return srv, nil
}

// measure runs one point against srv.
func (s *scaling) measure(ctx context.Context, srv *Server, label string, p Point) Figures {
	fig := Measure(ctx, srv.Addr, p, Options{
		Warmup: s.cfg.Warmup, Duration: s.cfg.Duration, ServerPID: srv.Pid(), WorkerCPUs: s.cfg.GeneratorCPUs,
		Progress: func(elapsed time.Duration, fps float64) {
			s.progress.Show("%s %5.1fs  %s frames/s", label, elapsed.Seconds(), count(fps))
		},
	})
	if !srv.Alive() {
		fig.Errors++
		fig.ErrorSamples = append(fig.ErrorSamples, "the server exited during this point")
	}
	verdict := "ok"
	if fig.Failed() {
		verdict = fmt.Sprintf("FAILED: %d error(s), first: %s", fig.Errors, fig.ErrorSamples[0])
	}
	s.progress.Log("%s %s frames/s  gen CPU %.0f%%  %s", label, count(fig.FramesPerSec), fig.GeneratorCPU, verdict)
	return fig
}

// firstLine is s up to its first line break: a start error carries the
// server's whole output after it.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// pinGenerator moves this process to cpus (see servertest.PinSelf) and
// returns what puts it back where it was.
func pinGenerator(cpus []int) (restore func(), err error) {
	old, err := shard.AllowedCPUs()
	if err != nil {
		return nil, err
	}
	procs := runtime.GOMAXPROCS(0)
	if err := servertest.PinSelf(cpus...); err != nil {
		return nil, err
	}
	return func() {
		_ = servertest.PinSelf(old...)
		runtime.GOMAXPROCS(procs)
	}, nil
}
