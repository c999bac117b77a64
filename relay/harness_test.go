package relay_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/ringrelay/ringrelay/internal/servertest"
	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
	"github.com/ringrelay/ringrelay/relay/client"
)

// Which tests run in parallel: a test that starts servers of its own and
// mostly waits on them calls t.Parallel (the relay's tests spend most of
// their time waiting on sockets, so running them side by side is what
// keeps the package short on two cores). A test that measures this whole
// process (its descriptors, goroutines, heap or RSS: TestChaos,
// TestClusterChaos, TestSlowLoris's memory cases, TestLoopsStalledReceiver
// Backpressure, TestEndToEndAlone, TestSoak) does not (and takes its
// marks with markProcess): Go
// runs every such test, alone, before the parallel ones start. `make test`
// raises -parallel above its default (the number of CPUs), since most of
// the parallel tests wait.
func TestMain(m *testing.M) {
	// The end-to-end cases hold a few thousand sockets on both sides.
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
	// WithCleanup: the tests that need a server process of their own
	// build the ringrelay binary once (servertest.Binaries).
	goleak.VerifyTestMain(servertest.WithCleanup{M: m})
}

// backends are the engines every end-to-end case runs on.
var backends = []reactor.Backend{reactor.Uring, reactor.Epoll}

// progressSlack bounds every wait in the chaos and slow-loris tests that
// depends on the server making progress; hitting one is a failure, not a
// timing measurement.
const progressSlack = 30 * time.Second

// loopCounts are the loop counts the end-to-end table, the chaos test and
// the fuzz seeds run with: today's single loop, and four loops, which on
// a two-core machine are oversubscribed, so correctness cannot lean on
// parallelism.
var loopCounts = []int{1, 4}

// testServer is a relay (a Group of one or more loops) running in-process.
type testServer struct {
	addr string
	g    *relay.Group
	done chan error
	// tlsCfg, when set, is how clients dial a server that speaks TLS
	// (startServerTLS); dial then uses client.DialTLS.
	tlsCfg *tls.Config
}

// startServer runs a one-loop relay on a free loopback port.
func startServer(t testing.TB, backend reactor.Backend, edit func(*relay.Config, *reactor.Config)) *testServer {
	t.Helper()
	return startServerN(t, backend, 1, edit)
}

// startGroup opens loops loops with the tests' settings (edit may change
// them) and starts their servers; listen "" opens them without a listener.
func startGroup(t testing.TB, backend reactor.Backend, loops int, listen string, edit func(*relay.Config, *reactor.Config)) *relay.Group {
	t.Helper()
	rc := relay.DefaultConfig()
	lc := reactor.DefaultConfig()
	lc.Backend = backend
	lc.Buffers = 256
	if edit != nil {
		edit(&rc, &lc)
	}
	g, err := relay.StartGroup(relay.GroupConfig{Loops: loops, Listen: listen, Reactor: lc, Relay: rc})
	if err != nil {
		t.Fatalf("start %s server with %d loops: %v", backend, loops, err)
	}
	return g
}

// startServerN runs a relay of loops loops on a free loopback port. Each
// loop is opened on the goroutine that runs it, as io_uring requires.
func startServerN(t testing.TB, backend reactor.Backend, loops int, edit func(*relay.Config, *reactor.Config)) *testServer {
	t.Helper()
	g := startGroup(t, backend, loops, "127.0.0.1:0", edit)
	ts := &testServer{addr: g.Addr().String(), g: g, done: make(chan error, 1)}
	go func() { ts.done <- g.Wait() }()
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

// counters is a copy of the relay's counters, summed over every loop, as
// of one moment. It holds plain numbers, not the live atomics, so a test
// that waits on a counter must ask for a new copy on every poll:
//
//	servertest.WaitFor(t, "the drop", d, func() bool { return ts.metrics().Dropped[r] == 1 })
//
// metrics used to hand back the live counters with one loop and a frozen
// sum with several, so the same wait passed with one loop and could hang
// with four.
type counters struct {
	FramesRelayed, FramesReceived uint64
	CrossOut, CrossIn             uint64
	BytesRelayed                  uint64
	BackpressurePauses            uint64
	PauseLeasesLapsed             uint64
	Closed                        [len(relay.Metrics{}.Closed)]uint64
	Dropped                       [len(relay.Metrics{}.Dropped)]uint64
}

// add adds one loop's live counters to c.
func (c *counters) add(m *relay.Metrics) {
	c.FramesRelayed += m.FramesRelayed.Load()
	c.FramesReceived += m.FramesReceived.Load()
	c.CrossOut += m.CrossOut.Load()
	c.CrossIn += m.CrossIn.Load()
	c.BytesRelayed += m.BytesRelayed.Load()
	c.BackpressurePauses += m.BackpressurePauses.Load()
	c.PauseLeasesLapsed += m.PauseLeasesLapsed.Load()
	for i := range m.Closed {
		c.Closed[i] += m.Closed[i].Load()
	}
	for i := range m.Dropped {
		c.Dropped[i] += m.Dropped[i].Load()
	}
}

// metrics returns the relay's counters summed over its loops, as of the
// call, with one loop as with several.
func (ts *testServer) metrics() counters {
	var c counters
	for k := range ts.g.Loops() {
		c.add(ts.g.Server(k).Metrics())
	}
	return c
}

// loopTotals are the reactor's counts summed over a server's loops.
type loopTotals struct {
	open        int64  // connections open
	descriptors int64  // open, or closed with close(2) still to complete
	accepted    uint64 // connections a loop took (accepted or adopted)
	closed      uint64 // connections a loop reported closed
}

func (ts *testServer) loopTotals() loopTotals {
	var c loopTotals
	for k := range ts.g.Loops() {
		st := ts.g.Loop(k).Stats()
		c.open += st.Open.Load()
		c.descriptors += st.Descriptors.Load()
		c.accepted += st.Accepted.Load()
		c.closed += st.Closed.Load()
	}
	return c
}

// open is the number of connections open on all loops.
func (ts *testServer) open() int64 { return ts.loopTotals().open }

// waitQuiet waits until the server has no connection left and its
// metrics count every close its loops reported: a loop reports a close
// (open) before the relay publishes the reason it counted for it.
func (ts *testServer) waitQuiet(t testing.TB, what string) {
	t.Helper()
	servertest.WaitFor(t, what, progressSlack, func() bool {
		tot := ts.loopTotals()
		if tot.open != 0 {
			return false
		}
		var closed uint64
		m := ts.metrics()
		for _, r := range relay.CloseReasons() {
			closed += m.Closed[r]
		}
		return closed == tot.closed
	})
}

// stop shuts the server down and waits for every loop to return
// (idempotent).
func (ts *testServer) stop(t testing.TB) {
	if ts.done == nil {
		return
	}
	ts.g.Shutdown()
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
	var c *client.Conn
	var err error
	if ts.tlsCfg != nil {
		c, err = client.DialTLS(ctx, ts.addr, ts.tlsCfg)
	} else {
		c, err = client.Dial(ctx, ts.addr)
	}
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

// eachLoopCount runs fn as one subtest per backend and loop count
// (loopCounts), named <backend>/loops=<n>.
func eachLoopCount(t *testing.T, fn func(t *testing.T, backend reactor.Backend, loops int)) {
	t.Helper()
	for _, backend := range backends {
		for _, loops := range loopCounts {
			t.Run(fmt.Sprintf("%s/loops=%d", backend, loops), func(t *testing.T) { fn(t, backend, loops) })
		}
	}
}

// processMark is what this process held at one point: its descriptors
// and goroutines. Only a test that runs alone (not t.Parallel) may take
// one, since any other test's sockets and goroutines would count too.
type processMark struct {
	fds        map[int]string
	goroutines int
}

// markProcess takes the mark once the runtime's network poller exists (the
// first socket creates its descriptors, which then stay).
func markProcess(t testing.TB) processMark {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	return processMark{fds: fdList(t), goroutines: runtime.NumGoroutine()}
}

// settle waits, up to ten seconds, for this process to be back at the
// mark: every descriptor closed and every goroutine ended since then.
func (m processMark) settle(t testing.TB, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for (len(fdList(t)) != len(m.fds) || runtime.NumGoroutine() > m.goroutines) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if now := fdList(t); len(now) != len(m.fds) {
		t.Errorf("%s: this process holds %d descriptors, %d before; new:\n%s", what, len(now), len(m.fds), servertest.NewFDs(m.fds, now))
	}
	if n := runtime.NumGoroutine(); n > m.goroutines {
		t.Errorf("%s: %d goroutines, %d before", what, n, m.goroutines)
	}
}

// fdList is what each of this process's descriptors refers to.
func fdList(t testing.TB) map[int]string {
	t.Helper()
	fds, err := servertest.FDs(os.Getpid())
	if err != nil {
		t.Fatalf("list this process's descriptors: %v", err)
	}
	return fds
}

func trim(p []byte) string {
	s := string(p)
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
