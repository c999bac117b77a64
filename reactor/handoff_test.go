package reactor

import (
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringrelay/ringrelay/internal/servertest"
	"github.com/ringrelay/ringrelay/ring"
)

// Tests of hand-off between loops: HandOff and Accepted, Adopt, RingLoop.
// Each runs for every pair of backends (the loop that accepts or rings,
// then the loop that adopts or is rung), in the harness of loop_test.go.

// forEachPair runs test for every pair of usable backends.
func forEachPair(t *testing.T, test func(t *testing.T, from, to Backend)) {
	forEachBackend(t, func(t *testing.T, from Backend) {
		forEachBackend(t, func(t *testing.T, to Backend) { test(t, from, to) })
	})
}

// startBareOwner runs an owner of a loop of backend b with no listener,
// whose Poll waits for ever.
func startBareOwner(t *testing.T, b Backend, echo bool) *loopOwner {
	t.Helper()
	return startOwnerWait(t, func() (Loop, error) { return openLoopOn(b, "", Config{}) }, echo, -1)
}

// hold makes the owner run a command that blocks it, outside Poll, until
// the returned function is called.
func (o *loopOwner) hold() (release func()) {
	o.t.Helper()
	entered, done := make(chan struct{}), make(chan struct{})
	o.mu.Lock()
	o.cmds = append(o.cmds, func(map[int]*Conn) { close(entered); <-done })
	o.mu.Unlock()
	o.loop.Wake()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		o.t.Fatal("owner did not take the command")
	}
	return func() { close(done) }
}

// msgRingRoute reports whether RingLoop from a loop of backend from to one
// of backend to goes through MSG_RING.
func msgRingRoute(from, to Backend) bool {
	return from == Uring && to == Uring && ring.Probe().MsgRing
}

// A HandOff loop reports connections as Accepted without opening them; the
// descriptor works once adopted, by another loop or by the same one, in
// both directions; closing releases it; nothing leaks.
func TestHandOffAdopt(t *testing.T) {
	forEachPair(t, func(t *testing.T, from, to Backend) {
		openFdCount(t)
		start := openFdCount(t)

		placer := startLoopOwner(t, from, Config{HandOff: true}, true)
		adopter := startBareOwner(t, to, true)
		if adopter.loop.Addr() != nil {
			t.Fatalf("loop without a listener has Addr %v", adopter.loop.Addr())
		}
		adopter.loop.StopAccepting() // a no-op without a listener

		// Adopted by another loop.
		c1, err := net.Dial("tcp", placer.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c1.Close()
		acc := placer.expect(Accepted)
		if acc.fd < 0 {
			t.Fatalf("Accepted with fd %d", acc.fd)
		}
		placer.quiet(Opened, 50*time.Millisecond)
		adopter.do(func(map[int]*Conn) { adopter.loop.Adopt(acc.fd) })
		op := adopter.expect(Opened)
		echoRoundTrip(t, c1, []byte("hello"))
		echoRoundTrip(t, c1, testPattern(1<<20, 3))

		// Adopted by the placing loop itself.
		c2, err := net.Dial("tcp", placer.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		acc2 := placer.expect(Accepted)
		placer.do(func(map[int]*Conn) { placer.loop.Adopt(acc2.fd) })
		placer.expect(Opened)
		echoRoundTrip(t, c2, testPattern(64<<10, 5))

		if got := placer.loop.Stats().HandedOff.Load(); got != 2 {
			t.Errorf("placer HandedOff = %d, want 2", got)
		}
		if got := placer.loop.Stats().Accepted.Load(); got != 1 {
			t.Errorf("placer Accepted = %d, want 1 (its own adoption only)", got)
		}
		if got := adopter.loop.Stats().Accepted.Load(); got != 1 {
			t.Errorf("adopter Accepted = %d, want 1", got)
		}

		// A local close on the adopting loop reaches the client.
		adopter.do(func(conns map[int]*Conn) { conns[op.slot].Close() })
		if cl := adopter.expect(Closed); !errors.Is(cl.err, ErrClosedLocally) {
			t.Fatalf("Closed with %v, want ErrClosedLocally", cl.err)
		}
		c1.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c1.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("client read after a local close: %v, want EOF", err)
		}
		c1.Close()
		// A peer close on the placing loop's adopted connection.
		c2.Close()
		if cl := placer.expect(Closed); cl.err != nil {
			t.Fatalf("Closed with %v after the peer closed", cl.err)
		}
		if got := adopter.loop.Stats().Open.Load(); got != 0 {
			t.Errorf("adopter has %d open", got)
		}

		placer.shutdown()
		adopter.shutdown()
		if end := awaitFdCount(t, start); end != start {
			t.Fatalf("descriptors: %d before, %d after", start, end)
		}
	})
}

// Adopt on a closed loop closes the descriptor: the peer sees EOF.
func TestAdoptOnClosedLoop(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		server, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		f, err := server.(*net.TCPConn).File()
		server.Close()
		if err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Dup(int(f.Fd()))
		f.Close()
		if err != nil {
			t.Fatal(err)
		}

		l, err := openLoopOn(b, "", Config{})
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
		l.Adopt(fd)
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := client.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("peer read after Adopt on a closed loop: %v, want EOF", err)
		}
	})
}

// Open("") gives a loop without a listener through the public constructor.
func TestOpenWithoutListener(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		l, err := Open("", Config{Backend: b})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if l.Addr() != nil {
			t.Fatalf("Addr = %v, want nil", l.Addr())
		}
		l.StopAccepting()
		if _, err := l.Poll(make([]Event, 4), 0); err != nil {
			t.Fatal(err)
		}
	})
}

// RingLoop wakes a loop blocked in Poll with no timeout, by the route the
// pair of backends allows, and the counters say which.
func TestRingLoopWakesBlockedLoop(t *testing.T) {
	forEachPair(t, func(t *testing.T, from, to Backend) {
		src := startBareOwner(t, from, false)
		dst := startBareOwner(t, to, false)
		dst.settle()
		dst.expect(Woken)                     // the settle's own
		dst.quiet(Woken, 50*time.Millisecond) // blocked, nothing to wake it

		src.do(func(map[int]*Conn) { src.loop.RingLoop(dst.loop) })
		select {
		case nt := <-dst.notes:
			if nt.kind != Woken {
				t.Fatalf("rung loop reported %v, want woken", nt.kind)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("rung loop did not wake within 2s")
		}

		s := src.loop.Stats()
		if msgRingRoute(from, to) {
			if s.RingsMsgRing.Load() != 1 || s.RingsEventfd.Load() != 0 {
				t.Fatalf("rings by msg_ring %d, by eventfd %d; want 1, 0", s.RingsMsgRing.Load(), s.RingsEventfd.Load())
			}
			if got := dst.loop.Stats().DoorbellsIn.Load(); got != 1 {
				t.Fatalf("target counted %d doorbells, want 1", got)
			}
		} else if s.RingsMsgRing.Load() != 0 || s.RingsEventfd.Load() != 1 {
			t.Fatalf("rings by msg_ring %d, by eventfd %d; want 0, 1", s.RingsMsgRing.Load(), s.RingsEventfd.Load())
		}
		if f := s.RingFails.Load(); f != 0 {
			t.Fatalf("%d doorbells failed", f)
		}

		// A loop can ring itself.
		src.do(func(map[int]*Conn) { src.loop.RingLoop(src.loop) })
		src.expect(Woken)
	})
}

// Many doorbells to a loop that is busy (awake, outside Poll) fold into
// a few Woken events, and every one is counted.
func TestRingLoopCoalesces(t *testing.T) {
	const rings = 100
	forEachPair(t, func(t *testing.T, from, to Backend) {
		src := startBareOwner(t, from, false)
		dst := startBareOwner(t, to, false)
		release := dst.hold()
		src.do(func(map[int]*Conn) {
			for range rings {
				src.loop.RingLoop(dst.loop)
			}
		})
		src.settle() // src has been through Poll: its messages are submitted
		dst.drain()
		release()

		s, ds := src.loop.Stats(), dst.loop.Stats()
		if got := s.RingsMsgRing.Load() + s.RingsEventfd.Load(); got != rings {
			t.Fatalf("%d doorbells counted, want %d", got, rings)
		}
		if msgRingRoute(from, to) {
			servertest.WaitFor(t, "the target to take every doorbell", 10*time.Second, func() bool { return ds.DoorbellsIn.Load() >= rings })
			if got := ds.DoorbellsIn.Load(); got != rings {
				t.Fatalf("target received %d doorbells, want %d", got, rings)
			}
		}
		// The held command's own Woken, then the doorbells': wait for at
		// least one of theirs, however long a loaded machine takes.
		woken := 0
		deadline := time.After(10 * time.Second)
		for woken < 2 {
			select {
			case nt := <-dst.notes:
				if nt.kind == Woken {
					woken++
				}
			case <-deadline:
				t.Fatalf("%d Woken events within 10s of the release; want the held command's and at least one for %d doorbells", woken, rings)
			}
		}
		// Then every Woken the doorbells caused is in the notes: two
		// commands later (each a Woken of its own, perhaps folded with
		// a doorbell's), the owner has passed on everything before the
		// first.
		dst.settle()
		dst.settle()
		for more := true; more; {
			select {
			case nt := <-dst.notes:
				if nt.kind == Woken {
					woken++
				}
			default:
				more = false
			}
		}
		// The doorbells that arrived while the target was held fold into
		// one Woken per Poll that reaps some of them: a handful, not one
		// each (io_uring delivers 100 MSG_RING completions over a few
		// reaps). Up to two of the Woken counted are the settles'.
		if woken > 1+rings/10+2 {
			t.Fatalf("%d Woken events for %d doorbells (plus 1 for the held command and up to 2 for the settles); want them folded at least tenfold", woken, rings)
		}
	})
}

// Ringing a loop that has been closed loses the doorbell and nothing else:
// the ringing loop keeps working.
func TestRingLoopClosedTarget(t *testing.T) {
	forEachPair(t, func(t *testing.T, from, to Backend) {
		src := startBareOwner(t, from, false)
		dst := startBareOwner(t, to, false)
		dst.shutdown()
		src.do(func(map[int]*Conn) { src.loop.RingLoop(dst.loop) })
		src.settle()
		src.settle()
		if msgRingRoute(from, to) {
			// The closed ring's descriptor is gone, so the message fails and
			// the ringing loop falls back to the (closed, harmless) eventfd.
			if got := src.loop.Stats().RingFails.Load(); got != 1 {
				t.Fatalf("%d failed doorbells reported, want 1", got)
			}
		}
	})
}
