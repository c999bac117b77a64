package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ringrelay/ringrelay/bench"
	"github.com/ringrelay/ringrelay/internal/servertest"
	"github.com/ringrelay/ringrelay/shard"
)

func TestMain(m *testing.M) { os.Exit(servertest.WithCleanup{M: m}.Run()) }

func pointNamesOf(points []bench.Point) []string {
	var names []string
	for _, p := range points {
		names = append(names, p.Name)
	}
	return names
}

func TestParseScale(t *testing.T) {
	server := fakeServer(t)
	var stderr strings.Builder
	cfg, out, err := parseScale([]string{
		"-server", server, "-server-cpus", "0-3", "-gen-cpus", "4-7",
		"-opponent", "gnet=/tmp/ref/gnet-relay -addr {addr} -loops {loops}", "-out", "/tmp/x", "-flood-size", "4KiB",
	}, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if !slices.Equal(cfg.Loops, []int{1, 2, 4}) || !slices.Equal(cfg.ServerCPUs, []int{0, 1, 2, 3}) || !slices.Equal(cfg.GeneratorCPUs, []int{4, 5, 6, 7}) || out != "/tmp/x" {
		t.Errorf("loops %v, server %v, gen %v, out %s", cfg.Loops, cfg.ServerCPUs, cfg.GeneratorCPUs, out)
	}
	if got := columnNames(bench.CompareConfig{Columns: cfg.Columns}); !slices.Equal(got, []string{"uring", "gnet"}) {
		t.Errorf("columns %v", got)
	}
	if want := []string{server, "-listen", "{addr}", "-backend", "uring", "-loops", "{loops}", "-cpus", "{cpus}"}; !slices.Equal(cfg.Columns[0].Argv, want) {
		t.Errorf("ringrelay argv %q, want %q", cfg.Columns[0].Argv, want)
	}
	if got := pointNamesOf(cfg.Points); !slices.Equal(got, []string{"pingpong-p500-w16-random", "flood-p64-4k-random"}) || cfg.Points[1].Size != 4096 {
		t.Errorf("points %v", got)
	}
	if cfg.Handoff || cfg.Points[0].Seed != bench.DefaultSeed {
		t.Errorf("handoff %v, seed %d", cfg.Handoff, cfg.Points[0].Seed)
	}

	// -handoff: loops 1 and 2 on the first server CPU, pingpong only.
	cfg, _, err = parseScale([]string{"-server", server, "-server-cpus", "0", "-gen-cpus", "1", "-handoff",
		"-loop-flags", "-loops={loops}", "-pairing", "adjacent", "-pairs", "50"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Handoff || !slices.Equal(cfg.Loops, []int{1, 2}) || !slices.Equal(pointNamesOf(cfg.Points), []string{"pingpong-p50-w16"}) {
		t.Errorf("handoff: loops %v, points %v", cfg.Loops, pointNamesOf(cfg.Points))
	}
	if got := cfg.Columns[0].Argv[5:]; !slices.Equal(got, []string{"-loops={loops}"}) {
		t.Errorf("-loop-flags: %q", got)
	}

	// Only one set given: the other is what this process may use besides.
	allowed, err := shard.AllowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err = parseScale([]string{"-server", server, "-server-cpus", fmt.Sprint(allowed[0]), "-loops", "1"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.GeneratorCPUs, allowed[1:]) {
		t.Errorf("generator CPUs %v, want %v", cfg.GeneratorCPUs, allowed[1:])
	}
}

func TestParseScaleRejects(t *testing.T) {
	server := fakeServer(t)
	base := []string{"-server", server}
	for _, args := range [][]string{
		{"-server-cpus", "0-3", "-gen-cpus", "3-7"},                // overlap
		{"-server-cpus", "0-3", "-gen-cpus", "4-7", "-loops", "8"}, // more loops than server CPUs
		{"-server-cpus", "0-3", "-gen-cpus", "4-7", "-loops", "two"},
		{"-server-cpus", "0-3", "-gen-cpus", "4-7", "-workloads", "fanin"},
		{"-server-cpus", "0-3", "-gen-cpus", "4-7", "-pairing", "shuffled"},
		{"-server-cpus", "0-", "-gen-cpus", "4-7"},
		{"-server-cpus", "0-3", "-gen-cpus", "4-7", "-backends", ""}, // nothing to run
		{"-server-cpus", "0-3", "-gen-cpus", "4-7", "-loop-flags", "'-loops"},
	} {
		var stderr strings.Builder
		_, _, err := parseScale(append(slices.Clone(base), args...), &stderr)
		var ue usageError
		if err == nil || !errors.As(err, &ue) {
			t.Errorf("%q: got %v, want a usage error", args, err)
		}
	}
}

// The whole command, against ringrelay as it is today (no -loops): an
// opponent whose wrapper prints the filled-in template, -handoff, tiny
// durations. It prints the tables and the handoff sum-up, and saves JSON.
func TestScaleCommand(t *testing.T) {
	bin := filepath.Join(servertest.Binaries(t), "ringrelay")
	allowed, err := shard.AllowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var stdout, stderr strings.Builder
	code := run([]string{"scale", "-handoff", "-backends", "", "-server-cpus", fmt.Sprint(allowed[0]),
		"-opponent", "today=/bin/sh -c 'echo {loops} loops on {cpus}; exec " + bin + " -listen {addr} -backend epoll'",
		"-pairs", "4", "-window", "2", "-runs", "1", "-warmup", "50ms", "-duration", "150ms", "-out", dir,
	}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	md := stdout.String()
	for _, want := range []string{
		"## ringbench scale -handoff, ",
		"### pingpong-p4-w2-random\n",
		fmt.Sprintf("| 1 | %d | today | ", allowed[0]),
		fmt.Sprintf("| 2 | %d | today | ", allowed[0]),
		fmt.Sprintf("- pingpong-p4-w2-random, today: 2 loops sharing CPU %d deliver ", allowed[0]),
		"results: " + filepath.Join(dir, "ringbench-scale-"),
	} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in:\n%s", want, md)
		}
	}
	saved, _ := filepath.Glob(filepath.Join(dir, "ringbench-scale-*.json"))
	if len(saved) != 1 {
		t.Fatalf("saved %v", saved)
	}
	js, err := os.ReadFile(saved[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`"2": "2 loops on %d"`, allowed[0]); !strings.Contains(string(js), want) {
		t.Errorf("JSON lacks the start line %s:\n%s", want, js)
	}
}
