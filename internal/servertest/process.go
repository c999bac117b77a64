package servertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Command says how to start a child process.
type Command struct {
	Path string
	Args []string
	// Env is added to this process's environment for the child
	// ("GOMEMLIMIT=64MiB").
	Env []string
	// Addr is where the child will listen, if it is a server; Proc.Addr
	// and WaitReady use it.
	Addr string
	// CPUs pins the child to these CPUs from its first instruction on;
	// empty leaves it where this process may run.
	CPUs []int
	// RaiseFileLimit lifts the child's RLIMIT_NOFILE soft limit to its hard
	// limit, so a server holding tens of thousands of connections does not
	// run out of descriptors whatever it inherited.
	RaiseFileLimit bool
	// OutputTail keeps only the last OutputTail bytes the child writes to
	// stdout and stderr; 0 keeps everything.
	OutputTail int
}

// Proc is a running (or finished) child process: a server under test or
// under benchmark.
type Proc struct {
	Addr string
	Cmd  *exec.Cmd
	out  *outputBuffer
	done chan struct{} // closed when the process has exited
	err  error         // from cmd.Wait, valid once done is closed
	term bool          // Stop sent SIGTERM
}

// Run starts c and returns at once; the process is reaped in the background.
func Run(c Command) (*Proc, error) {
	cmd := exec.Command(c.Path, c.Args...)
	if len(c.Env) > 0 {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	p := &Proc{Addr: c.Addr, Cmd: cmd, out: &outputBuffer{limit: c.OutputTail}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	var err error
	if len(c.CPUs) > 0 {
		err = startPinned(cmd, c.CPUs)
	} else {
		err = cmd.Start()
	}
	if err != nil {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		return nil, fmt.Errorf("start %s: %w", c.Path, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if c.RaiseFileLimit {
		// ESRCH: the child has exited already (a bad flag, say). That is
		// for WaitReady to report, with the child's output.
		if _, err := raiseChildFileLimit(p.Pid()); err != nil && !errors.Is(err, syscall.ESRCH) {
			p.Kill()
			return nil, err
		}
	}
	return p, nil
}

// FreeAddr asks the kernel for a free loopback port. Another process could
// take it before the child binds it; the child then fails to start, which
// WaitReady reports.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// WaitReady polls p.Addr until a connection is accepted and, when hello is
// above 0, the server sends that many bytes first (ringrelay's protocol
// sends a 4-byte ID). It gives up after limit, when ctx ends, or when the
// process exits; the error then carries the process's output.
func (p *Proc) WaitReady(ctx context.Context, limit time.Duration, hello int) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", p.Addr, time.Second)
		if err == nil {
			if hello > 0 {
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				_, err = io.ReadFull(c, make([]byte, hello))
			}
			c.Close()
			if err == nil {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited before accepting on %s (%v); its output:\n%s", p.Addr, p.err, p.Logs())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no connection accepted on %s within %s (last error: %v); its output:\n%s", p.Addr, limit, err, p.Logs())
		}
	}
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Logs returns what the process printed so far (its tail, if the Command
// set OutputTail).
func (p *Proc) Logs() string { return p.out.String() }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Kill kills the process if it still runs and waits for it to be reaped.
func (p *Proc) Kill() {
	if !p.Exited() {
		_ = p.Cmd.Process.Kill()
	}
	<-p.done
}

// Stop asks the process to end with SIGTERM and kills it if it is still
// running after grace. It returns nil when the process exited with status 0
// or died of the SIGTERM itself (servers without a handler do), else what
// went wrong.
func (p *Proc) Stop(grace time.Duration) error {
	if !p.Exited() {
		p.term = p.Cmd.Process.Signal(syscall.SIGTERM) == nil
		select {
		case <-p.done:
		case <-time.After(grace):
			p.Kill()
			return fmt.Errorf("did not exit within %s of SIGTERM; killed", grace)
		}
	}
	var ee *exec.ExitError
	if p.term && errors.As(p.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
			return nil
		}
	}
	return p.err
}

// outputBuffer collects what a child writes, all of it or its tail.
type outputBuffer struct {
	mu    sync.Mutex
	buf   []byte
	limit int // 0: no limit
}

func (b *outputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.limit; b.limit > 0 && over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *outputBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
