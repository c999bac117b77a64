package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
)

// CompareConfig is what `ringbench compare` runs.
type CompareConfig struct {
	Server      string   // ringrelay binary
	ServerFlags []string // passed through to every server
	Backends    []string
	Points      []Point
	Runs        int
	Warmup      time.Duration
	Duration    time.Duration
	Pin         bool // pin the server and the generator to separate CPUs
}

// Validate checks the configuration before anything starts.
func (c CompareConfig) Validate() error {
	var errs []error
	if c.Server == "" {
		errs = append(errs, errors.New("no server binary"))
	}
	if len(c.Backends) == 0 {
		errs = append(errs, errors.New("no backend to run"))
	}
	for i, b := range c.Backends {
		if b == "" || slices.Contains(c.Backends[:i], b) {
			errs = append(errs, fmt.Errorf("backend %q is empty or listed twice", b))
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

// Compare runs every point against every backend, runs times. Each run
// starts one server per backend; within a run each point goes to the
// backends in turn (uring, epoll, uring, epoll, ...) so that drift on a
// shared machine hits both alike. The report holds every run and the
// medians.
func Compare(ctx context.Context, cfg CompareConfig, progress *Progress) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Report{
		Machine: DescribeMachine(),
		Started: time.Now(),
		Command: os.Args,
		Settings: Settings{
			Server: cfg.Server, ServerFlags: cfg.ServerFlags, Backends: cfg.Backends,
			Runs: cfg.Runs, Warmup: cfg.Warmup.String(), Duration: cfg.Duration.String(),
			ServerCPU: -1, StartLines: map[string]string{},
		},
	}
	if cfg.Pin {
		r.Settings.ServerCPU, r.Settings.GeneratorCPUs = pinPlan(progress)
	}
	if limit, err := raiseFileLimit(); err != nil {
		progress.Log("warning: %v", err)
	} else if need := maxConns(cfg.Points) + 100; limit < uint64(need) {
		progress.Log("warning: RLIMIT_NOFILE is %d, the idle point needs about %d", limit, need)
	}

	c := &comparison{cfg: cfg, progress: progress, serverCPU: r.Settings.ServerCPU,
		steps: cfg.Runs * len(cfg.Points) * len(cfg.Backends)}
	c.runs = make([][][]Figures, len(cfg.Points))
	for i := range c.runs {
		c.runs[i] = make([][]Figures, len(cfg.Backends))
	}
	for run := range cfg.Runs {
		servers, err := startServers(ctx, cfg, c.serverCPU, progress)
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", run+1, err)
		}
		for bi, s := range servers {
			r.Settings.StartLines[cfg.Backends[bi]] = s.StartLine()
		}
		err = c.run(ctx, run, servers)
		stopServers(servers, progress)
		if err != nil {
			return nil, err
		}
	}
	progress.Done()

	for pi, p := range cfg.Points {
		pr := PointResult{Point: p}
		for bi, backend := range cfg.Backends {
			pr.Backends = append(pr.Backends, BackendResult{
				Backend: backend, Median: MedianFigures(c.runs[pi][bi]), Runs: c.runs[pi][bi],
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
	serverCPU   int
	runs        [][][]Figures // [point][backend][run]
	step, steps int
}

// run measures every point on every backend once, against servers (one per
// backend, in cfg.Backends order). A server that died is restarted first.
func (c *comparison) run(ctx context.Context, run int, servers []*Server) error {
	for pi, p := range c.cfg.Points {
		for bi, backend := range c.cfg.Backends {
			c.step++
			if !servers[bi].Alive() {
				c.progress.Log("%s server exited; restarting it. Its output:\n%s", backend, servers[bi].Output())
				s, err := startServer(ctx, c.cfg, backend, c.serverCPU)
				if err != nil {
					return err
				}
				servers[bi] = s
			}
			s := servers[bi]
			label := fmt.Sprintf("[%d/%d] run %d/%d  %-18s %-6s", c.step, c.steps, run+1, c.cfg.Runs, p.Name, backend)
			fig := Measure(ctx, s.Addr, p, Options{
				Warmup: c.cfg.Warmup, Duration: c.cfg.Duration, ServerPID: s.PID(),
				Progress: func(elapsed time.Duration, fps float64) {
					c.progress.Show("%s %5.1fs  %s frames/s", label, elapsed.Seconds(), count(fps))
				},
			})
			if !s.Alive() {
				fig.Errors++
				fig.ErrorSamples = append(fig.ErrorSamples, "the server exited during this point")
			}
			c.runs[pi][bi] = append(c.runs[pi][bi], fig)
			verdict := "ok"
			if fig.Failed() {
				verdict = fmt.Sprintf("FAILED: %d error(s), first: %s", fig.Errors, fig.ErrorSamples[0])
			}
			c.progress.Log("%s %s frames/s  %s", label, count(fig.FramesPerSec), verdict)
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
	cpus, err := allowedCPUs()
	if err != nil || len(cpus) < 2 {
		progress.Log("warning: fewer than two CPUs available (%v, %v): server and generator share CPUs, numbers are less comparable", cpus, err)
		return -1, nil
	}
	if err := pinSelf(cpus[1:]...); err != nil {
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

func startServer(ctx context.Context, cfg CompareConfig, backend string, cpu int) (*Server, error) {
	return StartServer(ctx, ServerConfig{Path: cfg.Server, Backend: backend, Flags: cfg.ServerFlags, CPU: cpu})
}

func startServers(ctx context.Context, cfg CompareConfig, cpu int, progress *Progress) ([]*Server, error) {
	var servers []*Server
	for _, b := range cfg.Backends {
		s, err := startServer(ctx, cfg, b, cpu)
		if err != nil {
			stopServers(servers, progress)
			return nil, err
		}
		progress.Log("started %s server, pid %d, on %s: %s", b, s.PID(), s.Addr, s.StartLine())
		servers = append(servers, s)
	}
	return servers, nil
}

func stopServers(servers []*Server, progress *Progress) {
	for _, s := range servers {
		if err := s.Stop(); err != nil {
			progress.Log("warning: %s server (pid %d) stop: %v", s.Backend, s.PID(), err)
		}
	}
}
