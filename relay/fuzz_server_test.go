package relay_test

// FuzzServer throws fuzzer-chosen bytes, cut into fuzzer-chosen pieces, at
// a live relay on each backend and checks that the relay delivers exactly
// what the protocol says, survives, and keeps serving a well-behaved pair.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/frame"
	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
	"github.com/ringrelay/ringrelay/relay/client"
)

// fzMaxFrame is small, so that the fuzzer reaches the limit easily.
const fzMaxFrame = 1 << 10

// The fuzzer cannot know the IDs the relay hands out, so three header
// values stand for connections it may want to reach: a frame whose header
// is one of these is sent with the real ID in its place.
const (
	fzToSelf = 1 // the fuzzed connection itself
	fzToA    = 2 // one of the well-behaved pair
	fzToB    = 3 // the other one
)

// fzWait bounds each wait on the relay; running out is a failure.
const fzWait = 10 * time.Second

type fzTarget struct {
	backend string // and loop count, for messages
	loops   int
	ts      *testServer
	a, b    *client.Conn
	round   int
	pending [2][][]byte // frames the last input owes A and B, NUL included
}

// fzExpect is what the relay must do with one input.
type fzExpect struct {
	wire     []byte // the bytes written: the input with the stand-in IDs replaced
	self     []byte // payloads (NUL included) the fuzzed connection sent itself, in order
	toA, toB [][]byte
	// oversize: a payload runs past fzMaxFrame without a NUL; the relay
	// closes the connection there, so what follows is never parsed.
	oversize bool
}

// fzModel splits stream into frames the simple way (a 4-byte header, then
// everything up to the first NUL), independently of relay.Parser, and
// works out where each frame must go.
func fzModel(stream []byte, self, a, b uint32) fzExpect {
	e := fzExpect{wire: bytes.Clone(stream)}
	for i := 0; len(e.wire)-i >= 4; {
		body := e.wire[i+4:]
		k := bytes.IndexByte(body[:min(len(body), fzMaxFrame+1)], 0)
		if k < 0 {
			// Either the stream ends inside a frame (discarded at EOF), or
			// the payload is already too long.
			e.oversize = len(body) > fzMaxFrame
			break
		}
		hdr := e.wire[i : i+4]
		switch binary.BigEndian.Uint32(hdr) {
		case fzToSelf:
			binary.BigEndian.PutUint32(hdr, self)
		case fzToA:
			binary.BigEndian.PutUint32(hdr, a)
		case fzToB:
			binary.BigEndian.PutUint32(hdr, b)
		}
		payload := body[:k+1]
		switch binary.BigEndian.Uint32(hdr) {
		case self:
			e.self = append(e.self, payload...)
		case a:
			e.toA = append(e.toA, payload)
		case b:
			e.toB = append(e.toB, payload)
		}
		i += 4 + k + 1
	}
	return e
}

func FuzzServer(f *testing.F) {
	hdr := func(id uint32) []byte { return binary.BigEndian.AppendUint32(nil, id) }
	fr := func(id uint32, payload string) []byte { return frame.Append(nil, id, []byte(payload)) }
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	f.Add([]byte{}, []byte{})
	f.Add([]byte{}, fr(0xdeadbeef, "to nobody"))
	f.Add([]byte{0}, join(fr(0, "header all NUL"), fr(0x00010000, "header with NULs"), fr(fzToSelf, "self"), fr(fzToA, "to a")))
	var tiny []byte
	for i := range 300 {
		tiny = append(tiny, fr(uint32(fzToSelf+i%3), string(rune('a'+i%26)))...)
	}
	f.Add([]byte{2, 0, 6}, tiny)
	f.Add([]byte{}, bytes.Repeat(fr(fzToB, ""), 100))
	f.Add([]byte{200, 3}, join(fr(fzToA, "before"), hdr(fzToB), bytes.Repeat([]byte{'L'}, fzMaxFrame+1), fr(fzToA, "after")))
	f.Add([]byte{255}, join(fr(fzToB, string(bytes.Repeat([]byte{'M'}, fzMaxFrame))), fr(fzToSelf, "right at the limit")))
	f.Add([]byte{1}, join(fr(fzToSelf, "then a partial"), hdr(fzToA), []byte("never finished")))
	f.Add([]byte{0, 1, 2}, []byte{0, 0, 0})
	garbage := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range garbage {
		garbage[i] = byte(rng.UintN(256))
		if i%97 == 0 {
			garbage[i] = fzToA
		}
	}
	f.Add([]byte{13, 7, 250}, garbage)

	// One relay per backend and loop count, and one well-behaved pair on each, for the
	// whole run; they are shut down by f's cleanup when the run ends.
	var targets []*fzTarget
	for _, backend := range backends {
		for _, loops := range loopCounts {
			ts := startServerN(f, backend, loops, func(rc *relay.Config, _ *reactor.Config) { rc.MaxFrame = fzMaxFrame })
			name := fmt.Sprintf("%s/loops=%d", backend, loops)
			targets = append(targets, &fzTarget{backend: name, loops: loops, ts: ts, a: ts.dial(f), b: ts.dial(f)})
		}
	}

	f.Cleanup(func() {
		for _, tg := range targets {
			tg.a.Close()
			tg.b.Close()
		}
	})

	f.Fuzz(func(t *testing.T, cuts, stream []byte) {
		for _, tg := range targets {
			tg.round++
			if err := tg.feed(cuts, stream); err != nil {
				t.Errorf("%s: %v", tg.backend, err)
			}
			if err := tg.pairStillWorks(); err != nil {
				t.Errorf("%s: after the input, the well-behaved pair: %v", tg.backend, err)
				// Start the next input from a clean pair.
				tg.redial(t)
			}
		}
	})
}

// redial replaces a pair whose streams are in an unknown state.
func (tg *fzTarget) redial(t *testing.T) {
	tg.a.Close()
	tg.b.Close()
	tg.pending = [2][][]byte{}
	ctx, cancel := context.WithTimeout(context.Background(), fzWait)
	defer cancel()
	var err error
	if tg.a, err = client.Dial(ctx, tg.ts.addr); err != nil {
		t.Fatalf("%s: redial the pair: %v", tg.backend, err)
	}
	if tg.b, err = client.Dial(ctx, tg.ts.addr); err != nil {
		tg.a.Close()
		t.Fatalf("%s: redial the pair: %v", tg.backend, err)
	}
}

// feed writes stream on a fresh raw connection in the pieces cuts asks for
// (each byte of cuts, cycled, is one piece's length minus one; no cuts is
// one write), half-closes it and checks what comes back on it and on the
// pair.
func (tg *fzTarget) feed(cuts, stream []byte) error {
	nc, err := net.DialTimeout("tcp", tg.ts.addr, fzWait)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(fzWait))
	self, err := frame.ReadID(nc)
	if err != nil {
		return fmt.Errorf("read id: %w", err)
	}
	want := fzModel(stream, self, tg.a.ID(), tg.b.ID())
	// The relay routes frames for A and B as it parses them, whatever
	// becomes of this connection afterwards; frames before an oversize
	// one are parsed before the relay gives up on it, so they are owed
	// too. pairStillWorks collects them.
	tg.pending = [2][][]byte{want.toA, want.toB}

	type result struct {
		got []byte
		err error
	}
	read := make(chan result, 1)
	go func() {
		got, err := io.ReadAll(nc)
		read <- result{got, err}
	}()

	wire := want.wire
	for i := 0; len(wire) > 0; i++ {
		n := len(wire)
		if len(cuts) > 0 {
			n = min(n, int(cuts[i%len(cuts)])+1)
		}
		if _, err := nc.Write(wire[:n]); err != nil {
			if want.oversize {
				break // closed by the relay for the oversize frame
			}
			return fmt.Errorf("write: %w", err)
		}
		wire = wire[n:]
	}
	if err := nc.(*net.TCPConn).CloseWrite(); err != nil && !want.oversize {
		return fmt.Errorf("half-close: %w", err)
	}

	r := <-read
	switch {
	case errors.Is(r.err, syscall.ECONNRESET) && want.oversize:
	case r.err != nil:
		return fmt.Errorf("reading until the relay closes (oversize %v): %w", want.oversize, r.err)
	}
	if want.oversize {
		// Closing discards what was queued for the offender, so it may
		// get only part of what it sent itself.
		if !bytes.HasPrefix(want.self, r.got) {
			return fmt.Errorf("got back %q, which is not a prefix of the %q it sent itself", trim(r.got), trim(want.self))
		}
	} else if !bytes.Equal(r.got, want.self) {
		return fmt.Errorf("got back %d bytes %q, want exactly the %d bytes %q it sent itself (oversize %v)", len(r.got), trim(r.got), len(want.self), trim(want.self), want.oversize)
	}
	// The relay has closed the connection, so every frame it parsed is
	// queued for A and B ahead of anything sent to them from now on.
	return nil
}

// pairStillWorks sends a token each way between A and B. Each side must
// receive exactly the frames the input addressed to it, in order, and the
// token: with one loop the token comes last (the input's frames were
// queued before it was sent); with several, frames from two senders on
// two loops have no order between them, so the token may come anywhere.
func (tg *fzTarget) pairStillWorks() error {
	if tg.loops > 1 {
		return tg.pairStillWorksAnyOrder()
	}
	conns := [2]*client.Conn{tg.a, tg.b}
	for i, to := range conns {
		from := conns[1-i]
		token := fmt.Sprintf("token %d from %08x", tg.round, from.ID())
		if err := from.Send(to.ID(), []byte(token)); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		to.SetReadDeadline(time.Now().Add(fzWait))
		for _, w := range tg.pending[i] {
			got, err := to.Recv()
			if err != nil {
				return fmt.Errorf("%08x: recv: %w", to.ID(), err)
			}
			if !bytes.Equal(got, w[:len(w)-1]) {
				return fmt.Errorf("%08x: got %q, want the input's frame %q", to.ID(), trim(got), trim(w))
			}
		}
		got, err := to.Recv()
		if err != nil {
			return fmt.Errorf("%08x: recv: %w", to.ID(), err)
		}
		if string(got) != token {
			return fmt.Errorf("%08x: got %q, want %q", to.ID(), trim(got), token)
		}
		to.SetReadDeadline(time.Time{})
	}
	tg.pending = [2][][]byte{}
	return nil
}

// pairStillWorksAnyOrder is pairStillWorks where the token may overtake
// the input's frames.
func (tg *fzTarget) pairStillWorksAnyOrder() error {
	conns := [2]*client.Conn{tg.a, tg.b}
	for i, to := range conns {
		from := conns[1-i]
		token := fmt.Sprintf("token %d from %08x", tg.round, from.ID())
		if err := from.Send(to.ID(), []byte(token)); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		to.SetReadDeadline(time.Now().Add(fzWait))
		want, sawToken := tg.pending[i], false
		for len(want) > 0 || !sawToken {
			got, err := to.Recv()
			if err != nil {
				return fmt.Errorf("%08x: recv: %w", to.ID(), err)
			}
			switch {
			case !sawToken && string(got) == token:
				sawToken = true
			case len(want) > 0 && bytes.Equal(got, want[0][:len(want[0])-1]):
				want = want[1:]
			case len(want) > 0:
				return fmt.Errorf("%08x: got %q, want the input's frame %q or the token", to.ID(), trim(got), trim(want[0]))
			default:
				return fmt.Errorf("%08x: got %q, want %q", to.ID(), trim(got), token)
			}
		}
		to.SetReadDeadline(time.Time{})
	}
	tg.pending = [2][][]byte{}
	return nil
}
