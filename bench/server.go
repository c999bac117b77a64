package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Server is a ringrelay child process serving one backend on a loopback
// port of its own.
type Server struct {
	Backend string
	Addr    string
	cmd     *exec.Cmd
	log     *logTail
	done    chan struct{} // closed when the process has exited
	waitErr error
}

// ServerConfig says how to start a server.
type ServerConfig struct {
	Path    string   // the ringrelay binary
	Backend string   // passed as -backend
	Flags   []string // extra flags, passed through
	CPU     int      // pin the server here; -1 leaves it unpinned
}

// StartServer starts the binary on a free loopback port and returns once it
// accepts connections and sends IDs.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	args := append([]string{"-listen", addr, "-backend", cfg.Backend}, cfg.Flags...)
	cmd := exec.Command(cfg.Path, args...)
	log := &logTail{}
	cmd.Stdout, cmd.Stderr = log, log
	if cfg.CPU >= 0 {
		err = startPinned(cmd, cfg.CPU)
	} else {
		err = cmd.Start()
	}
	if err != nil {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		return nil, fmt.Errorf("start %s: %w", cfg.Path, err)
	}
	s := &Server{Backend: cfg.Backend, Addr: addr, cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	if _, err := raiseChildFileLimit(cmd.Process.Pid); err != nil {
		s.Stop()
		return nil, err
	}
	if err := s.waitReady(ctx, 15*time.Second); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%s -backend %s: %w", cfg.Path, cfg.Backend, err)
	}
	return s, nil
}

// freeLoopbackAddr asks the kernel for a free port. Another process could
// take it before the server binds it; the server then fails to start, which
// StartServer reports.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitReady polls until a connection gets its 4-byte ID.
func (s *Server) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			var id [4]byte
			_, err = io.ReadFull(c, id[:])
			c.Close()
			if err == nil {
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("exited before accepting (%v); its output:\n%s", s.waitErr, s.log.String())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no connection accepted on %s within %s (last error: %v); its output:\n%s", s.Addr, limit, err, s.log.String())
		}
	}
}

// PID is the server's process ID.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Alive reports whether the process is still running.
func (s *Server) Alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// StartLine is the server's first log line that says where it listens, for
// the record (it names the backend it really chose). The server's output
// reaches us through a pipe and a copying goroutine, so the line may lag
// behind the first accepted connection: wait for it a little.
func (s *Server) StartLine() string {
	for range 100 {
		for line := range strings.Lines(s.log.String()) {
			if strings.Contains(line, "listening") {
				return strings.TrimSpace(line)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ""
}

// Output is the tail of what the server printed.
func (s *Server) Output() string { return s.log.String() }

// Stop asks the server to shut down with SIGTERM and kills it if it has not
// exited after a grace period. It returns the exit error, if any.
func (s *Server) Stop() error {
	if s.Alive() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
			return errors.New("did not exit within 10s of SIGTERM; killed")
		}
	}
	return s.waitErr
}

// logTail keeps the last few KiB a process wrote.
type logTail struct {
	mu  sync.Mutex
	buf []byte
}

const logTailSize = 16 << 10

func (t *logTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - logTailSize; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *logTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.Clone(t.buf))
}

// FindServer returns path if it is set, else bin/ringrelay under the working
// directory, else the ringrelay next to this executable.
func FindServer(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	candidates := []string{filepath.Join("bin", "ringrelay")}
	if exe, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(exe), "ringrelay"))
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return filepath.Abs(c)
		}
	}
	return "", fmt.Errorf("no ringrelay binary at %s (run `make build`, or pass -server PATH)", strings.Join(candidates, " or "))
}
