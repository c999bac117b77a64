package relay_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/frame"
	"github.com/ringrelay/ringrelay/internal/rawpeer"
	"github.com/ringrelay/ringrelay/internal/servertest"
	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
	"github.com/ringrelay/ringrelay/relay/client"
	"github.com/ringrelay/ringrelay/shard"
)

// Cases where the two ends of a pair are known to live on different
// loops: the loop of a connection is shard.Owner of its ID.

const testLoops = 4

// dialOn dials until a connection lands on loop k and returns it; the
// others it made stay open until the test ends (placement is by fewest
// connections, so this takes at most a few dials).
func (ts *testServer) dialOn(t testing.TB, k int) *client.Conn {
	t.Helper()
	for range 64 {
		c := ts.dial(t)
		if shard.Owner(c.ID(), ts.g.Loops()) == k {
			return c
		}
	}
	t.Fatalf("no connection landed on loop %d in 64 dials", k)
	return nil
}

// seqPayload is a payload of size bytes (at least seqHeader) that names
// its sender and number in decimal (a payload holds no NUL), then letters
// that depend on both.
func seqPayload(sender, seq, size int) []byte {
	p := fmt.Appendf(make([]byte, 0, size), "%02d:%09d", sender, seq)
	for i := len(p); i < size; i++ {
		p = append(p, byte('a'+(sender*7+seq+i)%26))
	}
	return p
}

const seqHeader = 12

// checkSeq checks that p is seqPayload(sender, want, size) for some sender
// and returns the sender.
func checkSeq(t testing.TB, p []byte, next map[int]int, size int) {
	t.Helper()
	if err := seqError(p, next, size); err != nil {
		t.Fatal(err)
	}
}

// seqError is checkSeq for goroutines that may not end the test.
func seqError(p []byte, next map[int]int, size int) error {
	if len(p) != size || size < seqHeader {
		return fmt.Errorf("payload of %d bytes, want %d", len(p), size)
	}
	sender, err1 := strconv.Atoi(string(p[:2]))
	seq, err2 := strconv.Atoi(string(p[3:seqHeader]))
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("payload does not start with a sender and number: %q", trim(p))
	}
	if seq != next[sender] {
		return fmt.Errorf("sender %d: frame %d arrived, want %d (order broken)", sender, seq, next[sender])
	}
	if !bytes.Equal(p, seqPayload(sender, seq, size)) {
		return fmt.Errorf("sender %d frame %d: payload corrupted or interleaved", sender, seq)
	}
	next[sender]++
	return nil
}

// writeFrames writes count frames of size bytes from sender to dest,
// batching several frames per write.
func writeFrames(c *client.Conn, sender int, dest uint32, count, size int) error {
	var buf []byte
	for i := range count {
		buf = frame.Append(buf, dest, seqPayload(sender, i, size))
		if len(buf) >= 256<<10 || i == count-1 {
			if _, err := c.NetConn().Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	return nil
}

// forBackends runs f on every backend, the backends in parallel: each
// starts a server of its own and mostly waits on it.
func forBackends(t *testing.T, f func(t *testing.T, backend reactor.Backend)) {
	for _, backend := range backends {
		t.Run(string(backend), func(t *testing.T) {
			t.Parallel()
			f(t, backend)
		})
	}
}

// forBackendsAlone runs f on every backend, one after the other, for a
// test that measures this whole process (its heap) and so must run alone.
func forBackendsAlone(t *testing.T, f func(t *testing.T, backend reactor.Backend)) {
	for _, backend := range backends {
		t.Run(string(backend), func(t *testing.T) { f(t, backend) })
	}
}

func TestLoopsOrderAndLargeFrames(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, backend reactor.Backend) {
		ts := startServerN(t, backend, testLoops, nil)
		a, b := ts.dialOn(t, 1), ts.dialOn(t, 2)
		const n, size = 2000, 200
		errc := make(chan error, 1)
		go func() { errc <- writeFrames(a, 0, b.ID(), n, size) }()
		next := map[int]int{}
		for range n {
			checkSeq(t, recv(t, b, 10*time.Second), next, size)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		// 1 MiB frames (the default limit), both ways at once.
		const big = 1 << 20
		go func() { errc <- writeFrames(a, 1, b.ID(), 4, big) }()
		go func() { _ = writeFrames(b, 2, a.ID(), 4, big) }()
		nb, na := map[int]int{}, map[int]int{}
		for range 4 {
			checkSeq(t, recv(t, b, 20*time.Second), nb, big)
			checkSeq(t, recv(t, a, 20*time.Second), na, big)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if m := ts.metrics(); m.CrossOut < n+8 || m.CrossIn != m.CrossOut {
			t.Fatalf("cross-loop frames out %d, in %d: want both %d or more", m.CrossOut, m.CrossIn, n+8)
		}
	})
}

// A receiver that stops reading, with senders on three other loops:
// they are paused (backpressure crosses loops), nothing is lost, memory
// stays bounded, and a pair of other connections on the same loops keeps
// flowing meanwhile (only the slow destination's senders pause).
func TestLoopsStalledReceiverBackpressure(t *testing.T) {
	forBackendsAlone(t, func(t *testing.T, backend reactor.Backend) {
		const maxQueue = 256 << 10
		ts := startServerN(t, backend, testLoops, func(rc *relay.Config, _ *reactor.Config) {
			rc.MaxQueue = maxQueue
		})
		r := ts.dialOn(t, 0)
		senders := []*client.Conn{ts.dialOn(t, 1), ts.dialOn(t, 2), ts.dialOn(t, 3)}
		other1, other2 := ts.dialOn(t, 1), ts.dialOn(t, 2)

		const size = 16 << 10
		const n = 32 << 20 / size // 32 MiB per sender
		var written atomic.Int64
		errc := make(chan error, len(senders))
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		for i, s := range senders {
			go func() {
				var buf []byte
				for j := range n {
					buf = frame.Append(buf[:0], r.ID(), seqPayload(i, j, size))
					if _, err := s.NetConn().Write(buf); err != nil {
						errc <- err
						return
					}
					written.Add(int64(len(buf)))
				}
				errc <- nil
			}()
		}
		// Wait until the senders are stuck: nothing more written for a while.
		last, still := int64(-1), 0
		servertest.WaitFor(t, "the senders to be held back", progressSlack, func() bool {
			w := written.Load()
			if w == last {
				still++
			} else {
				last, still = w, 0
			}
			return still >= 60 // 300 ms without progress
		})
		total := int64(len(senders) * n * (size + 5))
		if last >= total {
			t.Fatalf("the senders wrote all %d bytes to a receiver that reads nothing", total)
		}
		var during runtime.MemStats
		runtime.ReadMemStats(&during)
		if grew := int64(during.HeapInuse) - int64(before.HeapInuse); grew > 32<<20 {
			t.Fatalf("heap grew by %d MiB with the receiver stalled (%d MiB written): backpressure does not bound it",
				grew>>20, last>>20)
		}
		if ts.metrics().BackpressurePauses == 0 {
			t.Fatalf("no backpressure pause counted")
		}
		// Other pairs on the senders' loops are not held up.
		if err := other1.Send(other2.ID(), []byte("still flowing")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, other2, 10*time.Second); string(got) != "still flowing" {
			t.Fatalf("other pair got %q", got)
		}
		// Now read everything: every frame, in order per sender.
		next := map[int]int{}
		for range len(senders) * n {
			checkSeq(t, recv(t, r, progressSlack), next, size)
		}
		for range senders {
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		}
		if m := ts.metrics(); m.Dropped[relay.DropUnknownDest]+m.Dropped[relay.DropSlowConsumer] != 0 {
			t.Fatalf("frames dropped under backpressure")
		}
	})
}

// A receiver that leaves while a sender on another loop floods it: what
// was queued for it is dropped and counted on its loop, and never reaches
// the connections that come after it (and take its slot).
func TestLoopsReceiverLeavesWithFramesQueued(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, backend reactor.Backend) {
		ts := startServerN(t, backend, testLoops, nil)
		a := ts.dialOn(t, 1)
		b := ts.dialOn(t, 2)
		gone := b.ID()
		stop := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			var buf []byte
			for {
				select {
				case <-stop:
					done <- nil
					return
				default:
				}
				buf = buf[:0]
				for range 64 {
					buf = frame.Append(buf, gone, []byte("for the one who left"))
				}
				if _, err := a.NetConn().Write(buf); err != nil {
					done <- err
					return
				}
			}
		}()
		servertest.WaitFor(t, "frames to reach b", 10*time.Second, func() bool { return ts.metrics().CrossIn > 1000 })
		b.Close()
		servertest.WaitFor(t, "b's loop to drop frames for it", 10*time.Second, func() bool {
			return ts.metrics().Dropped[relay.DropUnknownDest] > 1000
		})
		// New connections on b's loop take its slot; none of them may see
		// a frame meant for b.
		var next []*client.Conn
		for range 3 {
			next = append(next, ts.dialOn(t, 2))
		}
		for _, c := range next {
			expectNothing(t, c, 200*time.Millisecond)
		}
		close(stop)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// Shutdown with frames on their way between loops, under a flood: one
// sender on every loop writes as fast as it can to a receiver on the next
// loop, so every loop reads, sends into the mesh and delivers from it
// when the shutdown comes. Every frame the relay read is written out, in
// order, before it closes, and it exits cleanly: a loop that left while
// another still had a read in the kernel, or a frame in a queue towards
// it, would lose frames and break the count.
func TestLoopsShutdownWithFramesInFlight(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, backend reactor.Backend) {
		// A few rounds: the shutdown races with reads still in the
		// kernel, a different race each time.
		for round := range 3 {
			t.Run(fmt.Sprint("round", round), func(t *testing.T) { shutdownInFlight(t, backend) })
		}
	})
}

// shutdownInFlight is one round of TestLoopsShutdownWithFramesInFlight.
func shutdownInFlight(t *testing.T, backend reactor.Backend) {
	ts := startServerN(t, backend, testLoops, nil)
	recvs := make([]*client.Conn, testLoops)
	sends := make([]*client.Conn, testLoops)
	for k := range testLoops {
		recvs[k] = ts.dialOn(t, k)
	}
	for k := range testLoops {
		sends[k] = ts.dialOn(t, k)
	}
	const n, size = 20000, 200
	errc := make(chan error, testLoops)
	for i, s := range sends {
		go func() { errc <- writeFrames(s, i, recvs[(i+1)%testLoops].ID(), n, size) }()
	}
	type result struct {
		next map[int]int
		err  error
	}
	got := make(chan result, testLoops)
	for _, r := range recvs {
		go func() {
			next := map[int]int{}
			for {
				r.SetReadDeadline(time.Now().Add(progressSlack))
				p, err := r.Recv()
				if err != nil {
					got <- result{next, nil}
					return
				}
				if err := seqError(p, next, size); err != nil {
					got <- result{next, err}
					return
				}
			}
		}()
	}
	servertest.WaitFor(t, "frames to cross", 10*time.Second, func() bool { return ts.metrics().CrossIn > 400 })
	ts.stop(t)
	for range testLoops {
		<-errc // the relay stopped reading: writes may fail or block, then the close ends them
	}
	delivered := uint64(0)
	for range testLoops {
		res := <-got
		if res.err != nil {
			t.Fatal(res.err)
		}
		for _, c := range res.next {
			delivered += uint64(c)
		}
	}
	m := ts.metrics()
	if delivered != m.FramesReceived || delivered != m.FramesRelayed {
		t.Fatalf("relay read %d frames and wrote %d; receivers got %d", m.FramesReceived, m.FramesRelayed, delivered)
	}
	if m.CrossIn != m.CrossOut {
		t.Fatalf("%d frames went into the mesh, %d came out", m.CrossOut, m.CrossIn)
	}
	t.Logf("%d frames in, %d across loops, all delivered before the relay closed", m.FramesReceived, m.CrossIn)
}

func TestLoopsBalance(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, backend reactor.Backend) {
		ts := startServerN(t, backend, testLoops, nil)
		const n = 1000
		conns := make([]*client.Conn, n)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				c, err := client.Dial(ctx, ts.addr)
				if err != nil {
					errs <- err
					return
				}
				conns[i] = c
			}()
		}
		wg.Wait()
		close(errs)
		defer func() {
			for _, c := range conns {
				if c != nil {
					c.Close()
				}
			}
		}()
		for err := range errs {
			t.Fatalf("dial: %v", err)
		}
		per := make([]int, testLoops)
		for _, c := range conns {
			per[shard.Owner(c.ID(), testLoops)]++
		}
		for k, c := range per {
			if c < 225 || c > 275 {
				t.Fatalf("connections per loop %v: loop %d is more than 10%% off 250", per, k)
			}
			if open := ts.g.Loop(k).Stats().Open.Load(); open != int64(c) {
				t.Fatalf("loop %d holds %d connections, but %d IDs say it owns them", k, open, c)
			}
		}
		t.Logf("connections per loop: %v", per)
	})
}

// A frame to a loop that sleeps wakes it by doorbell: the tick is made as
// long as it gets (one second), and thirty round trips between two
// sleeping loops complete long before thirty ticks could pass.
func TestLoopsDoorbellWakesSleepingLoop(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, backend reactor.Backend) {
		ts := startServerN(t, backend, testLoops, func(rc *relay.Config, _ *reactor.Config) {
			rc.WriteTimeout, rc.FrameTimeout = time.Hour, time.Hour
		})
		a, b := ts.dialOn(t, 1), ts.dialOn(t, 2)
		rung := func() uint64 {
			var n uint64
			for k := range testLoops {
				s := ts.g.Loop(k).Stats()
				n += s.RingsMsgRing.Load() + s.RingsEventfd.Load()
			}
			return n
		}
		before := rung()
		start := time.Now()
		const rounds = 30
		for i := range rounds {
			time.Sleep(20 * time.Millisecond) // both loops go to sleep
			if err := a.Send(b.ID(), []byte("ping "+strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
			recv(t, b, 10*time.Second)
		}
		if el := time.Since(start); el > rounds*time.Second/2 {
			t.Fatalf("%d wake-ups took %v: frames waited for the tick, not a doorbell", rounds, el)
		}
		if rung() <= before {
			t.Fatalf("no doorbell rung for frames to a sleeping loop")
		}
	})
}

// An idle server with four loops sleeps: the process uses close to no CPU.
// The server runs as a process of its own (the ringrelay binary), so what
// is measured is its CPU time alone, not this test process's, which also
// runs the race detector and other tests' garbage collection.
func TestLoopsIdleUsesNoCPU(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, backend reactor.Backend) {
		p := servertest.Start(t, servertest.Options{Args: []string{"-backend=" + string(backend), "-loops=" + strconv.Itoa(testLoops)}})
		// A connection on every loop: each has something to watch.
		owned := make([]bool, testLoops)
		for left, i := testLoops, 0; left > 0; i++ {
			if i == 100*testLoops {
				t.Fatalf("%d connections and still a loop without one: %v", i, owned)
			}
			c := rawpeer.Dial(t, p.Addr, rawpeer.Bufs{})
			if k := shard.Owner(c.ID, testLoops); !owned[k] {
				owned[k] = true
				left--
			}
		}
		cpu0 := p.CPUTime(t)
		const window = 2 * time.Second
		time.Sleep(window)
		used := p.CPUTime(t) - cpu0
		// Generous: a spinning loop takes a whole core (2 s), half of
		// one with the other CPU of a two-core machine busy; an idle
		// server takes next to nothing.
		if used > window/5 {
			t.Fatalf("idle relay with %d loops used %v of CPU in %v", testLoops, used, window)
		}
		t.Logf("idle, %d loops: %v of CPU in %v", testLoops, used, window)
	})
}

// A loop whose last connection leaves releases its rings towards other
// loops (they are trimmed on the tick, and an idle loop ticks until they
// are gone), and then sleeps for good: no tick wakes it any more.
func TestLoopsIdleLoopReleasesRings(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, backend reactor.Backend) {
		const timeouts = 1600 * time.Millisecond // a tick every 200ms
		const tick = timeouts / 8
		ts := startServerN(t, backend, testLoops, func(rc *relay.Config, _ *reactor.Config) {
			rc.WriteTimeout, rc.FrameTimeout = timeouts, timeouts
		})
		a := ts.dialOn(t, 1)
		b := ts.dialOn(t, 2)
		servertest.WaitFor(t, "loop 1 to hold a ring towards loop 2", 10*time.Second, func() bool {
			if err := a.Send(b.ID(), []byte("fill the ring")); err != nil {
				t.Fatal(err)
			}
			recv(t, b, 10*time.Second)
			return ts.g.RingBytes(1) > 0
		})
		// Leave at once, well within a tick of the last frame: no tick
		// while a was open found the ring unused.
		if err := a.Send(b.ID(), []byte("last")); err != nil {
			t.Fatal(err)
		}
		recv(t, b, 10*time.Second)
		a.Close()
		servertest.WaitFor(t, "loop 1 to have no connection", 10*time.Second, func() bool { return ts.g.Loop(1).Stats().Open.Load() == 0 })
		servertest.WaitFor(t, "idle loop 1 to release its rings", 20*tick, func() bool { return ts.g.RingBytes(1) == 0 })
		// A loop that still ticks wakes every tick: ten in this window,
		// however loaded the machine (a late tick is still a tick). A loop
		// that sleeps for good wakes for nothing; two stray wake-ups are
		// allowed, so an iteration that was under way when the rings
		// were seen released does not count as a tick.
		waits := ts.g.Loop(1).Stats().Iterations.Load()
		time.Sleep(10 * tick)
		if n := ts.g.Loop(1).Stats().Iterations.Load() - waits; n > 2 {
			t.Fatalf("idle loop 1 with its rings released still woke up %d times in %v (a tick every %v)", n, 10*tick, tick)
		}
	})
}

// drop and disconnect are applied by the destination's loop to frames
// that came from another loop, as to its own.
func TestLoopsSlowConsumerPolicies(t *testing.T) {
	t.Parallel()
	for _, policy := range []relay.Policy{relay.Drop, relay.Disconnect} {
		t.Run(string(policy), func(t *testing.T) {
			forBackends(t, func(t *testing.T, backend reactor.Backend) {
				ts := startServerN(t, backend, testLoops, func(rc *relay.Config, _ *reactor.Config) {
					rc.MaxQueue, rc.SlowConsumer = 64<<10, policy
				})
				r, s := ts.dialOn(t, 0), ts.dialOn(t, 1)
				// Far more than -max-queue and the kernel's buffers: the
				// receiver reads nothing, the sender must never be held.
				const n, size = 4096, 16 << 10
				errc := make(chan error, 1)
				go func() { errc <- writeFrames(s, 0, r.ID(), n, size) }()
				select {
				case err := <-errc:
					if err != nil {
						t.Fatal(err)
					}
				case <-time.After(progressSlack):
					t.Fatalf("the sender was held back under %s", policy)
				}
				switch policy {
				case relay.Drop:
					servertest.WaitFor(t, "frames dropped for the slow consumer", 10*time.Second, func() bool {
						return ts.metrics().Dropped[relay.DropSlowConsumer] > 0
					})
				case relay.Disconnect:
					servertest.WaitFor(t, "the slow consumer closed", 10*time.Second, func() bool {
						return ts.metrics().Closed[relay.ClosedSlow] == 1
					})
				}
			})
		})
	}
}
