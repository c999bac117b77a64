package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ringrelay/ringrelay/bench"
	"github.com/ringrelay/ringrelay/shard"
)

func parseScale(args []string, stderr io.Writer) (bench.ScaleConfig, string, error) {
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		server      = fs.String("server", "", "ringrelay binary (default: bin/ringrelay in the working directory, else ringrelay next to ringbench)")
		serverFlags multiFlag
		opponents   multiFlag
		backends    = fs.String("backends", "uring", "comma-separated ringrelay backends, each a column; may be empty when -opponent is given")
		loopFlags   = fs.String("loop-flags", bench.LoopFlags, "the flags that give ringrelay its loop count and CPUs")
		baseline    = fs.String("baseline", "", "the column the others are compared with (default: the first)")
		serverCPUs  = fs.String("server-cpus", "", "the server's CPUs, `LIST` like 0-3,8: N loops run on the first N, loop k pinned to the k-th\n"+
			"(default: the first half of the cores this process may use, one thread per core first)")
		genCPUs  = fs.String("gen-cpus", "", "the generator's CPUs, `LIST`, one worker thread pinned to each; disjoint from -server-cpus (default: the other cores)")
		loops    = fs.String("loops", "", "comma-separated loop counts (default: 1, 2, 4, ... up to the server's CPUs; with -handoff: 1,2)")
		handoff  = fs.Bool("handoff", false, "run every loop count on the first server CPU alone, to measure the cost of handing frames between loops")
		works    = fs.String("workloads", "pingpong,flood", "comma-separated: pingpong, flood (default with -handoff: pingpong)")
		pairs    = fs.Int("pairs", 500, "pingpong: pairs of connections")
		window   = fs.Int("window", 16, "pingpong: frames in flight per pair")
		size     = sizeVar(fs, "size", 64, "pingpong: payload `size` (64, 1KiB)")
		fpairs   = fs.Int("flood-pairs", 64, "flood: sender-receiver pairs, each sending as fast as the server takes it")
		fsize    = sizeVar(fs, "flood-size", 1024, "flood: payload `size`")
		pairing  = fs.String("pairing", bench.PairRandom, "which connections pair up: "+strings.Join(bench.Pairings, " or "))
		seed     = fs.Uint64("seed", bench.DefaultSeed, "the seed of -pairing random")
		runs     = fs.Int("runs", 3, "runs per point, loop count and server; the median is reported")
		duration = fs.Duration("duration", 3*time.Second, "measured time per point")
		warmup   = fs.Duration("warmup", time.Second, "unmeasured traffic before each measurement")
		out      = fs.String("out", "bench/results", "directory for the JSON results")
	)
	fs.Var(&serverFlags, "server-flag", "extra `flag` for ringrelay, repeatable")
	fs.Var(&opponents, "opponent", "another relay as a column, repeatable: `NAME=COMMAND`, as for compare; {loops} and {cpus}\n"+
		"become the loop count and the server's CPUs, comma-separated (e.g. -opponent 'gnet=/tmp/ref/gnet-relay -addr {addr} -loops {loops}')")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: ringbench scale [flags]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return bench.ScaleConfig{}, "", err
	}
	if fs.NArg() > 0 {
		return bench.ScaleConfig{}, "", usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	cfg := bench.ScaleConfig{Handoff: *handoff, Runs: *runs, Warmup: *warmup, Duration: *duration}
	var err error
	if cfg.ServerCPUs, cfg.GeneratorCPUs, err = scaleCPUs(*serverCPUs, *genCPUs); err != nil {
		return cfg, "", usageError{err}
	}
	switch {
	case *loops != "":
		for _, f := range splitList(*loops) {
			n, err := strconv.Atoi(f)
			if err != nil {
				return cfg, "", usageError{fmt.Errorf("-loops %q: %q is not a number", *loops, f)}
			}
			cfg.Loops = append(cfg.Loops, n)
		}
	case *handoff:
		cfg.Loops = []int{1, 2}
	default:
		cfg.Loops = bench.PowersOfTwo(len(cfg.ServerCPUs))
	}
	if *handoff && !set["workloads"] {
		*works = "pingpong"
	}
	if cfg.Points, err = scalePoints(splitList(*works), *pairs, *window, int(*size), *fpairs, int(*fsize), *pairing, *seed); err != nil {
		return cfg, "", usageError{err}
	}
	flags, err := bench.SplitCommand(*loopFlags)
	if err != nil {
		return cfg, "", usageError{fmt.Errorf("-loop-flags: %w", err)}
	}
	if cfg.Columns, err = buildColumns(*server, splitList(*backends), append(flags, serverFlags...), opponents, *baseline); err != nil {
		return cfg, "", err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, "", usageError{err}
	}
	return cfg, *out, nil
}

// scaleCPUs reads -server-cpus and -gen-cpus. What is not given is made
// from the CPUs this process may use: both missing, they are split by
// cores; one missing, it gets the allowed CPUs the other does not list.
func scaleCPUs(server, gen string) (srv, g []int, err error) {
	if server != "" {
		if srv, err = shard.ParseCPUs(server); err != nil {
			return nil, nil, fmt.Errorf("-server-cpus: %w", err)
		}
	}
	if gen != "" {
		if g, err = shard.ParseCPUs(gen); err != nil {
			return nil, nil, fmt.Errorf("-gen-cpus: %w", err)
		}
	}
	if server != "" && gen != "" {
		return srv, g, nil
	}
	allowed, err := shard.AllowedCPUs()
	if err != nil {
		return nil, nil, err
	}
	switch {
	case server == "" && gen == "":
		srv, g = bench.DefaultSplit(allowed)
	case server == "":
		srv = without(allowed, g)
	default:
		g = without(allowed, srv)
	}
	return srv, g, nil
}

// without returns the CPUs of all that are not in some.
func without(all, some []int) []int {
	var out []int
	for _, c := range all {
		if !slices.Contains(some, c) {
			out = append(out, c)
		}
	}
	return out
}

// scalePoints makes the points of the workloads named.
func scalePoints(workloads []string, pairs, window, size, floodPairs, floodSize int, pairing string, seed uint64) ([]bench.Point, error) {
	var points []bench.Point
	for _, w := range workloads {
		var (
			p   bench.Point
			err error
		)
		switch w {
		case "pingpong":
			p, err = bench.NewPoint(w, pairs, window, 0, 0, size)
		case "flood":
			p, err = bench.NewPoint(w, floodPairs, 0, 0, 0, floodSize)
		default:
			return nil, fmt.Errorf("-workloads: %q is not pingpong or flood", w)
		}
		if err == nil {
			p, err = p.Paired(pairing, seed)
		}
		if err != nil {
			return nil, err
		}
		points = append(points, p)
	}
	return points, nil
}
