package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ringrelay/ringrelay/internal/servertest"
	"github.com/ringrelay/ringrelay/shard"
)

// CompareConfig is what `ringbench compare` runs.
type CompareConfig struct {
	// Columns are the servers compared, in report order; ratios are
	// against the first.
	Columns  []Contender
	Points   []Point
	Runs     int
	Warmup   time.Duration
	Duration time.Duration
	Pin      bool // pin the server and the generator to separate CPUs
}

// Validate checks the configuration before anything starts.
func (c CompareConfig) Validate() error {
	var errs []error
	if len(c.Columns) == 0 {
		errs = append(errs, errors.New("no server to run (no backend and no opponent)"))
	}
	for i, col := range c.Columns {
		if col.Name == "" || slices.ContainsFunc(c.Columns[:i], func(o Contender) bool { return o.Name == col.Name }) {
			errs = append(errs, fmt.Errorf("column %q is unnamed or named twice", col.Name))
		}
		if len(col.Argv) == 0 || col.Argv[0] == "" {
			errs = append(errs, fmt.Errorf("column %q has no command", col.Name))
		}
	}
	if len(c.Points) == 0 {
		errs = append(errs, errors.New("no point to run"))
	}
	for _, p := range c.Points {
		errs = append(errs, p.Validate())
	}
	if c.Runs < 1 {
		errs = append(errs, fmt.Errorf("runs must be at least 1, got %d", c.Runs))
	}
	if c.Warmup < 0 || c.Duration <= 0 {
		errs = append(errs, fmt.Errorf("warm-up must be >= 0 and duration > 0 (got %s, %s)", c.Warmup, c.Duration))
	}
	return errors.Join(errs...)
}

// Compare runs every point against every column, runs times. Each run
// starts one server per column; within a run each point goes to the
// columns in turn (A, B, C, A, B, C, ...) so that drift on a shared machine
// hits all alike. The report holds every run and the medians.
func Compare(ctx context.Context, cfg CompareConfig, progress *Progress) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := newReport(cfg.Runs, cfg.Warmup, cfg.Duration)
	r.Settings.StartLines, r.Settings.Commands = map[string]string{}, map[string]string{}
	for _, col := range cfg.Columns {
		r.Settings.Backends = append(r.Settings.Backends, col.Name)
		r.Settings.Commands[col.Name] = col.CommandLine()
	}
	if cfg.Pin {
		r.Settings.ServerCPU, r.Settings.GeneratorCPUs = pinPlan(progress)
	}
	if limit, err := servertest.RaiseFileLimit(); err != nil {
		progress.Log("warning: %v", err)
	} else if need := maxConns(cfg.Points) + 100; limit < uint64(need) {
		progress.Log("warning: RLIMIT_NOFILE is %d, the idle point needs about %d", limit, need)
	}

	c := &comparison{cfg: cfg, progress: progress, steps: cfg.Runs * len(cfg.Points) * len(cfg.Columns)}
	if r.Settings.ServerCPU >= 0 {
		c.serverCPUs = []int{r.Settings.ServerCPU}
	}
	c.runs = make([][][]Figures, len(cfg.Points))
	for i := range c.runs {
		c.runs[i] = make([][]Figures, len(cfg.Columns))
	}
	for run := range cfg.Runs {
		servers, err := c.startAll(ctx)
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", run+1, err)
		}
		for _, s := range servers {
			r.Settings.StartLines[s.Name] = s.StartLine()
		}
		err = c.run(ctx, run, servers)
		c.stopAll(servers)
		if err != nil {
			return nil, err
		}
	}
	progress.Done()

	for pi, p := range cfg.Points {
		pr := PointResult{Point: p}
		for ci, col := range cfg.Columns {
			pr.Backends = append(pr.Backends, BackendResult{
				Backend: col.Name, Median: MedianFigures(c.runs[pi][ci]), Runs: c.runs[pi][ci],
			})
		}
		r.Points = append(r.Points, pr)
	}
	r.Finished = time.Now()
	return r, nil
}

// comparison is the state of one Compare while it runs.
type comparison struct {
	cfg         CompareConfig
	progress    *Progress
	serverCPUs  []int         // empty: not pinned
	runs        [][][]Figures // [point][column][run]
	step, steps int
}

// run measures every point on every column once, against servers (one per
// column, in cfg.Columns order). A server that died is restarted first.
func (c *comparison) run(ctx context.Context, run int, servers []*Server) error {
	for pi, p := range c.cfg.Points {
		for ci, col := range c.cfg.Columns {
			c.step++
			if !servers[ci].Alive() {
				c.progress.Log("%s server exited; restarting it. Its output:\n%s", col.Name, servers[ci].Logs())
				s, err := StartServer(ctx, col, OnCPUs(c.serverCPUs))
				if err != nil {
					return err
				}
				servers[ci] = s
			}
			s := servers[ci]
			label := fmt.Sprintf("[%d/%d] run %d/%d  %-18s %-6s", c.step, c.steps, run+1, c.cfg.Runs, p.Name, col.Name)
			fig := Measure(ctx, s.Addr, p, Options{
				Warmup: c.cfg.Warmup, Duration: c.cfg.Duration, ServerPID: s.Pid(), TLS: col.TLS,
				Progress: func(elapsed time.Duration, fps float64) {
					c.progress.Show("%s %5.1fs  %s frames/s", label, elapsed.Seconds(), count(fps))
				},
			})
			if !s.Alive() {
				fig.Errors++
				fig.ErrorSamples = append(fig.ErrorSamples, "the server exited during this point")
			}
			c.runs[pi][ci] = append(c.runs[pi][ci], fig)
			verdict := "ok"
			if fig.Failed() {
				verdict = fmt.Sprintf("FAILED: %d error(s), first: %s", fig.Errors, fig.ErrorSamples[0])
			}
			c.progress.Log("%s %s frames/s  gen CPU %.0f%%  %s", label, count(fig.FramesPerSec), fig.GeneratorCPU, verdict)
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

// pinPlan gives the server the first CPU this process may use and the
// generator all the others (one, on a two-core machine). With fewer than two
// it pins nothing and says so.
func pinPlan(progress *Progress) (server int, gen []int) {
	cpus, err := shard.AllowedCPUs()
	if err != nil || len(cpus) < 2 {
		progress.Log("warning: fewer than two CPUs available (%v, %v): server and generator share CPUs, numbers are less comparable", cpus, err)
		return -1, nil
	}
	if err := servertest.PinSelf(cpus[1:]...); err != nil {
		progress.Log("warning: %v: not pinning", err)
		return -1, nil
	}
	return cpus[0], cpus[1:]
}

func maxConns(points []Point) int {
	n := 0
	for _, p := range points {
		n = max(n, p.Conns, 2*p.Pairs, p.Senders+1)
	}
	return n
}

func (c *comparison) startAll(ctx context.Context) ([]*Server, error) {
	var servers []*Server
	for _, col := range c.cfg.Columns {
		s, err := StartServer(ctx, col, OnCPUs(c.serverCPUs))
		if err != nil {
			c.stopAll(servers)
			return nil, err
		}
		c.progress.Log("started %s, pid %d, on %s: %s", col.Name, s.Pid(), s.Addr, s.StartLine())
		servers = append(servers, s)
	}
	return servers, nil
}

func (c *comparison) stopAll(servers []*Server) {
	for _, s := range servers {
		if err := s.Stop(); err != nil {
			c.progress.Log("warning: %s server (pid %d) stop: %v", s.Name, s.Pid(), err)
		}
	}
}
