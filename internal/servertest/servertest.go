// Package servertest runs a server binary as a child process and observes
// it from outside: launch on a free port, CPU pinning, readiness, stop, and
// the /proc readers for its CPU time, RSS, threads and descriptors.
//
// Two kinds of callers share it. Tests use the helpers that take a TB
// (Start, Launch, Binaries and the Proc methods with a TB argument): they
// run the real ringrelay binary for what needs a separate process (signals,
// exit codes, resource limits, seccomp filters, RSS and descriptor counts of
// the server alone) and fail the test on any error. The benchmark (package
// bench, behind ringbench) uses Run, FreeAddr, WaitReady, Stop and the
// package-level readers, which return errors instead.
package servertest

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// TB is the part of testing.TB the test helpers use. Any testing.TB
// satisfies it; naming it here keeps package testing out of ringbench.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// moduleRoot finds the repository root from this source file's location.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Binaries builds ringrelay and the seccomp launcher once per test process
// and returns the directory holding them.
func Binaries(t TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "ringrelay-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", buildDir+"/", "./cmd/ringrelay", "./internal/servertest/seccompexec")
		cmd.Dir = moduleRoot()
		cmd.Env = append(os.Environ(), "GOFLAGS=-ldflags=-checklinkname=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build ringrelay: %v", buildErr)
	}
	return buildDir
}

// Cleanup removes the binaries Binaries built. Call it from TestMain after
// the tests ran.
func Cleanup() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// WithCleanup wraps a *testing.M for TestMain so that the binaries
// Binaries built are removed after the tests ran, also through
// goleak.VerifyTestMain(servertest.WithCleanup{M: m}), which exits itself.
type WithCleanup struct{ M interface{ Run() int } }

// Run runs the tests, then Cleanup.
func (w WithCleanup) Run() int {
	defer Cleanup()
	return w.M.Run()
}

// Options say how to start the server.
type Options struct {
	Args []string // flags besides -listen (which Start picks)
	Env  []string // added to the environment ("GOMEMLIMIT=64MiB")
	// DenyIOUring runs the server under a seccomp filter that makes
	// io_uring_setup fail with EPERM, as Docker's default profile does.
	DenyIOUring bool
	// NoListen leaves -listen out (for runs expected to fail at start).
	NoListen bool
	// FileLimit, when above 0, is the server's RLIMIT_NOFILE (soft and
	// hard) from its first instruction: a shell sets it and execs the
	// server, so no descriptor, and no io_uring accept, ever saw a higher
	// one. Lowering it with prlimit after the start races the server.
	FileLimit uint64
}

// Start runs ringrelay with opts and waits until it accepts connections.
// The process is killed at the end of the test if it is still running.
// The port FreeAddr picked can be taken by another process before the
// server binds it; a server that exits saying so is started again on
// another port, twice at most.
func Start(t TB, opts Options) *Proc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		p := Launch(t, opts)
		err := p.WaitReady(context.Background(), 60*time.Second, 0)
		if err == nil {
			return p
		}
		if attempt < 3 && !opts.NoListen && p.Exited() && strings.Contains(err.Error(), "address already in use") {
			continue
		}
		t.Fatalf("ringrelay did not start listening: %v", err)
	}
}

// Launch starts ringrelay without waiting for it to listen.
func Launch(t TB, opts Options) *Proc {
	t.Helper()
	dir := Binaries(t)
	c := Command{Path: filepath.Join(dir, "ringrelay"), Args: opts.Args, Env: opts.Env}
	if !opts.NoListen {
		addr, err := FreeAddr()
		if err != nil {
			t.Fatalf("%v", err)
		}
		c.Addr = addr
		c.Args = append([]string{"-listen", addr}, c.Args...)
	}
	if opts.DenyIOUring {
		c.Args = append([]string{c.Path}, c.Args...)
		c.Path = filepath.Join(dir, "seccompexec")
	}
	if opts.FileLimit > 0 {
		script := fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, opts.FileLimit)
		c.Args = append([]string{"-c", script, c.Path}, c.Args...)
		c.Path = "/bin/sh"
	}
	p, err := Run(c)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(p.Kill)
	return p
}

// Wait waits up to d for the process to exit and returns its exit code
// (-1 if it was killed by a signal). It fails the test on timeout.
func (p *Proc) Wait(t TB, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("%s still running after %v\nlogs:\n%s", filepath.Base(p.Cmd.Path), d, p.Logs())
	}
	return p.Cmd.ProcessState.ExitCode()
}

// Signal sends sig to the process.
func (p *Proc) Signal(t TB, sig syscall.Signal) {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// FDs lists the targets of the process's open descriptors
// (e.g. "socket:[123]", "anon_inode:[io_uring]").
func (p *Proc) FDs(t TB) []string {
	t.Helper()
	v, err := FDs(p.Pid())
	return slices.Sorted(maps.Values(must(t, v, err)))
}

// RSS is the process's resident set size in bytes.
func (p *Proc) RSS(t TB) int64 {
	t.Helper()
	v, err := RSS(p.Pid())
	return must(t, v, err)
}

// Threads is the process's OS thread count.
func (p *Proc) Threads(t TB) int64 {
	t.Helper()
	v, err := Threads(p.Pid())
	return must(t, v, err)
}

// CPUTime is the user+system CPU time the process has used.
func (p *Proc) CPUTime(t TB) time.Duration {
	t.Helper()
	v, err := CPUTime(p.Pid())
	return must(t, v, err)
}

// must turns a reader's error into a test failure.
func must[V any](t TB, v V, err error) V {
	t.Helper()
	if err != nil {
		t.Fatalf("%v", err)
	}
	return v
}
