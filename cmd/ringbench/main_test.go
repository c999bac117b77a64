package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ringrelay/ringrelay/bench"
)

func columnNames(cfg bench.CompareConfig) []string {
	var names []string
	for _, c := range cfg.Columns {
		names = append(names, c.Name)
	}
	return names
}

func fakeServer(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ringrelay")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestParseCompareOpponents(t *testing.T) {
	server := fakeServer(t)
	var stderr strings.Builder
	cfg, _, err := parseCompare([]string{
		"-server", server, "-quick",
		"-opponent", "c=/tmp/ref/c-uring-relay {addr}",
		"-opponent", "gnet=/tmp/ref/gnet-relay -multicore=false -addr {addr}",
		"-baseline", "c",
	}, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if got := columnNames(cfg); !slices.Equal(got, []string{"c", "uring", "epoll", "gnet"}) {
		t.Errorf("columns %v: the baseline first, then backends and opponents in order", got)
	}
	if !slices.Equal(cfg.Columns[3].Argv, []string{"/tmp/ref/gnet-relay", "-multicore=false", "-addr", "{addr}"}) {
		t.Errorf("gnet argv %q", cfg.Columns[3].Argv)
	}
	if !slices.Equal(cfg.Columns[1].Argv[:3], []string{server, "-listen", "{addr}"}) {
		t.Errorf("uring argv %q", cfg.Columns[1].Argv)
	}

	// Opponents alone: no ringrelay binary needed.
	cfg, _, err = parseCompare([]string{"-server", "/nonexistent", "-backends", "", "-opponent", "c=/x {addr}", "-points", "pingpong-p500-w16"}, &stderr)
	if err != nil {
		t.Fatalf("opponents only: %v", err)
	}
	if got := columnNames(cfg); !slices.Equal(got, []string{"c"}) || len(cfg.Points) != 1 || cfg.Points[0].Pairs != 500 || cfg.Points[0].Window != 16 {
		t.Errorf("columns %v, points %+v", got, cfg.Points)
	}
}

func TestParseCompareRejects(t *testing.T) {
	server := fakeServer(t)
	for _, args := range [][]string{
		{"-server", server, "-opponent", "c=/x 127.0.0.1:9"},                        // no {addr}
		{"-server", server, "-opponent", "uring=/x {addr}"},                         // name taken by a backend
		{"-server", server, "-baseline", "nobody"},                                  // unknown baseline
		{"-server", server, "-backends", ""},                                        // nothing to run
		{"-server", server, "-opponent", "c=/x {addr}", "-opponent", "c=/y {addr}"}, // twice
	} {
		var stderr strings.Builder
		_, _, err := parseCompare(args, &stderr)
		var ue usageError
		if err == nil || !errors.As(err, &ue) {
			t.Errorf("%q: got %v, want a usage error", args, err)
		}
	}
}
