package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"github.com/ringrelay/ringrelay/internal/frame"
	"github.com/ringrelay/ringrelay/internal/payload"
)

// pingpong is P pairs (A, B). Each A keeps `window` frames in flight to its
// B; B sends every frame back unchanged; A checks it, records the round trip
// and sends the next one. Both directions count as delivered frames.
type pingpong struct {
	pairs, window, workers int
	codec                  *Codec
	pairing                [][2]int // the connection numbers of each pair's A and B
	n                      int
	engineTraffic
}

func (w *pingpong) open(ctx context.Context, d *dialer) error {
	peers, err := d.dialMany(ctx, 2*w.pairs)
	if err != nil {
		return err
	}
	w.n = len(peers)
	pairs := make([]*pair, w.pairs)
	end := make([]struct {
		p *pair
		a bool
	}, len(peers))
	for i, ends := range w.pairing {
		a, b := ends[0], ends[1]
		pairs[i] = newPair(w.codec, uint32(i), w.window, peers[a].id, peers[b].id)
		end[a].p, end[a].a = pairs[i], true
		end[b].p = pairs[i]
	}
	// A window of small frames fits in a few KiB; 2000 connections with a
	// 64 KiB buffer each would make the generator itself heavy.
	chunk := min(readChunk, max(4<<10, 2*w.window*(w.codec.Size()+1)))
	return w.build(peers, w.workers, func(i int, c *gconn) int {
		p := end[i].p
		c.in = frame.NewSplitter(chunk, frameLimit)
		c.out = make([]byte, 0, w.window*(w.codec.Size()+frameOverhead))
		if end[i].a {
			c.role = (*pingA)(p)
		} else {
			c.role = (*pingB)(p)
		}
		return int(p.index) // both ends of a pair on one worker: they share the pair
	})
}

func (w *pingpong) conns() int { return w.n }

// pair is the state of one A and its B. Both ends run on the same worker,
// which is what lets them share it.
//
// Every frame is checked where it arrives, B and then A, for content and
// order: it must be byte for byte the payload A built for the next sequence
// number that end expects. A keeps the payloads in flight (window of them)
// for that, so verifying costs one comparison rather than a decode. Only a
// frame that does not match is decoded, to say what is wrong with it.
type pair struct {
	codec        *Codec
	index        uint32 // A's sender index, the one payloads carry
	toA, toB     uint32 // the server-assigned IDs
	win          uint64
	size         int
	inFlight     []byte  // payload of seq s at (s % win) * size
	sentAt       []int64 // by seq % win
	seq          uint64  // frames A has sent
	nextA, nextB uint64  // the seq each end expects next
	quiet
}

func newPair(c *Codec, index uint32, window int, toA, toB uint32) *pair {
	win := uint64(window)
	return &pair{codec: c, index: index, toA: toA, toB: toB, win: win, size: c.Size(),
		inFlight: make([]byte, window*c.Size()), sentAt: make([]int64, win)}
}

// sent is the payload of seq as A sent it; valid until A sends seq+win.
func (p *pair) sent(seq uint64) []byte {
	off := int(seq%p.win) * p.size
	return p.inFlight[off : off+p.size]
}

// check verifies that f is the payload of seq; what names the end.
func (p *pair) check(f []byte, seq uint64) error {
	if bytes.Equal(f, p.sent(seq)) {
		return nil
	}
	sender, got, err := p.codec.Decode(f)
	switch {
	case err != nil:
		return err
	case sender != p.index:
		return fmt.Errorf("%w: index %d, want %d", ErrSender, sender, p.index)
	case got != seq:
		return fmt.Errorf("%w: sender %d sent seq %d, want %d", ErrOrder, sender, got, seq)
	}
	return fmt.Errorf("%w: sender %d seq %d is well formed but not the payload sent", payload.ErrFiller, sender, seq)
}

// pingA answers every frame that comes back with a new one, so exactly
// `window` frames stay in flight.
type pingA pair

func (a *pingA) describe() string { return fmt.Sprintf("pingpong pair %d, A", a.index) }

func (a *pingA) opening(c *gconn, now int64) {
	for a.seq < a.win {
		a.send(c, now)
	}
}

func (a *pingA) send(c *gconn, now int64) {
	c.out = appendFrame(c.out, a.toB, a.codec, a.index, a.seq)
	end := len(c.out) - 1 // before the 0x00
	copy((*pair)(a).sent(a.seq), c.out[end-a.size:end])
	a.sentAt[a.seq%a.win] = now
	a.seq++
}

func (a *pingA) received(w *worker, c *gconn, now int64) error {
	for f, ok := c.in.Next(); ok; f, ok = c.in.Next() {
		if err := (*pair)(a).check(f, a.nextA); err != nil {
			return err
		}
		w.roundTrip(now - a.sentAt[a.nextA%a.win])
		w.delivered(len(f))
		a.nextA++
		a.send(c, now)
	}
	return nil
}

// pingB sends every frame back to A as it is, all the frames of one read
// in one write.
type pingB pair

func (b *pingB) describe() string { return fmt.Sprintf("pingpong pair %d, B", b.index) }

func (b *pingB) received(w *worker, c *gconn, _ int64) error {
	for f, ok := c.in.Next(); ok; f, ok = c.in.Next() {
		if err := (*pair)(b).check(f, b.nextB); err != nil {
			return err
		}
		w.delivered(len(f))
		b.nextB++
		c.out = binary.BigEndian.AppendUint32(c.out, b.toA)
		c.out = append(c.out, f...)
		c.out = append(c.out, 0)
	}
	return nil
}

// verify checks one payload's integrity and its place in its sender's
// sequence, and returns its sequence number.
func verify(c *Codec, order *Order, f []byte) (seq uint64, err error) {
	sender, seq, err := c.Decode(f)
	if err == nil {
		err = order.Check(sender, seq)
	}
	return seq, err
}
