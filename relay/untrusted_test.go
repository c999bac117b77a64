package relay_test

// The limits for networks the operator does not control (limits.go,
// budget.go), over real sockets: ID spraying, connections per source
// address, and the memory budget.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/rawpeer"
	"github.com/ringrelay/ringrelay/internal/servertest"
	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
	"github.com/ringrelay/ringrelay/shard"
)

// untrustedWait bounds every wait of these tests: an event that does not
// come within it is a failure, not a timing measurement.
const untrustedWait = 30 * time.Second

// expectEnd reads from nc until the server closes it, which must come
// with no byte before it.
func expectEnd(t testing.TB, nc net.Conn, what string) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(untrustedWait))
	b, err := io.ReadAll(nc)
	if len(b) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("%s: read %d bytes, %v; want nothing, then its end", what, len(b), err)
	}
}

// roundTrip sends one frame from a to b and waits for it.
func roundTrip(t testing.TB, a, b *rawpeer.Peer, seq int) {
	t.Helper()
	if err := a.Send(b.ID, limPayload(nil, 0, seq, 64)); err != nil {
		t.Fatalf("send %08x -> %08x: %v", a.ID, b.ID, err)
	}
	p, err := b.Recv(untrustedWait)
	if err != nil {
		t.Fatalf("%08x: recv: %v", b.ID, err)
	}
	if _, got, err := limParse(p); err != nil || got != seq {
		t.Fatalf("%08x: got frame %d (%v), want %d", b.ID, got, err, seq)
	}
}

func TestLimitUnknownDest(t *testing.T) {
	t.Parallel()
	const limit = 50
	eachLoopCount(t, func(t *testing.T, backend reactor.Backend, loops int) {
		ts := startServerN(t, backend, loops, func(rc *relay.Config, _ *reactor.Config) {
			rc.MaxUnknownDest = limit
			rc.UnknownDestWindow = time.Hour // one window for the whole test
		})
		good := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
		other := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
		gone := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
		roundTrip(t, good, gone, 0)

		// A peer leaves; a client streaming to it does not know and
		// goes on sending, many times the limit. The frames are
		// dropped and counted; the client stays: one ID again and
		// again is not a scan.
		gone.NC.Close()
		servertest.WaitFor(t, "the peer's departure", untrustedWait, func() bool { return ts.open() == 2 })
		const inFlight = 3 * limit
		for i := range inFlight {
			if err := good.Send(gone.ID, limPayload(nil, 0, i, 64)); err != nil {
				t.Fatal(err)
			}
		}
		servertest.WaitFor(t, "the frames to the departed peer dropped", untrustedWait, func() bool {
			return ts.metrics().Dropped[relay.DropUnknownDest] == inFlight
		})
		roundTrip(t, good, other, 1)

		// A scanner. With several loops it aims only at IDs other
		// loops own, so every probe is found unknown elsewhere and
		// must be counted through the unknown record back.
		scanner := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
		own := shard.Owner(scanner.ID, loops)
		sent := 0
		for id := uint32(0x1000); sent < 4*limit; id++ {
			if loops > 1 && shard.Owner(id, loops) == own {
				continue
			}
			if id == good.ID || id == other.ID || id == scanner.ID {
				continue
			}
			if scanner.Send(id, limPayload(nil, 0, sent, 64)) != nil {
				break // closed already
			}
			sent++
		}
		expectEnd(t, scanner.NC, "the scanner")
		servertest.WaitFor(t, "the scanner counted", untrustedWait, func() bool {
			return ts.metrics().Closed[relay.ClosedUnknownDest] == 1
		})

		// The good client was never counted against the limit,
		// and still relays.
		roundTrip(t, good, other, 2)
		roundTrip(t, other, good, 3)
		if n := ts.metrics().Closed[relay.ClosedUnknownDest]; n != 1 {
			t.Errorf("%d connections closed for unknown IDs, want 1 (the scanner)", n)
		}
	})
}

// buffered is what the loops last counted in client buffers.
func (ts *testServer) buffered() int64 {
	var n int64
	for k := range ts.g.Loops() {
		n += ts.g.Server(k).Metrics().ClientBuffered.Load()
	}
	return n
}

// startServerAt is startServerN on listen.
func startServerAt(t testing.TB, backend reactor.Backend, loops int, listen string, edit func(*relay.Config)) *testServer {
	t.Helper()
	rc := relay.DefaultConfig()
	edit(&rc)
	lc := reactor.DefaultConfig()
	lc.Backend = backend
	lc.Buffers = 256
	g, err := relay.StartGroup(relay.GroupConfig{Loops: loops, Listen: listen, Reactor: lc, Relay: rc})
	if err != nil {
		t.Fatalf("start %s server with %d loops on %s: %v", backend, loops, listen, err)
	}
	ts := &testServer{addr: g.Addr().String(), g: g, done: make(chan error, 1)}
	go func() { ts.done <- g.Wait() }()
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

func TestLimitConnsPerIP(t *testing.T) {
	t.Parallel()
	const limit = 3
	for _, network := range []string{"127.0.0.1", "[::1]"} {
		for _, backend := range backends {
			for _, loops := range loopCounts {
				t.Run(fmt.Sprintf("%s/%s/loops=%d", network, backend, loops), func(t *testing.T) {
					if network == "[::1]" {
						if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
							t.Skipf("no IPv6 loopback: %v", err)
						} else {
							ln.Close()
						}
					}
					ts := startServerAt(t, backend, loops, network+":0", func(rc *relay.Config) {
						rc.MaxConnsPerIP = limit
					})
					ps := make([]*rawpeer.Peer, limit)
					for i := range ps {
						ps[i] = rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
					}
					// Over the limit: accepted and closed before any ID,
					// counted, whichever loop it was placed on.
					for i := range 2 {
						nc, err := net.Dial("tcp", ts.addr)
						if err != nil {
							t.Fatal(err)
						}
						expectEnd(t, nc, fmt.Sprintf("connection %d over the limit", limit+1+i))
						nc.Close()
					}
					servertest.WaitFor(t, "the refused connections counted", untrustedWait, func() bool {
						return ts.metrics().Closed[relay.ClosedConnsPerIP] == 2
					})
					roundTrip(t, ps[0], ps[limit-1], 0)

					// One leaves; its place is free again.
					ps[0].NC.Close()
					servertest.WaitFor(t, "one connection left", untrustedWait, func() bool { return ts.open() == limit-1 })
					late := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
					roundTrip(t, late, ps[1], 1)
					if n := ts.metrics().Closed[relay.ClosedConnsPerIP]; n != 2 {
						t.Errorf("%d connections refused, want 2", n)
					}
				})
			}
		}
	}
}

// The memory budget: hogs, each holding most of a maximum frame without
// its NUL, against a budget a fraction of their sum. The server closes the
// largest until its buffers are back under the budget, counts them, and a
// pair keeps relaying throughout.
func TestLimitMaxMemory(t *testing.T) {
	t.Parallel()
	const (
		budget  = 8 << 20
		hogs    = 40
		partial = 600 << 10
	)
	eachLoopCount(t, func(t *testing.T, backend reactor.Backend, loops int) {
		ts := startServerN(t, backend, loops, func(rc *relay.Config, _ *reactor.Config) {
			rc.MaxMemory = budget
			rc.FrameTimeout = time.Hour // only the budget closes them
		})
		a := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
		b := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
		stop := make(chan struct{})
		var trips int
		var pairErr error
		pairDone := make(chan struct{})
		go func() { // the pair, throughout
			defer close(pairDone)
			trips, pairErr = rawpeer.Exchange(a, b, stop, untrustedWait)
		}()

		frame := make([]byte, 4+partial)
		for i := range frame[4:] {
			frame[4+i] = 'x'
		}
		copy(frame, []byte{0, 0, 0, 1}) // to ID 1; the NUL never comes
		hs := make([]*rawpeer.Peer, hogs)
		for i := range hs {
			hs[i] = rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
			// The write may fail once the server closed the hog.
			hs[i].NC.SetWriteDeadline(time.Now().Add(untrustedWait))
			_, _ = hs[i].NC.Write(frame)
		}
		// The server closes hogs until what it holds is back under the
		// budget. Each hog holds at least its partial frame (the
		// buffer grows to what is needed, or doubles, up to 1 MiB),
		// so at most budget/partial of them remain.
		most := budget / partial
		servertest.WaitFor(t, "the largest buffers closed, back under the budget", untrustedWait, func() bool {
			return ts.metrics().Closed[relay.ClosedMaxMemory] >= uint64(hogs-most) && ts.buffered() <= budget
		})
		// Exactly the connections counted are gone: the pair and the
		// other hogs are still open.
		servertest.WaitFor(t, "the evicted connections gone", untrustedWait, func() bool {
			return ts.open() == int64(2+hogs)-int64(ts.metrics().Closed[relay.ClosedMaxMemory])
		})
		// The pair keeps relaying after the eviction too.
		close(stop)
		<-pairDone
		before := trips
		if pairErr != nil {
			t.Fatalf("the pair stopped relaying after %d round trips: %v", before, pairErr)
		}
		roundTrip(t, a, b, 1)
		roundTrip(t, b, a, 2)
		evicted := ts.metrics().Closed[relay.ClosedMaxMemory]
		if evicted > hogs {
			t.Errorf("%d connections closed for memory, more than the %d hogs", evicted, hogs)
		}
		t.Logf("%d of %d hogs closed over a %d MiB budget; the pair made %d trips meanwhile", evicted, hogs, budget>>20, before)
	})
}
