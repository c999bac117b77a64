// Command ringbench measures a ringrelay server.
//
//	ringbench compare [flags]   start ringrelay once per backend (and any other
//	                            relay given with -opponent) and compare them
//	ringbench scale [flags]     run ringrelay (and each -opponent) at 1, 2, 4, ...
//	                            loops, each loop pinned to a CPU of its own
//	ringbench cluster [flags]   start NATS and two ringrelay nodes joined through
//	                            it; one point on one node and across the two
//	ringbench load [flags]      run one workload against a running server
//
// All print markdown tables on stdout and exit 1 if any point failed its
// integrity checks. compare also writes JSON and an SVG chart to
// bench/results/, scale its JSON. Run `ringbench COMMAND -h` for the
// flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ringrelay/ringrelay/bench"
	"github.com/ringrelay/ringrelay/internal/bytesize"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  ringbench compare [flags]   start ringrelay per backend and each -opponent, run every load point, compare
  ringbench scale [flags]     the same at 1, 2, 4, ... loops, one CPU per loop (-handoff: loops sharing one CPU)
  ringbench cluster [flags]   start NATS and two nodes; one point on one node and across nodes: the cost of the hop
  ringbench load [flags]      run one workload against a server that is already running
run "ringbench COMMAND -h" for the flags
`

// run returns the exit status: 0 all points passed, 1 a point failed or the
// run could not finish, 2 bad usage.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	progress := bench.NewProgress(os.Stderr)
	var (
		out    outcome
		outDir string
		err    error
	)
	switch args[0] {
	case "compare":
		var cfg bench.CompareConfig
		if cfg, outDir, err = parseCompare(args[1:], stderr); err == nil {
			var r *bench.Report
			if r, err = bench.Compare(ctx, cfg, progress); err == nil {
				out = reportOutcome(r)
			}
		}
	case "scale":
		var cfg bench.ScaleConfig
		if cfg, outDir, err = parseScale(args[1:], stderr); err == nil {
			var r *bench.ScaleReport
			if r, err = bench.Scale(ctx, cfg, progress); err == nil {
				out = scaleOutcome(r)
			}
		}
	case "cluster":
		var cfg bench.ClusterConfig
		if cfg, err = parseCluster(args[1:], stderr); err == nil {
			var r *bench.ClusterReport
			if r, err = bench.Cluster(ctx, cfg, progress); err == nil {
				out = outcome{
					write:       func(w io.Writer) error { return bench.WriteClusterMarkdown(w, r) },
					failed:      r.Failed(),
					interrupted: r.Interrupted,
				}
			}
		}
	case "load":
		var cfg bench.LoadConfig
		if cfg, err = parseLoad(args[1:], stderr); err == nil {
			var r *bench.Report
			if r, err = bench.Load(ctx, cfg, progress); err == nil {
				out = reportOutcome(r)
			}
		}
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "ringbench: unknown command %q\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "ringbench %s: %v\n", args[0], err)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "ringbench %s: %v\n", args[0], err)
		return 1
	}
	if err := out.write(stdout); err != nil {
		fmt.Fprintf(stderr, "ringbench: %v\n", err)
		return 1
	}
	if outDir != "" {
		paths, err := out.save(outDir)
		if err != nil {
			fmt.Fprintf(stderr, "ringbench: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "results: %s\n", strings.Join(paths, ", "))
	}
	if out.interrupted {
		fmt.Fprintln(stderr, "ringbench: interrupted; the report holds what was measured until then")
		return 1
	}
	if out.failed {
		fmt.Fprintln(stderr, "ringbench: some points FAILED (see Errors in the report)")
		return 1
	}
	return 0
}

// outcome is what a command produced, whichever report it is.
type outcome struct {
	write       func(io.Writer) error
	save        func(dir string) ([]string, error)
	failed      bool
	interrupted bool // the report is incomplete
}

func reportOutcome(r *bench.Report) outcome {
	return outcome{
		write:  func(w io.Writer) error { return bench.WriteMarkdown(w, r) },
		save:   func(dir string) ([]string, error) { return bench.SaveReport(dir, r) },
		failed: r.Failed(),
	}
}

func scaleOutcome(r *bench.ScaleReport) outcome {
	return outcome{
		write: func(w io.Writer) error { return bench.WriteScaleMarkdown(w, r) },
		save: func(dir string) ([]string, error) {
			path, err := bench.SaveScaleReport(dir, r)
			return []string{path}, err
		},
		failed:      r.Failed(),
		interrupted: r.Interrupted,
	}
}

// usageError marks a problem with the command line.
type usageError struct{ error }

func parseCompare(args []string, stderr io.Writer) (bench.CompareConfig, string, error) {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		server      = fs.String("server", "", "ringrelay binary (default: bin/ringrelay in the working directory, else ringrelay next to ringbench)")
		serverFlags multiFlag
		opponents   multiFlag
		backends    = fs.String("backends", "uring,epoll", "comma-separated backends, each passed to the server as -backend; may be empty when -opponent is given")
		baseline    = fs.String("baseline", "", "the column the others are compared with (default: the first backend, else the first opponent)")
		points      = fs.String("points", "", "comma-separated point names or workloads to run (default: all; with -quick: the quick set)")
		runs        = fs.Int("runs", 3, "runs per point and server; the median is reported")
		duration    = fs.Duration("duration", 5*time.Second, "measured time per point and server")
		warmup      = fs.Duration("warmup", time.Second, "unmeasured traffic before each measurement")
		quick       = fs.Bool("quick", false, "a short smoke run: 4 points, 1 run, 1s each (explicit flags still win)")
		out         = fs.String("out", "bench/results", "directory for the JSON results and the SVG chart")
		pin         = fs.Bool("pin", true, "pin the servers to one CPU and the generator to the others")
	)
	fs.Var(&serverFlags, "server-flag", "extra `flag` for ringrelay, repeatable (e.g. -server-flag=-max-conns=20000)")
	fs.Var(&opponents, "opponent", "another relay as a column, repeatable: `NAME=COMMAND`, where {addr} in COMMAND is replaced by the\n"+
		"HOST:PORT it must listen on ({host} and {port} by its parts); quotes group words, no shell\n"+
		"(e.g. -opponent 'c=/tmp/ref/c-uring-relay {addr}' -opponent 'gnet=/tmp/ref/gnet-relay -multicore=false -addr {addr}')")
	tlsf := defineTLSFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: ringbench compare [flags]\n\nPoints: %s\n\n", pointNames(bench.DefaultPoints()))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return bench.CompareConfig{}, "", err
	}
	if fs.NArg() > 0 {
		return bench.CompareConfig{}, "", usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	all := bench.DefaultPoints()
	chosen := all
	if *quick {
		chosen = bench.QuickPoints()
		if !set["runs"] {
			*runs = 1
		}
		if !set["duration"] {
			*duration = time.Second
		}
		if !set["warmup"] {
			*warmup = 500 * time.Millisecond
		}
	}
	if *points != "" {
		var err error
		if chosen, err = bench.SelectPoints(append(all, bench.ExtraPoints()...), splitList(*points)); err != nil {
			return bench.CompareConfig{}, "", usageError{err}
		}
	}
	tlsColumns, err := tlsf.columns(*server, serverFlags)
	if err != nil {
		return bench.CompareConfig{}, "", err
	}
	columns, err := buildColumns(*server, splitList(*backends), serverFlags, opponents, *baseline)
	if err != nil {
		return bench.CompareConfig{}, "", err
	}
	columns = append(columns, tlsColumns...)
	cfg := bench.CompareConfig{
		Columns: columns, Points: chosen,
		Runs: *runs, Warmup: *warmup, Duration: *duration, Pin: *pin,
	}
	if err := cfg.Validate(); err != nil {
		return cfg, "", usageError{err}
	}
	return cfg, *out, nil
}

func parseCluster(args []string, stderr io.Writer) (bench.ClusterConfig, error) {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		server      = fs.String("server", "", "ringrelay binary (default: bin/ringrelay in the working directory, else ringrelay next to ringbench)")
		devnats     = fs.String("devnats", "", "devnats binary, the NATS server the nodes join (default: devnats next to the ringrelay binary, else bin/devnats)")
		serverFlags multiFlag
		workload    = fs.String("workload", "pingpong", "workload: "+strings.Join(bench.Workloads, ", "))
		pairs       = fs.Int("pairs", 50, "pingpong: pairs of connections; flood: sender-receiver pairs")
		window      = fs.Int("window", 16, "pingpong: frames in flight per pair")
		size        = sizeVar(fs, "size", 0, "payload `size` (default: the workload's)")
		runs        = fs.Int("runs", 3, "runs on one node and across two, alternating; the median is reported")
		duration    = fs.Duration("duration", 5*time.Second, "measured time per run")
		warmup      = fs.Duration("warmup", time.Second, "unmeasured traffic before each measurement")
	)
	fs.Var(&serverFlags, "server-flag", "extra `flag` for both nodes, repeatable (e.g. -server-flag=-loops=1)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: ringbench cluster [flags]\n\nStarts a NATS server (devnats) and two ringrelay nodes joined through it, and runs one point\n"+
			"on node 0 alone and with its connections split over both nodes (every adjacent pair crosses):\n"+
			"frames/s, p50 and p99 of each, and what the hop costs.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return bench.ClusterConfig{}, err
	}
	if fs.NArg() > 0 {
		return bench.ClusterConfig{}, usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	p, err := bench.NewPoint(*workload, *pairs, *window, 0, 0, int(*size))
	if err != nil {
		return bench.ClusterConfig{}, usageError{err}
	}
	path, err := bench.FindServer(*server)
	if err != nil {
		return bench.ClusterConfig{}, err
	}
	nats, err := bench.FindDevNATS(*devnats, path)
	if err != nil {
		return bench.ClusterConfig{}, err
	}
	cfg := bench.ClusterConfig{
		Server: path, DevNATS: nats, Flags: serverFlags, Point: p,
		Runs: *runs, Warmup: *warmup, Duration: *duration,
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

func parseLoad(args []string, stderr io.Writer) (bench.LoadConfig, error) {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		addr     = fs.String("addr", "", "server address HOST:PORT (required); HOST:PORT,HOST:PORT,... for the nodes of a cluster: connection i dials node i mod k, so with two nodes and -pairing adjacent every pair crosses nodes")
		workload = fs.String("workload", "", "workload: "+strings.Join(bench.Workloads, ", ")+" (required)")
		pairs    = fs.Int("pairs", 0, "pingpong: pairs of connections; flood: sender-receiver pairs (default 1)")
		window   = fs.Int("window", 0, "pingpong: frames in flight per pair (default 1)")
		senders  = fs.Int("senders", 0, "fanin: sending connections (default 100)")
		conns    = fs.Int("conns", 0, "idle: connections to hold (default 10000)")
		size     = sizeVar(fs, "size", 0, fmt.Sprintf("payload `size`, at least %dB, like 64 or 1KiB (default: pingpong 64B, flood 1KiB, fanin 256B)", bench.MinPayload))
		pairing  = fs.String("pairing", bench.PairAdjacent, "pingpong, flood: which connections pair up: "+strings.Join(bench.Pairings, " or "))
		seed     = fs.Uint64("seed", bench.DefaultSeed, "the seed of -pairing random")
		duration = fs.Duration("duration", 5*time.Second, "measured time")
		warmup   = fs.Duration("warmup", time.Second, "unmeasured traffic before the measurement")
		pid      = fs.Int("pid", 0, "server process ID; when set, server CPU and RSS are read from /proc")
		cpu      = fs.Int("cpu", -1, "pin ringbench to this CPU (-1: do not pin)")
		profile  = fs.String("cpuprofile", "", "write ringbench's own CPU profile to this `file`, to see where the generator spends its time")
		tlsCA    = fs.String("tls-ca", "", "dial over TLS 1.3, trusting the CA in this PEM `file` (the server runs with -tls-cert)")
	)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: ringbench load -addr HOST:PORT -workload NAME [flags]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return bench.LoadConfig{}, err
	}
	if fs.NArg() > 0 {
		return bench.LoadConfig{}, usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	p, err := bench.NewPoint(*workload, *pairs, *window, *senders, *conns, int(*size))
	if err == nil && *pairing != bench.PairAdjacent {
		p, err = p.Paired(*pairing, *seed)
	}
	if err != nil {
		return bench.LoadConfig{}, usageError{err}
	}
	cfg := bench.LoadConfig{Addr: *addr, Point: p, Warmup: *warmup, Duration: *duration, ServerPID: *pid, CPU: *cpu, CPUProfile: *profile}
	if *tlsCA != "" {
		if cfg.TLS, err = loadTLSClient(*tlsCA); err != nil {
			return cfg, usageError{err}
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

// buildColumns makes the columns: one per backend (the ringrelay binary
// at server, or the one FindServer finds, with -backend and flags), then
// the opponents in order; baseline, if set, moves that column first.
func buildColumns(server string, backends, flags, opponents []string, baseline string) ([]bench.Contender, error) {
	var columns []bench.Contender
	if len(backends) > 0 {
		path, err := bench.FindServer(server)
		if err != nil {
			return nil, err
		}
		for _, b := range backends {
			columns = append(columns, bench.Backend(path, b, flags))
		}
	}
	for _, spec := range opponents {
		o, err := bench.ParseOpponent(spec)
		if err != nil {
			return nil, usageError{err}
		}
		columns = append(columns, o)
	}
	if baseline != "" {
		i := slices.IndexFunc(columns, func(c bench.Contender) bool { return c.Name == baseline })
		if i < 0 {
			return nil, usageError{fmt.Errorf("-baseline %s: no backend or opponent has that name", baseline)}
		}
		first := columns[i]
		columns = slices.Insert(slices.Delete(columns, i, i+1), 0, first)
	}
	return columns, nil
}

// multiFlag collects every use of a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func pointNames(points []bench.Point) string {
	var names []string
	for _, p := range points {
		names = append(names, p.Name)
	}
	return strings.Join(names, ", ")
}

// payloadSize is a payload size flag, read and shown by internal/bytesize
// (64, 1KiB); 0 stands for the workload's default.
type payloadSize int

func (s *payloadSize) String() string {
	if s == nil || *s == 0 {
		return "0"
	}
	return bytesize.Format(int64(*s))
}

func (s *payloadSize) Set(v string) error {
	n, err := bytesize.Parse(v)
	if err != nil {
		return err
	}
	if n > 1<<30 {
		return fmt.Errorf("%s is over the 1GiB a payload can be here", bytesize.Format(n))
	}
	*s = payloadSize(n)
	return nil
}

// sizeVar defines a payload size flag with a default.
func sizeVar(fs *flag.FlagSet, name string, def int, usage string) *payloadSize {
	s := payloadSize(def)
	fs.Var(&s, name, usage)
	return &s
}
