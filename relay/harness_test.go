package relay_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
	"github.com/ringrelay/ringrelay/relay/client"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	// The end-to-end cases hold a few thousand sockets on both sides.
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
	goleak.VerifyTestMain(m)
}

// backends are the engines every end-to-end case runs on.
var backends = []reactor.Backend{reactor.Uring, reactor.Epoll}

// progressSlack bounds every wait in the chaos and slow-loris tests that
// depends on the server making progress; hitting one is a failure, not a
// timing measurement.
const progressSlack = 30 * time.Second

// testServer is a relay running in-process on its own goroutine.
type testServer struct {
	addr  string
	srv   *relay.Server
	stats *reactor.Stats
	done  chan error
}

// startServer opens a loop on a free loopback port and runs a relay on it.
// The loop is opened on the goroutine that runs it, as io_uring requires.
func startServer(t testing.TB, backend reactor.Backend, edit func(*relay.Config, *reactor.Config)) *testServer {
	t.Helper()
	rc := relay.DefaultConfig()
	lc := reactor.DefaultConfig()
	lc.Backend = backend
	lc.Buffers = 256
	if edit != nil {
		edit(&rc, &lc)
	}
	ts := &testServer{done: make(chan error, 1)}
	ready := make(chan error, 1)
	go func() {
		loop, err := reactor.Open("127.0.0.1:0", lc)
		if err != nil {
			ready <- err
			return
		}
		ts.addr = loop.Addr().String()
		ts.stats = loop.Stats()
		ts.srv = relay.NewServer(loop, rc, nil)
		ready <- nil
		ts.done <- ts.srv.Run()
	}()
	if err := <-ready; err != nil {
		t.Fatalf("start %s server: %v", backend, err)
	}
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

// stop shuts the server down and waits for Run to return (idempotent).
func (ts *testServer) stop(t testing.TB) {
	if ts.done == nil {
		return
	}
	ts.srv.Shutdown()
	select {
	case err := <-ts.done:
		if err != nil {
			t.Errorf("server Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("server did not stop within 20s")
	}
	ts.done = nil
}

func (ts *testServer) dial(t testing.TB) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, ts.addr)
	if err != nil {
		t.Fatalf("dial %s: %v", ts.addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// recv reads one payload with a deadline.
func recv(t testing.TB, c *client.Conn, within time.Duration) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	defer c.SetReadDeadline(time.Time{})
	p, err := c.Recv()
	if err != nil {
		t.Fatalf("client %08x: recv: %v", c.ID(), err)
	}
	return append([]byte(nil), p...)
}

// expectNothing asserts no payload arrives within d.
func expectNothing(t testing.TB, c *client.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	if p, err := c.Recv(); err == nil {
		t.Fatalf("client %08x: unexpected payload %q", c.ID(), trim(p))
	} else if !os.IsTimeout(err) {
		t.Fatalf("client %08x: expected a timeout, got %v", c.ID(), err)
	}
}

// waitFor polls cond until it holds or the time is up.
func waitFor(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("read /proc/self/fd: %v", err)
	}
	return len(ents)
}

func trim(p []byte) string {
	s := string(p)
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func repeat(s string, n int) []byte { return []byte(strings.Repeat(s, n)) }
