package relay_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
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

// e2eCase is one end-to-end case, written once and run in every
// topology of its kind on every backend. A case names the endpoint each
// client is on (e.dial(t, i)); the topology decides whether that is the
// same loop, another loop or another node.
type e2eCase struct {
	name string
	// in is the topologies the case runs in (0: all); a case that leaves
	// one out says why.
	in topoKind
	// serial: the case measures this whole process, so it runs while no
	// other test does (TestEndToEndAlone).
	serial bool
	// plaintext, when set, says why the case does not run over TLS.
	plaintext string
	run       func(t *testing.T, e *e2eEnv)
}

// e2eCases is the one end-to-end table.
var e2eCases = []e2eCase{
	{name: "exchange", run: func(t *testing.T, e *e2eEnv) {
		a, b := e.dial(t, 0), e.dial(t, 1)
		if a.ID() == 0 || b.ID() == 0 || a.ID() == b.ID() {
			t.Fatalf("bad IDs %08x %08x", a.ID(), b.ID())
		}
		if e.nodes != nil {
			scheme := shard.Scheme{Bits: clusterNodeBits}
			if scheme.NodeOf(a.ID()) != 0 || scheme.NodeOf(b.ID()) != 1 {
				t.Fatalf("IDs %08x and %08x do not carry their nodes 0 and 1", a.ID(), b.ID())
			}
		}
		if err := a.Send(b.ID(), []byte("hello, number 2")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, b, 5*time.Second); string(got) != "hello, number 2" {
			t.Fatalf("b got %q", got)
		}
		if err := b.Send(a.ID(), []byte("hello back, number 1")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, a, 5*time.Second); string(got) != "hello back, number 1" {
			t.Fatalf("a got %q", got)
		}
	}},
	{name: "1000 clients get distinct IDs", plaintext: "a thousand handshakes would spend the test's time", run: func(t *testing.T, e *e2eEnv) {
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
				c, err := client.Dial(ctx, e.addr(i))
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
		seen := make(map[uint32]bool, n)
		for _, c := range conns {
			if c.ID() == 0 || seen[c.ID()] {
				t.Fatalf("ID %08x is zero or repeated", c.ID())
			}
			seen[c.ID()] = true
		}
		// Every one of them is routable: the last sends to the first.
		if err := conns[n-1].Send(conns[0].ID(), []byte("from the last")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, conns[0], 5*time.Second); string(got) != "from the last" {
			t.Fatalf("got %q", got)
		}
	}},
	{name: "200 frames in one write arrive in order", run: func(t *testing.T, e *e2eEnv) {
		a, b := e.dial(t, 2), e.dial(t, 0)
		var buf []byte
		for i := range 200 {
			buf = frame.Append(buf, b.ID(), fmt.Appendf(nil, "frame %03d", i))
		}
		if _, err := a.NetConn().Write(buf); err != nil {
			t.Fatal(err)
		}
		for i := range 200 {
			if got, want := string(recv(t, b, 5*time.Second)), fmt.Sprintf("frame %03d", i); got != want {
				t.Fatalf("frame %d: got %q want %q", i, got, want)
			}
		}
	}},
	{name: "frame written one byte at a time", run: func(t *testing.T, e *e2eEnv) {
		a, b := e.dial(t, 1), e.dial(t, 2)
		// A header with zero bytes in it must not end the frame early.
		for _, ch := range frame.Append(nil, b.ID(), []byte("dribbled")) {
			if _, err := a.NetConn().Write([]byte{ch}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
		if got := recv(t, b, 5*time.Second); string(got) != "dribbled" {
			t.Fatalf("got %q", got)
		}
	}},
	{name: "1 MiB frame", run: func(t *testing.T, e *e2eEnv) {
		a, b := e.dial(t, 0), e.dial(t, 2)
		payload := make([]byte, 1<<20)
		for i := range payload {
			payload[i] = byte('a' + i%26)
		}
		go a.Send(b.ID(), payload)
		if got := recv(t, b, 10*time.Second); !bytes.Equal(got, payload) {
			t.Fatalf("got %d bytes, want the 1 MiB payload", len(got))
		}
	}},
	{name: "unknown destination dropped, sender keeps working", run: func(t *testing.T, e *e2eEnv) {
		// The unknown ID is one b's server (b's node, in a cluster) would
		// own: that server counts the drop, and no other.
		a, b := e.dial(t, 0), e.dial(t, 1)
		unknown := e.unknownAt(1, a.ID(), b.ID())
		before := e.metrics()
		beforeA, beforeB := e.drops(0, relay.DropUnknownDest), e.drops(1, relay.DropUnknownDest)
		if err := a.Send(unknown, []byte("into the void")); err != nil {
			t.Fatal(err)
		}
		if err := a.Send(b.ID(), []byte("still here")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, b, 5*time.Second); string(got) != "still here" {
			t.Fatalf("got %q", got)
		}
		// Counted once, and the sender's connection was left alone.
		var m counters
		servertest.WaitFor(t, "the drop to be counted", 5*time.Second, func() bool {
			m = e.metrics()
			return m.Dropped[relay.DropUnknownDest] == before.Dropped[relay.DropUnknownDest]+1
		})
		if e.nodes != nil {
			if n := e.drops(1, relay.DropUnknownDest); n != beforeB+1 {
				t.Fatalf("node 1, whose ID it was, counted %d unknown destinations, want 1", n-beforeB)
			}
			if n := e.drops(0, relay.DropUnknownDest); n != beforeA {
				t.Fatalf("the sender's node counted %d unknown destinations, want none", n-beforeA)
			}
		} else if n := m.FramesRelayed - before.FramesRelayed; n != 1 {
			// One server relays the one frame it delivered; in a cluster
			// a frame is counted on each node it passes.
			t.Fatalf("frames relayed = %d, want 1", n)
		}
		for _, r := range relay.CloseReasons() {
			if n := m.Closed[r] - before.Closed[r]; n != 0 {
				t.Fatalf("%d connections closed (%s) after a frame to an unknown ID", n, r)
			}
		}
	}},
	{name: "a receiver that leaves", run: func(t *testing.T, e *e2eEnv) {
		a, b, c := e.dial(t, 0), e.dial(t, 1), e.dial(t, 1)
		if err := a.Send(b.ID(), []byte("before")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, b, 5*time.Second); string(got) != "before" {
			t.Fatalf("got %q", got)
		}
		gone := b.ID()
		open := e.server(1).open()
		b.Close()
		servertest.WaitFor(t, "b's server to see b leave", 5*time.Second, func() bool { return e.server(1).open() < open })
		before := e.drops(1, relay.DropUnknownDest)
		if err := a.Send(gone, []byte("after")); err != nil {
			t.Fatal(err)
		}
		// The sender stays connected and keeps working.
		if err := a.Send(c.ID(), []byte("to c")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, c, 5*time.Second); string(got) != "to c" {
			t.Fatalf("got %q", got)
		}
		servertest.WaitFor(t, "b's server to count the frame for the departed ID", 5*time.Second, func() bool {
			return e.drops(1, relay.DropUnknownDest) == before+1
		})
	}},
	{name: "self-send", run: func(t *testing.T, e *e2eEnv) {
		a := e.dial(t, 0)
		if err := a.Send(a.ID(), []byte("note to self")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, a, 5*time.Second); string(got) != "note to self" {
			t.Fatalf("got %q", got)
		}
	}},
	{name: "two senders of 48 KiB frames never interleave", run: func(t *testing.T, e *e2eEnv) {
		// The senders are on endpoints 0 and 2, the receiver on 1: on
		// other loops, or other nodes, than the receiver and each other.
		r := e.dial(t, 1)
		const frames, size = 64, 48 << 10
		senders := []*client.Conn{e.dial(t, 0), e.dial(t, 2)}
		for si, s := range senders {
			go func() {
				rng := rand.New(rand.NewPCG(uint64(si), 7))
				var buf []byte
				for i := range frames {
					buf = frame.Append(buf, r.ID(), seqPayload(si, i, size))
				}
				// Random chunking so frames straddle reads on the server.
				for len(buf) > 0 {
					n := min(len(buf), 1+rng.IntN(50000))
					if _, err := s.NetConn().Write(buf[:n]); err != nil {
						return
					}
					buf = buf[n:]
				}
			}()
		}
		// Each frame is whole, one sender's, and next in that sender's order.
		next := map[int]int{}
		for range 2 * frames {
			checkSeq(t, recv(t, r, 10*time.Second), next, size)
		}
		if next[0] != frames || next[1] != frames {
			t.Fatalf("frames per sender: %v", next)
		}
	}},
	{name: "order per pair, three endpoints at once", run: func(t *testing.T, e *e2eEnv) {
		// Every endpoint's client sends 2000 numbered frames, in many
		// writes, to each other endpoint's client; each receiver checks
		// that every sender's numbers run 0, 1, 2, ... with no gap.
		const per = 2000
		var conns []*client.Conn
		for i := range 3 {
			conns = append(conns, e.dial(t, i))
		}
		for i, src := range conns {
			go func() {
				var buf []byte
				for seq := range per {
					for j, dst := range conns {
						if j != i {
							buf = frame.Append(buf, dst.ID(), fmt.Appendf(nil, "%d:%d:%s", i, seq, bytes.Repeat([]byte{'x'}, seq%700)))
						}
					}
					if len(buf) > 16<<10 || seq == per-1 {
						if _, err := src.NetConn().Write(buf); err != nil {
							return
						}
						buf = buf[:0]
					}
				}
			}()
		}
		for j, dst := range conns {
			next := map[int]int{}
			for range per * (len(conns) - 1) {
				got := recv(t, dst, 10*time.Second)
				var from, seq int
				if _, err := fmt.Sscanf(string(got), "%d:%d:", &from, &seq); err != nil {
					t.Fatalf("receiver %d: frame %q: %v", j, trim(got), err)
				}
				want := fmt.Appendf(nil, "%d:%d:%s", from, seq, bytes.Repeat([]byte{'x'}, seq%700))
				if seq != next[from] || !bytes.Equal(got, want) {
					t.Fatalf("receiver %d: from %d got #%d (%d bytes), want #%d", j, from, seq, len(got), next[from])
				}
				next[from]++
			}
		}
	}},
	// Within one server, a reader that stops and pauses its senders on
	// other loops is TestLimitBackpressure and
	// TestLoopsStalledReceiverBackpressure; here the pause crosses the bus.
	{name: "a reader that stops pauses its senders on other nodes", in: severalNodes, run: func(t *testing.T, e *e2eEnv) {
		// a floods c, which never reads, from another node; b and d, an
		// unrelated pair on two nodes, keep talking meanwhile. The flood
		// must be paused at its source (the pause crosses the bus), not
		// dropped on c's node, and must not stall the pair.
		c := rawpeer.Dial(t, e.addr(2), rawpeer.Bufs{Rcv: 4 << 10})
		a, b, d := e.dial(t, 0), e.dial(t, 1), e.dial(t, 0)
		pausesBefore := e.server(0).metrics().BackpressurePauses
		relayedBefore := e.server(2).metrics().BytesRelayed
		remoteBefore := e.metrics().Dropped[relay.DropRemoteOverLimit]
		flood := bytes.Repeat([]byte{'f'}, 64<<10)
		go func() {
			for a.Send(c.ID, flood) == nil { // until a is closed
			}
		}()
		servertest.WaitFor(t, "a to be paused on its own node", 10*time.Second, func() bool {
			return e.server(0).metrics().BackpressurePauses > pausesBefore
		})
		for i := range 500 {
			msg := fmt.Appendf(nil, "ping %d", i)
			if err := b.Send(d.ID(), msg); err != nil {
				t.Fatal(err)
			}
			if got := recv(t, d, 10*time.Second); !bytes.Equal(got, msg) {
				t.Fatalf("d got %q, want %q", got, msg)
			}
			if err := d.Send(b.ID(), msg); err != nil {
				t.Fatal(err)
			}
			if got := recv(t, b, 10*time.Second); !bytes.Equal(got, msg) {
				t.Fatalf("b got %q, want %q", got, msg)
			}
		}
		if v := e.metrics().Dropped[relay.DropRemoteOverLimit] - remoteBefore; v != 0 {
			t.Fatalf("the nodes dropped %d frames for a reader over its limit: the pause did not hold the flood", v)
		}
		// What reached c's queue is its limit plus what was in flight
		// when the pause landed (at most the hard bound, 4 + 69 MiB),
		// not the flood's rate times the test's length.
		if got := e.server(2).metrics().BytesRelayed - relayedBefore; got > 80<<20 {
			t.Fatalf("%d MiB reached the reader that stopped", got>>20)
		}
		a.Close()
	}},
	{name: "disconnect mid-frame delivers nothing partial", run: func(t *testing.T, e *e2eEnv) {
		a, b, c := e.dial(t, 0), e.dial(t, 1), e.dial(t, 2)
		partial := frame.Append(nil, b.ID(), []byte("this frame never ends"))
		if _, err := a.NetConn().Write(partial[:len(partial)-1]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		a.Close()
		if err := c.Send(b.ID(), []byte("whole")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, b, 5*time.Second); string(got) != "whole" {
			t.Fatalf("b's first payload is %q, want only the whole frame", got)
		}
		expectNothing(t, b, 100*time.Millisecond)
	}},
	{name: "storm of clients resetting", plaintext: "its clients are bare TCP sockets, a bad input on a TLS port (TestTLSBadInputsCounted)", run: func(t *testing.T, e *e2eEnv) {
		const n = 300
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				nc, err := e.rawDial(i)
				if err != nil {
					t.Errorf("dial: %v", err)
					return
				}
				// Half a frame, then RST.
				nc.Write([]byte{1, 2, 3, 4, 'x', 'y'})
				nc.(*net.TCPConn).SetLinger(0)
				nc.Close()
			}()
		}
		wg.Wait()
		servertest.WaitFor(t, "all reset connections closed", 10*time.Second, func() bool { return e.open() == 0 })
		a, b := e.dial(t, 0), e.dial(t, 1)
		if err := a.Send(b.ID(), []byte("after the storm")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, b, 5*time.Second); string(got) != "after the storm" {
			t.Fatalf("got %q", got)
		}
	}},
	// Counts this process's descriptors, so it runs while no other case
	// does, and on a single server: a cluster's NATS servers and bus
	// connections (pings, reconnects) open and close descriptors of their
	// own meanwhile.
	{name: "no descriptor leaked after 2000 connect/close cycles", in: singleServer, serial: true, plaintext: "its clients are bare TCP sockets, and 2000 handshakes would spend the test's time", run: func(t *testing.T, e *e2eEnv) {
		ts := e.server(0)
		released := func() bool { tot := ts.loopTotals(); return tot.open == 0 && tot.descriptors == 0 }
		warm := e.dial(t, 0)
		warm.Close()
		servertest.WaitFor(t, "the warm-up connection's socket to be closed", 30*time.Second, released)
		before := fdList(t)
		for i := range 2000 {
			nc, err := e.rawDial(i)
			if err != nil {
				t.Fatalf("cycle %d: %v", i, err)
			}
			if i%2 == 0 {
				var id [4]byte
				nc.SetReadDeadline(time.Now().Add(30 * time.Second))
				if _, err := nc.Read(id[:]); err != nil {
					t.Fatalf("cycle %d: read id: %v", i, err)
				}
			}
			nc.Close()
		}
		// Every connection accepted is adopted by a loop (several loops
		// hand sockets over), then closed; the loops hold no socket once
		// the last close(2) has completed (io_uring closes asynchronously).
		servertest.WaitFor(t, "all 2001 connections adopted, closed and their sockets given back", 60*time.Second, func() bool {
			return ts.loopTotals().accepted == 2001 && released()
		})
		// A leak is a descriptor the process did not hold before (or a
		// number that names another file now). The count alone is not the
		// check: a descriptor something else held a moment at the baseline
		// and closed since is not the server's leak.
		after := fdList(t)
		if leaked := servertest.NewFDs(before, after); leaked != "" {
			t.Fatalf("descriptors: %d before, %d after 2000 cycles with every socket closed; new:\n%s",
				len(before), len(after), leaked)
		}
		if gone := servertest.NewFDs(after, before); gone != "" {
			t.Logf("held at the baseline, closed since (not the server's sockets, which were all closed then):\n%s", gone)
		}
	}},
}

// e2eApplies reports whether tc runs in topo.
func e2eApplies(tc e2eCase, topo topology) bool {
	return (tc.in == 0 || tc.in&topo.kind != 0) && !(topo.tls && tc.plaintext != "")
}

// TestEndToEnd runs every case that is not serial in every topology it
// applies to, on every backend. It runs beside the other parallel tests,
// every topology beside the others, and within a topology that starts
// servers per case, the cases beside each other too: they spend most of
// their time waiting on sockets. The full names are
// TestEndToEnd/<backend>/<topology>/<case>.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	for _, backend := range backends {
		for _, topo := range topologies {
			t.Run(fmt.Sprintf("%s/%s", backend, topo.name), func(t *testing.T) {
				t.Parallel()
				var shared *e2eEnv
				if topo.shared {
					shared = topo.start(t, backend)
				}
				for _, tc := range e2eCases {
					if tc.serial || !e2eApplies(tc, topo) {
						continue
					}
					t.Run(tc.name, func(t *testing.T) {
						if shared != nil {
							// Start from quiet servers: the last case's
							// connections closed and counted.
							shared.waitQuiet(t, "the connections of earlier cases closed and counted")
							tc.run(t, shared)
							return
						}
						t.Parallel()
						tc.run(t, topo.start(t, backend))
					})
				}
				if shared != nil && shared.check != nil {
					shared.check(t)
				}
			})
		}
	}
}

// TestEndToEndAlone runs the serial cases of the table, one at a time,
// in every topology they apply to: it is not parallel, so Go runs it
// before any parallel test starts and nothing else in this process opens
// or closes a descriptor meanwhile.
func TestEndToEndAlone(t *testing.T) {
	for _, backend := range backends {
		for _, topo := range topologies {
			for _, tc := range e2eCases {
				if tc.serial && e2eApplies(tc, topo) {
					t.Run(fmt.Sprintf("%s/%s/%s", backend, topo.name, tc.name), func(t *testing.T) {
						tc.run(t, topo.start(t, backend))
					})
				}
			}
		}
	}
}

// TestBackendInUse guards the table above: it must really exercise both
// engines, not fall back silently.
func TestBackendInUse(t *testing.T) {
	for _, backend := range backends {
		loop, err := reactor.Open("127.0.0.1:0", reactor.Config{Backend: backend})
		if err != nil {
			t.Fatalf("%s: %v", backend, err)
		}
		if loop.Backend() != backend {
			t.Errorf("asked for %s, got %s", backend, loop.Backend())
		}
		loop.Close()
	}
}
