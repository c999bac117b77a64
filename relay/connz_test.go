package relay_test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/rawpeer"
	"github.com/ringrelay/ringrelay/internal/servertest"
	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
	"github.com/ringrelay/ringrelay/shard"
)

// connz asks the server for its connections, by ID.
func (ts *testServer) connz(t *testing.T, id uint32) map[uint32]relay.ConnInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), progressSlack)
	defer cancel()
	list, err := ts.g.Connz(ctx, id)
	if err != nil {
		t.Fatalf("connz: %v", err)
	}
	if err := ts.g.ConnzAddrs(ctx, list); err != nil {
		t.Fatalf("connz addresses: %v", err)
	}
	out := make(map[uint32]relay.ConnInfo, len(list))
	for _, c := range list {
		if _, dup := out[c.ID]; dup {
			t.Fatalf("connz: connection %d listed twice", c.ID)
		}
		out[c.ID] = c
	}
	return out
}

// The connection list counts what each connection sent and was sent,
// frame for frame and byte for byte, says where each is and how old, and
// answers for one ID alone.
func TestConnzCounts(t *testing.T) {
	t.Parallel()
	eachLoopCount(t, testConnzCounts)
}

func testConnzCounts(t *testing.T, backend reactor.Backend, loops int) {
	const (
		toB, toC = 20, 5
		payload  = 100 // 105 bytes on the wire, 101 delivered
	)
	ts := startServerN(t, backend, loops, nil)
	began := time.Now()
	a := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
	b := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
	c := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
	for i := range toB + toC {
		dest := b
		if i%5 == 4 {
			dest = c
		}
		if err := a.Send(dest.ID, []byte(strings.Repeat("x", payload))); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	for _, r := range []struct {
		p *rawpeer.Peer
		n int
	}{{b, toB}, {c, toC}} {
		for range r.n {
			if _, err := r.p.Recv(progressSlack); err != nil {
				t.Fatalf("receiver %d: %v", r.p.ID, err)
			}
		}
	}
	// Every frame arrived, so every count is final; the wait is for the
	// loops' answers, not for the counts.
	var all map[uint32]relay.ConnInfo
	servertest.WaitFor(t, "the three connections listed", progressSlack, func() bool {
		all = ts.connz(t, 0)
		return len(all) == 3
	})
	want := map[uint32]relay.ConnInfo{
		a.ID: {FramesIn: toB + toC, BytesIn: (toB + toC) * (payload + 5), BytesOut: 4},
		b.ID: {FramesOut: toB, BytesOut: 4 + toB*(payload+1)},
		c.ID: {FramesOut: toC, BytesOut: 4 + toC*(payload+1)},
	}
	age := time.Since(began)
	for _, p := range []*rawpeer.Peer{a, b, c} {
		got, w := all[p.ID], want[p.ID]
		if got.FramesIn != w.FramesIn || got.BytesIn != w.BytesIn || got.FramesOut != w.FramesOut || got.BytesOut != w.BytesOut || got.Queued != 0 {
			t.Errorf("%d: in %d frames/%d bytes, out %d frames/%d bytes, queued %d; want in %d/%d, out %d/%d, queued 0",
				p.ID, got.FramesIn, got.BytesIn, got.FramesOut, got.BytesOut, got.Queued, w.FramesIn, w.BytesIn, w.FramesOut, w.BytesOut)
		}
		if got.Paused || got.PausedOn != 0 {
			t.Errorf("%d: paused %v on %v, want not paused", p.ID, got.Paused, got.PausedOn.Names())
		}
		if local := p.NC.LocalAddr().(*net.TCPAddr).AddrPort(); got.Remote != local {
			t.Errorf("%d: remote %v, want the client's address %v", p.ID, got.Remote, local)
		}
		if wantLoop := shard.Owner(p.ID, loops); got.Loop != wantLoop {
			t.Errorf("%d: loop %d, want %d (the ID's owner)", p.ID, got.Loop, wantLoop)
		}
		if got.Age <= 0 || got.Age > age {
			t.Errorf("%d: age %v, want within (0, %v] (since before the dial)", p.ID, got.Age, age)
		}
	}
	if all[a.ID].Age < all[c.ID].Age {
		t.Errorf("a, opened first, is younger (%v) than c (%v)", all[a.ID].Age, all[c.ID].Age)
	}

	one := ts.connz(t, b.ID)
	if len(one) != 1 || one[b.ID].FramesOut != toB {
		t.Errorf("connz for %d alone: %+v, want that connection with %d frames out", b.ID, one, toB)
	}
	// A list taken while c was open: once c has left (and a new
	// connection may have its slot), its address is not looked up.
	ctx, cancel := context.WithTimeout(context.Background(), progressSlack)
	defer cancel()
	list, err := ts.g.Connz(ctx, 0)
	if err != nil || len(list) != 3 {
		t.Fatalf("connz: %d connections, %v; want 3", len(list), err)
	}
	c.NC.Close()
	servertest.WaitFor(t, "the closed connection gone from the list", progressSlack, func() bool {
		return len(ts.connz(t, c.ID)) == 0 && len(ts.connz(t, 0)) == 2
	})
	rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
	if err := ts.g.ConnzAddrs(ctx, list); err != nil {
		t.Fatalf("connz addresses: %v", err)
	}
	for _, e := range list {
		if valid := e.Remote.IsValid(); valid != (e.ID != c.ID) {
			t.Errorf("%d: address %v after c (%d) left, want one only for the open connections", e.ID, e.Remote, c.ID)
		}
	}
}

// A sender paused by backpressure is listed as paused, on its full
// destination, whose queued bytes are listed too.
func TestConnzPaused(t *testing.T) {
	t.Parallel()
	eachLoopCount(t, testConnzPaused)
}

func testConnzPaused(t *testing.T, backend reactor.Backend, loops int) {
	const (
		maxQueue = 64 << 10
		payload  = 1000
	)
	ts := startServerN(t, backend, loops, func(rc *relay.Config, _ *reactor.Config) { rc.MaxQueue = maxQueue })
	d := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{Rcv: 4 << 10}) // never reads
	e := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{Snd: 16 << 10})
	var sent atomic.Uint64
	go func() {
		// Runs until the sender's writes block for good (it is paused),
		// then until the test closes the connection.
		for e.Send(d.ID, []byte(strings.Repeat("y", payload))) == nil {
			sent.Add(payload + 5)
		}
	}()
	// Once paused, the sender stays paused until the destination's queue
	// drains below half its limit; the kernel may still take some of it
	// after the pause (the socket's send buffer grows), so the queue ends
	// somewhere between half the limit and a little over it.
	var de, ee relay.ConnInfo
	servertest.WaitFor(t, "the sender paused with every frame it sent delivered", progressSlack, func() bool {
		all := ts.connz(t, 0)
		de, ee = all[d.ID], all[e.ID]
		return ee.Paused && ee.PausedOn != 0 && de.Queued >= maxQueue/2 && ee.FramesIn == de.FramesOut
	})
	if got := uint64(de.Queued) + de.BytesOut; got != 4+de.FramesOut*(payload+1) {
		t.Errorf("destination: queued %d + written %d = %d bytes, want 4 + %d frames x %d = %d",
			de.Queued, de.BytesOut, got, de.FramesOut, payload+1, 4+de.FramesOut*(payload+1))
	}
	if ee.BytesIn < ee.FramesIn*(payload+5) || ee.BytesIn > sent.Load()+payload+5 {
		t.Errorf("sender: %d bytes in for %d frames, %d bytes written: want between %d and %d",
			ee.BytesIn, ee.FramesIn, sent.Load(), ee.FramesIn*(payload+5), sent.Load()+payload+5)
	}
	sameLoop := shard.Owner(d.ID, loops) == shard.Owner(e.ID, loops)
	switch {
	case sameLoop && ee.PausedOn != relay.PausedByDest:
		t.Errorf("sender on the destination's loop paused on %v, want [destination]", ee.PausedOn.Names())
	case !sameLoop && ee.PausedOn&^(relay.PausedByLoopDest|relay.PausedByLoopHop) != 0:
		t.Errorf("sender on another loop paused on %v, want loop_destination or loop_queue", ee.PausedOn.Names())
	}
	if ee.PausedOn&(relay.PausedByDest|relay.PausedByLoopDest) != 0 && ee.PausedFor != d.ID {
		t.Errorf("sender paused for %d, want the destination %d", ee.PausedFor, d.ID)
	}
	if de.Paused {
		t.Errorf("the destination, which sends nothing, is listed as paused on %v", de.PausedOn.Names())
	}
}
