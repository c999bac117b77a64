package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/ringrelay/ringrelay/internal/frame"
)

// pingpong is P pairs (A, B). Each A keeps `window` frames in flight to its
// B; B sends every frame back unchanged; A checks it, records the round trip
// and sends the next one. Both directions count as delivered frames.
type pingpong struct {
	pairs, window int
	codec         *Codec

	a, b []*peer
	wg   sync.WaitGroup
}

func (w *pingpong) open(ctx context.Context, d *dialer) error {
	peers, err := d.dialMany(ctx, 2*w.pairs)
	if err != nil {
		return err
	}
	w.a, w.b = peers[:w.pairs], peers[w.pairs:]
	// Only A's index travels in payloads; B echoes it back unchanged.
	for i, p := range peers {
		p.index = uint32(i % w.pairs)
	}
	return nil
}

func (w *pingpong) conns() int { return len(w.a) + len(w.b) }

func (w *pingpong) start(m *meter) {
	// A window of small frames fits in a few KiB; 2000 connections with a
	// 64 KiB buffer each would make the generator itself heavy.
	chunk := min(readChunk, max(4<<10, 2*w.window*(w.codec.Size()+1)))
	for i := range w.a {
		a, b := w.a[i], w.b[i]
		a.in, b.in = frame.NewSplitter(chunk, frameLimit), frame.NewSplitter(chunk, frameLimit)
		w.wg.Go(func() { w.initiate(m, a, b) })
		w.wg.Go(func() { w.echo(m, b, a) })
	}
}

func (w *pingpong) finish(*meter) {
	closeAll(w.a)
	closeAll(w.b)
	w.wg.Wait()
}

// initiate is A's loop: it answers every frame that comes back with a new
// one, so exactly `window` frames stay in flight.
func (w *pingpong) initiate(m *meter, a, b *peer) {
	what := fmt.Sprintf("pingpong pair %d, A", a.index)
	win := uint64(w.window)
	sentAt := make([]int64, win) // by seq % window
	rtts := make([]int64, 0, win)
	order := NewOrder(a.index, 1)
	out := make([]byte, 0, w.window*(w.codec.Size()+frameOverhead))

	var seq, stamped uint64 // frames built so far, frames timestamped so far
	for ; seq < win; seq++ {
		out = appendFrame(out, b.id, w.codec, a.index, seq)
	}
	for {
		if len(out) > 0 {
			now := nanotime()
			for ; stamped < seq; stamped++ {
				sentAt[stamped%win] = now
			}
			if _, err := a.conn.Write(out); err != nil {
				m.ioError(what+" write", err)
				return
			}
		}
		err := a.in.Fill(a.conn)
		now := nanotime()
		out, rtts = out[:0], rtts[:0]
		bytes := 0
		for f, ok := a.in.Next(); ok; f, ok = a.in.Next() {
			s, derr := w.verify(order, f)
			if derr != nil {
				m.fail("%s: %v", what, derr)
				return
			}
			rtts = append(rtts, now-sentAt[s%win])
			bytes += len(f)
			out = appendFrame(out, b.id, w.codec, a.index, seq)
			seq++
		}
		m.delivered(len(rtts), bytes)
		m.recordRTT(rtts)
		if err != nil {
			m.ioError(what+" read", err)
			return
		}
	}
}

// verify checks one payload's integrity and its place in its sender's
// sequence, and returns its sequence number.
func (w *pingpong) verify(order *Order, f []byte) (seq uint64, err error) {
	sender, seq, err := w.codec.Decode(f)
	if err == nil {
		err = order.Check(sender, seq)
	}
	return seq, err
}

// echo is B's loop: every frame it gets goes back to A as it is, all the
// frames of one read in one write.
func (w *pingpong) echo(m *meter, b, a *peer) {
	what := fmt.Sprintf("pingpong pair %d, B", b.index)
	order := NewOrder(b.index, 1)
	out := make([]byte, 0, w.window*(w.codec.Size()+frameOverhead))
	for {
		err := b.in.Fill(b.conn)
		out = out[:0]
		n, bytes := 0, 0
		for f, ok := b.in.Next(); ok; f, ok = b.in.Next() {
			if _, derr := w.verify(order, f); derr != nil {
				m.fail("%s: %v", what, derr)
				return
			}
			out = binary.BigEndian.AppendUint32(out, a.id)
			out = append(out, f...)
			out = append(out, 0)
			n++
			bytes += len(f)
		}
		m.delivered(n, bytes)
		if len(out) > 0 {
			if _, werr := b.conn.Write(out); werr != nil {
				m.ioError(what+" write", werr)
				return
			}
		}
		if err != nil {
			m.ioError(what+" read", err)
			return
		}
	}
}
