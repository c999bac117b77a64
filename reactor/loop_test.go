package reactor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringrelay/ringrelay/internal/servertest"
	"github.com/ringrelay/ringrelay/ring"
)

// One suite for every backend: each test runs once per engine, as a
// subtest named after it, over real loopback sockets. An owner goroutine
// runs Poll and is the only goroutine touching the loop, as the contract
// demands; the test goroutine plays the clients, learns what the owner saw
// through notes, and asks the owner to act on a connection by queueing a
// command and calling Wake. Tests that hold only for one engine live in
// that engine's test file.

// forEachBackend runs test once per engine. io_uring is skipped only where
// the probe says this host cannot use it.
func forEachBackend(t *testing.T, test func(t *testing.T, b Backend)) {
	for _, b := range []Backend{Uring, Epoll} {
		t.Run(string(b), func(t *testing.T) {
			if b == Uring {
				if err := ring.Probe().Usable(); err != nil {
					t.Skipf("io_uring unusable on this host: %v", err)
				}
			}
			test(t, b)
		})
	}
}

// openLoop opens a loop of backend b on a free loopback port. On io_uring
// the calling goroutine becomes the loop's thread.
func openLoop(b Backend, cfg Config) (*eventLoop, error) {
	return openLoopOn(b, "127.0.0.1:0", cfg)
}

// openLoopOn opens a loop of backend b listening on addr, or on nothing
// when addr is "".
func openLoopOn(b Backend, addr string, cfg Config) (*eventLoop, error) {
	cfg.fill()
	if b == Uring {
		return newUring(addr, cfg)
	}
	return newEpoll(addr, cfg)
}

// ownerNote is what the owner reports about one event.
type ownerNote struct {
	kind Kind
	slot int
	n    int // Received: byte count
	err  error
	fd   int // Accepted: the socket
}

// loopOwner runs a Loop the way the contract wants it run.
type loopOwner struct {
	t     *testing.T
	loop  Loop
	addr  string        // the listener's, for clients ("" without one)
	echo  bool          // send every Received chunk back
	wait  time.Duration // Poll timeout
	batch int           // events per Poll (default 64)
	notes chan ownerNote

	mu   sync.Mutex
	cmds []func(conns map[int]*Conn)

	stop atomic.Bool
	done chan struct{}
}

// startOwner runs an owner goroutine for the loop that open creates. The
// loop is created on the owner goroutine itself, locked to its thread, as
// io_uring's single-issuer setup requires.
func startOwner(t *testing.T, open func() (Loop, error), echo bool) *loopOwner {
	t.Helper()
	return startOwnerWait(t, open, echo, time.Second)
}

// startOwnerWait is startOwner with the owner's Poll timeout (< 0: Poll
// blocks until something happens).
func startOwnerWait(t *testing.T, open func() (Loop, error), echo bool, wait time.Duration) *loopOwner {
	t.Helper()
	return startOwnerBatch(t, open, echo, wait, 64)
}

// startOwnerBatch is startOwnerWait with the length of the owner's event
// slice.
func startOwnerBatch(t *testing.T, open func() (Loop, error), echo bool, wait time.Duration, batch int) *loopOwner {
	t.Helper()
	o := &loopOwner{t: t, echo: echo, wait: wait, batch: batch, notes: make(chan ownerNote, 1<<16), done: make(chan struct{})}
	started := make(chan error, 1)
	go o.run(open, started)
	if err := <-started; err != nil {
		t.Fatalf("open loop: %v", err)
	}
	t.Cleanup(o.shutdown)
	return o
}

// startLoopOwner runs an echo (or silent) owner of a loop of backend b on
// loopback.
func startLoopOwner(t *testing.T, b Backend, cfg Config, echo bool) *loopOwner {
	t.Helper()
	return startOwner(t, func() (Loop, error) { return openLoop(b, cfg) }, echo)
}

func (o *loopOwner) run(open func() (Loop, error), started chan<- error) {
	defer close(o.done)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	l, err := open()
	if err != nil {
		started <- err
		return
	}
	o.loop = l
	if a := l.Addr(); a != nil {
		o.addr = a.String()
	}
	started <- nil
	defer l.Close()

	events := make([]Event, o.batch)
	conns := make(map[int]*Conn)
	for !o.stop.Load() {
		n, err := l.Poll(events, o.wait)
		if err != nil {
			o.t.Errorf("Poll: %v", err)
			return
		}
		for i := range events[:n] {
			ev := &events[i]
			nt := ownerNote{kind: ev.Kind, err: ev.Err, fd: ev.Fd}
			if ev.Conn != nil {
				nt.slot = ev.Conn.Slot()
			}
			switch ev.Kind {
			case Opened:
				if conns[nt.slot] != nil {
					o.t.Errorf("Opened for slot %d, which is still open", nt.slot)
				}
				conns[nt.slot] = ev.Conn
			case Received:
				if conns[nt.slot] != ev.Conn {
					o.t.Errorf("Received for slot %d, which is not open", nt.slot)
				}
				nt.n = len(ev.Data)
				if o.echo {
					ev.Conn.Send(ev.Data)
				}
			case Closed:
				if conns[nt.slot] != ev.Conn {
					o.t.Errorf("Closed for slot %d, which is not open", nt.slot)
				}
				delete(conns, nt.slot)
			case Woken:
				o.mu.Lock()
				cmds := o.cmds
				o.cmds = nil
				o.mu.Unlock()
				for _, cmd := range cmds {
					cmd(conns)
				}
			}
			o.notes <- nt
		}
		clear(events[:n])
	}
}

// do runs cmd on the owner goroutine and waits until it has run.
func (o *loopOwner) do(cmd func(conns map[int]*Conn)) {
	o.t.Helper()
	ran := make(chan struct{})
	o.mu.Lock()
	o.cmds = append(o.cmds, func(conns map[int]*Conn) { cmd(conns); close(ran) })
	o.mu.Unlock()
	o.loop.Wake()
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		o.t.Fatal("owner did not run the command")
	}
}

// settle returns once the owner has run a Poll after the commands before
// it: their requests have reached the kernel (on io_uring, a pause's
// cancel or StopAccepting's is submitted at the next Poll).
func (o *loopOwner) settle() {
	o.t.Helper()
	o.do(func(map[int]*Conn) {})
}

func (o *loopOwner) shutdown() {
	o.stop.Store(true)
	o.loop.Wake()
	select {
	case <-o.done:
	case <-time.After(5 * time.Second):
		o.t.Error("owner did not stop")
	}
}

// expect waits for the next note of kind, skipping others (Woken from
// commands, Received when the test does not count them).
func (o *loopOwner) expect(kind Kind) ownerNote {
	o.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case nt := <-o.notes:
			if nt.kind == kind {
				return nt
			}
		case <-deadline:
			o.t.Fatalf("no %v event within 5s", kind)
		}
	}
}

// drain forgets the notes received so far.
func (o *loopOwner) drain() {
	for {
		select {
		case <-o.notes:
		default:
			return
		}
	}
}

// quiet fails if a note of kind arrives within d.
func (o *loopOwner) quiet(kind Kind, d time.Duration) {
	o.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case nt := <-o.notes:
			if nt.kind == kind {
				o.t.Fatalf("unexpected %v event: %+v", kind, nt)
			}
		case <-deadline:
			return
		}
	}
}

func (o *loopOwner) dial() (*net.TCPConn, ownerNote) {
	o.t.Helper()
	c, err := net.Dial("tcp", o.addr)
	if err != nil {
		o.t.Fatalf("dial: %v", err)
	}
	o.t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn), o.expect(Opened)
}

// dialSmallWindow connects with a small, fixed receive buffer (which also
// turns off autotuning), so that the kernel cannot absorb a large answer:
// the server's output stays queued until the client reads.
func (o *loopOwner) dialSmallWindow() *net.TCPConn {
	o.t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 64<<10)
		})
	}}
	c, err := d.Dial("tcp", o.addr)
	if err != nil {
		o.t.Fatalf("dial: %v", err)
	}
	o.t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// testPattern returns n bytes that differ from one offset to the next, so a
// lost, doubled or reordered chunk shows.
func testPattern(n, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((i + seed) % 251)
	}
	return b
}

// echoRoundTrip writes msg and reads back as many bytes, concurrently so that
// a large message cannot deadlock on full socket buffers.
func echoRoundTrip(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	if err := echoRoundTripErr(c, msg); err != nil {
		t.Fatal(err)
	}
}

func echoRoundTripErr(c net.Conn, msg []byte) error {
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		errc <- err
	}()
	got := make([]byte, len(msg))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("reading echo of %d bytes: %w", len(msg), err)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo of %d bytes differs", len(msg))
	}
	return nil
}

func TestEcho(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		for _, tc := range []struct {
			name  string
			cfg   Config
			batch int // events per Poll
		}{
			{"default buffers", Config{}, 64},
			// Two 1 KiB receive buffers (the epoll arena, the io_uring buffer
			// ring): most Polls run out of them, and the rest of the data
			// must come on later Polls, in order.
			{"tiny buffers", Config{Buffers: 2, BufferSize: 1024}, 64},
			// Sixteen 1 KiB buffers: on io_uring with recv bundles, reads of
			// up to four buffers that often wrap from the last buffer to the
			// first, which takes two Received events, also when Poll has
			// room for no more than two.
			{"small ring", Config{Buffers: 16, BufferSize: 1024}, 64},
			{"small ring, two events per Poll", Config{Buffers: 16, BufferSize: 1024}, 2},
			{"small ring without bundles", Config{Buffers: 16, BufferSize: 1024, NoRecvBundle: true}, 64},
		} {
			t.Run(tc.name, func(t *testing.T) {
				o := startOwnerBatch(t, func() (Loop, error) { return openLoop(b, tc.cfg) }, true, time.Second, tc.batch)
				c1, _ := o.dial()
				c2, _ := o.dial()
				echoRoundTrip(t, c1, []byte("hello"))
				echoRoundTrip(t, c2, []byte("world"))
				for i := range 20 {
					echoRoundTrip(t, c1, testPattern(100+i, i))
				}
				var wg sync.WaitGroup
				for _, c := range []net.Conn{c1, c2} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if err := echoRoundTripErr(c, testPattern(1<<20, 7)); err != nil {
							t.Error(err)
						}
					}()
				}
				wg.Wait()
			})
		}
	})
}

// Poll refuses a slice with room for one event: one receive may need two.
func TestPollNeedsTwoEvents(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		l, err := openLoop(b, Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if _, err := l.Poll(make([]Event, 1), 0); !errors.Is(err, ErrShortEvents) {
			t.Fatalf("Poll with one event: %v, want ErrShortEvents", err)
		}
		if _, err := l.Poll(make([]Event, 2), 0); err != nil {
			t.Fatalf("Poll with two events: %v", err)
		}
	})
}

// Many clients connecting, talking and leaving at once: slots are reused
// while other connections are mid-flight, and the owner (which checks that
// every event concerns a connection it knows to be open) must never see a
// Closed after the Opened of the slot's next connection.
func TestChurn(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		o := startLoopOwner(t, b, Config{}, true)
		const clients, cycles = 16, 30
		var wg sync.WaitGroup
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range cycles {
					c, err := net.Dial("tcp", o.addr)
					if err != nil {
						t.Error(err)
						return
					}
					err = echoRoundTripErr(c, testPattern(1+j, i))
					c.Close()
					if err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		stats := o.loop.Stats()
		for deadline := time.Now().Add(5 * time.Second); stats.Open.Load() != 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d connections still open after every client left", stats.Open.Load())
			}
		}
		if a, c := stats.Accepted.Load(), stats.Closed.Load(); a != clients*cycles || c != a {
			t.Fatalf("accepted %d, closed %d; want %d of each", a, c, clients*cycles)
		}
	})
}

func TestStopAccepting(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		o := startLoopOwner(t, b, Config{}, true)
		c, _ := o.dial()
		o.do(func(map[int]*Conn) {
			o.loop.StopAccepting()
			o.loop.StopAccepting() // idempotent
		})
		o.settle()
		if c2, err := net.Dial("tcp", o.addr); err == nil {
			c2.Close()
			t.Fatal("dial succeeded after StopAccepting")
		}
		echoRoundTrip(t, c, []byte("still here"))
	})
}

func TestPeerClose(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		o := startLoopOwner(t, b, Config{}, true)
		c, op := o.dial()
		echoRoundTrip(t, c, []byte("bye"))
		c.Close()
		cl := o.expect(Closed)
		if cl.slot != op.slot || cl.err != nil {
			t.Fatalf("Closed = %+v, want slot %d with nil error", cl, op.slot)
		}
	})
}

// A peer that half-closes still gets the answer to what it sent: output
// drains first, then the connection closes cleanly.
func TestHalfCloseDrainsOutput(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		o := startLoopOwner(t, b, Config{}, true)
		c := o.dialSmallWindow()
		msg := testPattern(2*tcpSendBufferMax()+1<<20, 3)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		c.CloseWrite()
		// Give the server time to see the EOF while most of the echo is still
		// queued on its side.
		time.Sleep(100 * time.Millisecond)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("got %d bytes back, want the %d sent", len(got), len(msg))
		}
		if cl := o.expect(Closed); cl.err != nil {
			t.Fatalf("Closed with %v, want nil", cl.err)
		}
	})
}

func TestPeerReset(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		o := startLoopOwner(t, b, Config{}, true)
		c, op := o.dial()
		echoRoundTrip(t, c, []byte("x"))
		c.SetLinger(0) // close sends RST
		c.Close()
		cl := o.expect(Closed)
		if cl.slot != op.slot || cl.err == nil {
			t.Fatalf("Closed = %+v, want slot %d with an error", cl, op.slot)
		}
		if !errors.Is(cl.err, unix.ECONNRESET) {
			t.Logf("reset reported as %v", cl.err)
		}
	})
}

func TestLocalClose(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		o := startLoopOwner(t, b, Config{}, true)
		c, op := o.dial()
		echoRoundTrip(t, c, []byte("x"))
		o.do(func(conns map[int]*Conn) { conns[op.slot].Close() })
		cl := o.expect(Closed)
		if cl.slot != op.slot || cl.err != ErrClosedLocally {
			t.Fatalf("Closed = %+v, want slot %d with ErrClosedLocally", cl, op.slot)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("client read after server close = %d, %v; want EOF", n, err)
		}
	})
}

func TestPauseResume(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		o := startLoopOwner(t, b, Config{}, true)
		c, op := o.dial()
		echoRoundTrip(t, c, []byte("x"))

		o.do(func(conns map[int]*Conn) { conns[op.slot].PauseRead() })
		o.settle()
		o.drain()
		msg := testPattern(256<<10, 11)
		errc := make(chan error, 1)
		go func() {
			_, err := c.Write(msg)
			errc <- err
		}()
		o.quiet(Received, 300*time.Millisecond)

		o.do(func(conns map[int]*Conn) { conns[op.slot].ResumeRead() })
		got := make([]byte, len(msg))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("reading echo after resume: %v", err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("write: %v", err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatal("bytes written while paused came back changed")
		}
	})
}

func TestNotifyDrained(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		o := startLoopOwner(t, b, Config{}, false)
		c := o.dialSmallWindow()
		op := o.expect(Opened)

		size := 2*tcpSendBufferMax() + 1<<20
		msg := testPattern(size, 5)
		o.do(func(conns map[int]*Conn) {
			conns[op.slot].Send(msg)
			conns[op.slot].NotifyDrained(0)
		})
		o.quiet(Drained, 200*time.Millisecond)

		got := make([]byte, size)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("read: %v", err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatal("sent bytes arrived changed")
		}
		if d := o.expect(Drained); d.slot != op.slot {
			t.Fatalf("Drained for slot %d, want %d", d.slot, op.slot)
		}
	})
}

// tcpSendBufferMax is the most a TCP socket's send buffer grows to.
func tcpSendBufferMax() int {
	most := 4 << 20
	if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_wmem"); err == nil {
		if fields := strings.Fields(string(b)); len(fields) == 3 {
			if v, err := strconv.Atoi(fields[2]); err == nil {
				most = max(most, v)
			}
		}
	}
	return most
}

func TestWake(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		o := startLoopOwner(t, b, Config{}, false)
		o.quiet(Woken, 50*time.Millisecond)
		go o.loop.Wake()
		o.expect(Woken)
	})
}

// TestWakeNeverLost wakes the loop from several goroutines at once, round
// after round: wakes coalesce, and none of the rounds may go unanswered.
func TestWakeNeverLost(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		o := startLoopOwner(t, b, Config{}, false)
		for range 300 {
			var wg sync.WaitGroup
			for range 3 {
				wg.Go(o.loop.Wake)
			}
			o.expect(Woken)
			wg.Wait()
			// The round's other wakes may have come after the loop consumed
			// the first: take their Woken events, so the next round starts
			// from a loop that owes nothing.
			for settled := false; !settled; {
				select {
				case nt := <-o.notes:
					if nt.kind != Woken {
						t.Fatalf("unexpected %v event", nt.kind)
					}
				case <-time.After(5 * time.Millisecond):
					settled = true
				}
			}
		}
	})
}

// TestNoDescriptorLeak: every socket a loop accepted goes back to the
// kernel, and Stats.Descriptors says when: once it reads zero, the
// process holds exactly what it held before (io_uring closes a socket
// asynchronously, after its Closed event).
func TestNoDescriptorLeak(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		openFdCount(t) // let the runtime's own poller open its descriptors first
		o := startLoopOwner(t, b, Config{}, false)
		st := o.loop.Stats()
		released := func() bool { return st.Descriptors.Load() == 0 }
		c, _ := o.dial()
		if n := st.Descriptors.Load(); n != 1 {
			t.Fatalf("Stats.Descriptors %d with one connection open, want 1", n)
		}
		c.Close()
		o.expect(Closed)
		servertest.WaitFor(t, "the first connection's socket to be closed", 30*time.Second, released)

		start := openFdCount(t)
		for i := range 500 {
			c, err := net.Dial("tcp", o.addr)
			if err != nil {
				t.Fatalf("dial %d: %v", i, err)
			}
			o.expect(Opened)
			c.Close()
			if cl := o.expect(Closed); cl.err != nil {
				t.Fatalf("cycle %d: Closed with %v", i, cl.err)
			}
		}
		servertest.WaitFor(t, "every socket of 500 cycles to be closed", 30*time.Second, released)
		if end := openFdCount(t); end != start {
			t.Fatalf("descriptors: %d before 500 cycles, %d after, with Stats.Descriptors at zero", start, end)
		}

		// Close takes down open connections too, and the loop's own descriptors.
		var clients []net.Conn
		for range 3 {
			c, _ := o.dial()
			clients = append(clients, c)
		}
		o.shutdown()
		for _, c := range clients {
			c.Close()
		}
		if n := st.Descriptors.Load(); n != 0 {
			t.Errorf("Stats.Descriptors %d after Close, want 0", n)
		}
		// The kernel tears a ring down in the background.
		if end := awaitFdCount(t, start-3); end != start-3 {
			t.Fatalf("descriptors after Close: %d, want %d (epoll or io_uring, eventfd and listener gone)", end, start-3)
		}
	})
}

// awaitFdCount waits up to 30 s for the process to hold want descriptors
// and returns the last count.
func awaitFdCount(t *testing.T, want int) int {
	t.Helper()
	n := openFdCount(t)
	for deadline := time.Now().Add(30 * time.Second); n != want && time.Now().Before(deadline); n = openFdCount(t) {
		time.Sleep(10 * time.Millisecond)
	}
	return n
}

func openFdCount(t *testing.T) int {
	t.Helper()
	n, err := servertest.FDCount(os.Getpid())
	if err != nil {
		t.Fatalf("count descriptors: %v", err)
	}
	return n
}

// With descriptors exhausted, accepting pauses (without spinning), logs,
// and resumes by itself once descriptors are back. Poll runs on the test
// goroutine here, so the moment of exhaustion is under control.
func TestAcceptPausesOnExhaustion(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		var logged lockedBuffer
		cfg := Config{AcceptRetry: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logged, nil))}
		l, err := openLoop(b, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()

		// The handshake completes in the kernel's backlog; accept comes later.
		var clients []net.Conn
		for range 3 {
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			clients = append(clients, c)
		}

		var old unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
			t.Skip(err)
		}
		// The limit bounds descriptor numbers: with it at the lowest free
		// number, the next accept has nowhere to go.
		free, err := unix.Dup(l.waker.fd)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(free)
		lowered := old
		lowered.Cur = uint64(free)
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lowered); err != nil {
			t.Skipf("setrlimit: %v", err)
		}
		events := make([]Event, 16)
		n, err := l.Poll(events, 0)
		restoreErr := unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
		if err != nil || restoreErr != nil {
			t.Fatalf("Poll: %v; restoring the limit: %v", err, restoreErr)
		}
		if n != 0 || l.stats.AcceptFails.Load() == 0 {
			t.Fatalf("Poll with no descriptors left: %d events, %d accept failures", n, l.stats.AcceptFails.Load())
		}
		if !strings.Contains(logged.String(), "too many open files") {
			t.Fatalf("log does not name the error: %q", logged.String())
		}

		// A Poll that could wait for ever returns at the retry time, and the
		// one after it accepts everyone.
		begin := time.Now()
		if n, err := l.Poll(events, -1); err != nil || n != 0 {
			t.Fatalf("Poll during the pause: %d, %v", n, err)
		}
		if waited := time.Since(begin); waited > 2*time.Second {
			t.Fatalf("Poll waited %v; the retry was due after %v", waited, cfg.AcceptRetry)
		}
		opened := 0
		for deadline := time.Now().Add(5 * time.Second); opened < len(clients) && time.Now().Before(deadline); {
			n, err := l.Poll(events, 100*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range events[:n] {
				if ev.Kind == Opened {
					opened++
				}
			}
		}
		if opened != len(clients) {
			t.Fatalf("%d of %d connections accepted after the pause", opened, len(clients))
		}
	})
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *lockedBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *lockedBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Echoing small messages allocates nothing once the loop is warm.
func TestSteadyStateAllocs(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		l, err := openLoop(b, Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()

		events := make([]Event, 16)
		msg := []byte("steady state")
		buf := make([]byte, len(msg))
		echo := func() {
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			for got := 0; got < len(msg); {
				n, err := l.Poll(events, time.Second)
				if err != nil {
					t.Fatal(err)
				}
				for _, ev := range events[:n] {
					if ev.Kind == Received {
						ev.Conn.Send(ev.Data)
						got += len(ev.Data)
					}
				}
			}
			if _, err := l.Poll(events, 0); err != nil { // writes the echo
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				t.Fatal(err)
			}
		}
		echo() // accepts, grows the slices
		echo()
		if allocs := testing.AllocsPerRun(100, echo); allocs != 0 {
			t.Fatalf("%.1f allocations per echo, want 0", allocs)
		}
	})
}
