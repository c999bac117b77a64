package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ringrelay/ringrelay/internal/servertest"
)

// ClusterConfig is `ringbench cluster`: the cost of the hop between two
// nodes. It starts a NATS server (the devnats program) and two ringrelay
// nodes joined through it, then measures one point against node 0 alone
// and the same point with its connections split over the two nodes
// (connection i on node i mod 2, so with adjacent pairing every pair
// crosses), Runs times each, alternating.
type ClusterConfig struct {
	Server   string   // the ringrelay binary
	DevNATS  string   // the devnats binary
	Flags    []string // extra ringrelay flags, given to both nodes
	Point    Point
	Runs     int
	Warmup   time.Duration
	Duration time.Duration
}

// Validate checks the configuration before anything starts.
func (c ClusterConfig) Validate() error {
	var errs []error
	if c.Server == "" || c.DevNATS == "" {
		errs = append(errs, errors.New("need the ringrelay and devnats binaries"))
	}
	errs = append(errs, c.Point.Validate())
	if c.Runs < 1 {
		errs = append(errs, fmt.Errorf("runs must be at least 1, got %d", c.Runs))
	}
	if c.Warmup < 0 || c.Duration <= 0 {
		errs = append(errs, fmt.Errorf("warm-up must be >= 0 and duration > 0 (got %s, %s)", c.Warmup, c.Duration))
	}
	return errors.Join(errs...)
}

// ClusterReport is what `ringbench cluster` measured: every run on one
// node and across two, and the medians.
type ClusterReport struct {
	Machine       Machine
	Started       time.Time
	Config        ClusterConfig
	Single, Cross Figures // per-figure medians over the runs
	SingleRuns    []Figures
	CrossRuns     []Figures
	Interrupted   bool
}

// Failed reports whether a run saw errors.
func (r *ClusterReport) Failed() bool {
	for _, f := range append(r.SingleRuns, r.CrossRuns...) {
		if f.Errors > 0 {
			return true
		}
	}
	return false
}

// FindDevNATS returns path if set, else devnats beside the ringrelay
// binary server, else bin/devnats.
func FindDevNATS(path, server string) (string, error) {
	if path != "" {
		return path, nil
	}
	candidates := []string{filepath.Join(filepath.Dir(server), "devnats"), filepath.Join("bin", "devnats")}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return filepath.Abs(c)
		}
	}
	return "", fmt.Errorf("no devnats binary at %s (run `make build`, or pass -devnats PATH)", strings.Join(candidates, " or "))
}

// Cluster starts NATS and two nodes, runs the point on one node and across
// both, and stops everything it started.
func Cluster(ctx context.Context, cfg ClusterConfig, progress *Progress) (*ClusterReport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := servertest.RaiseFileLimit(); err != nil {
		progress.Log("warning: %v", err)
	}
	natsAddr, err := servertest.FreeAddr()
	if err != nil {
		return nil, err
	}
	bus, err := servertest.Run(servertest.Command{
		Path: cfg.DevNATS, Args: []string{"-addr", natsAddr, "-max-payload", "2MiB"},
		Addr: natsAddr, OutputTail: serverOutputTail,
	})
	if err != nil {
		return nil, fmt.Errorf("devnats: %w", err)
	}
	defer bus.Stop(10 * time.Second)
	if err := bus.WaitReady(ctx, 15*time.Second, 0); err != nil {
		return nil, fmt.Errorf("devnats: %w", err)
	}
	var nodes []*Server
	defer func() {
		for _, n := range nodes {
			_ = n.Stop()
		}
	}()
	for k := range 2 {
		argv := append([]string{cfg.Server, "-listen", "{addr}", "-cluster", "nats://" + natsAddr, "-node", fmt.Sprint(k)}, cfg.Flags...)
		n, err := StartServer(ctx, Contender{Name: fmt.Sprintf("node%d", k), Argv: argv, marker: "listening"}, Placement{})
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	r := &ClusterReport{Machine: DescribeMachine(), Started: time.Now(), Config: cfg}
	single, cross := nodes[0].Addr, nodes[0].Addr+","+nodes[1].Addr
	opts := func(what string) Options {
		return Options{Warmup: cfg.Warmup, Duration: cfg.Duration, Progress: func(elapsed time.Duration, fps float64) {
			progress.Show("%s %s  %5.1fs  %s frames/s", cfg.Point.Name, what, elapsed.Seconds(), count(fps))
		}}
	}
	for range cfg.Runs {
		if ctx.Err() != nil {
			r.Interrupted = true
			break
		}
		r.SingleRuns = append(r.SingleRuns, Measure(ctx, single, cfg.Point, opts("one node")))
		r.CrossRuns = append(r.CrossRuns, Measure(ctx, cross, cfg.Point, opts("two nodes")))
		for _, n := range nodes {
			if !n.Alive() {
				progress.Done()
				return nil, fmt.Errorf("%s exited during the run; its output:\n%s", n.Name, n.Logs())
			}
		}
	}
	progress.Done()
	r.Single, r.Cross = MedianFigures(r.SingleRuns), MedianFigures(r.CrossRuns)
	return r, nil
}

// WriteClusterMarkdown writes the two rows and the cost of the hop.
func WriteClusterMarkdown(w io.Writer, r *ClusterReport) error {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "## ringbench cluster, %s\n\n", r.Started.UTC().Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(&b, "- machine: %s\n", r.Machine)
	fmt.Fprintf(&b, "- point %s; %d run(s) of %s after %s of warm-up, median shown; NATS: devnats on loopback\n",
		c.Point.Name, c.Runs, c.Duration, c.Warmup)
	if len(c.Flags) > 0 {
		fmt.Fprintf(&b, "- node flags: %s\n", strings.Join(c.Flags, " "))
	}
	b.WriteString("\n| where | frames/s | p50 µs | p99 µs | errors |\n| --- | ---: | ---: | ---: | ---: |\n")
	row := func(name string, f Figures) {
		p50, p99 := "-", "-"
		if f.RTT != nil {
			p50, p99 = fmt.Sprintf("%.0f", f.RTT.P50), fmt.Sprintf("%.0f", f.RTT.P99)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d |\n", name, count(f.FramesPerSec), p50, p99, f.Errors)
	}
	row("one node", r.Single)
	row("across two nodes", r.Cross)
	if r.Single.FramesPerSec > 0 {
		fmt.Fprintf(&b, "\nAcross nodes: %.0f%% of the frames/s on one node", 100*r.Cross.FramesPerSec/r.Single.FramesPerSec)
		if r.Single.RTT != nil && r.Cross.RTT != nil {
			fmt.Fprintf(&b, "; the hop adds %.0f µs at p50, %.0f µs at p99", r.Cross.RTT.P50-r.Single.RTT.P50, r.Cross.RTT.P99-r.Single.RTT.P99)
		}
		b.WriteString(".\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
