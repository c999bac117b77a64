// Package servertest runs the real ringrelay binary as a child process for
// tests that need a separate process: signals, exit codes, resource limits,
// seccomp filters, RSS and descriptor counts of the server alone.
package servertest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

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
func Binaries(t testing.TB) string {
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

// Options say how to start the server.
type Options struct {
	Args []string // flags besides -listen (which Start picks)
	// DenyIOUring runs the server under a seccomp filter that makes
	// io_uring_setup fail with EPERM, as Docker's default profile does.
	DenyIOUring bool
	// NoListen leaves -listen out (for runs expected to fail at start).
	NoListen bool
}

// Proc is a running (or finished) server process.
type Proc struct {
	Addr string
	Cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
	err  error
}

// Start runs ringrelay with opts and waits until it accepts connections.
// The process is killed at the end of the test if it is still running.
func Start(t testing.TB, opts Options) *Proc {
	t.Helper()
	p := Launch(t, opts)
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.Addr, time.Second)
		if err == nil {
			c.Close()
			return p
		}
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("ringrelay did not start listening on %s: %v\nlogs:\n%s", p.Addr, err, p.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Launch starts ringrelay without waiting for it to listen.
func Launch(t testing.TB, opts Options) *Proc {
	t.Helper()
	dir := Binaries(t)
	args := opts.Args
	p := &Proc{logs: &syncBuffer{}, done: make(chan struct{})}
	if !opts.NoListen {
		p.Addr = freeAddr(t)
		args = append([]string{"-listen", p.Addr}, args...)
	}
	var cmd *exec.Cmd
	if opts.DenyIOUring {
		cmd = exec.Command(filepath.Join(dir, "seccompexec"), append([]string{filepath.Join(dir, "ringrelay")}, args...)...)
	} else {
		cmd = exec.Command(filepath.Join(dir, "ringrelay"), args...)
	}
	cmd.Stdout = p.logs
	cmd.Stderr = p.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ringrelay: %v", err)
	}
	p.Cmd = cmd
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.Exited() {
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pick a port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Pid is the server's process id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Logs returns everything the server printed so far.
func (p *Proc) Logs() string { return p.logs.String() }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits up to d for the process to exit and returns its exit code
// (-1 if it was killed by a signal). It fails the test on timeout.
func (p *Proc) Wait(t testing.TB, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("ringrelay still running after %v\nlogs:\n%s", d, p.Logs())
	}
	return p.Cmd.ProcessState.ExitCode()
}

// Signal sends sig to the server.
func (p *Proc) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// FDs lists the targets of the server's open descriptors
// (e.g. "socket:[123]", "anon_inode:[io_uring]").
func (p *Proc) FDs(t testing.TB) []string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", p.Pid())
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	var out []string
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil {
			out = append(out, target)
		}
	}
	return out
}

// RSS is the server's resident set size in bytes.
func (p *Proc) RSS(t testing.TB) int64 {
	t.Helper()
	return statusField(t, p.Pid(), "VmRSS:") * 1024
}

// Threads is the server's OS thread count.
func (p *Proc) Threads(t testing.TB) int64 {
	t.Helper()
	return statusField(t, p.Pid(), "Threads:")
}

// CPUTime is the user+system CPU time the server has used.
func (p *Proc) CPUTime(t testing.TB) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
	if err != nil {
		t.Fatalf("read stat: %v", err)
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
}

func statusField(t testing.TB, pid int, key string) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read status: %v", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), key); ok {
			v, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return v
		}
	}
	t.Fatalf("no %s in /proc/%d/status", key, pid)
	return 0
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
