package bench

import (
	"context"
	"fmt"

	"github.com/ringrelay/ringrelay/internal/frame"
)

// stream is N senders sending to one receiver as fast as the server lets
// them: the flood workload with one sender, the fanin workload with many.
// The receiver checks every sender's frames for integrity and order, and
// its count is what the point reports.
type stream struct {
	senders, workers int
	codec            *Codec
	label            string
	n                int
	engineTraffic
}

func (w *stream) open(ctx context.Context, d *dialer) error {
	peers, err := d.dialMany(ctx, w.senders+1) // the senders, then the receiver
	if err != nil {
		return err
	}
	w.n = len(peers)
	to := peers[w.senders].id
	perWrite := max(1, writeBatch/(w.codec.Size()+frameOverhead))
	return w.build(peers, w.workers, func(i int, c *gconn) int {
		if i == w.senders {
			c.in = frame.NewSplitter(readChunk, frameLimit)
			c.role = &receiver{codec: w.codec, order: NewOrder(0, w.senders), what: w.label + " receiver"}
			return 0
		}
		c.stream = true
		c.out = make([]byte, 0, perWrite*(w.codec.Size()+frameOverhead))
		c.role = &sender{codec: w.codec, to: to, index: uint32(i), perWrite: perWrite, what: w.label + " sender"}
		if w.workers > 1 {
			return 1 + i%(w.workers-1) // the receiver has worker 0 to itself
		}
		return 0
	})
}

func (w *stream) conns() int { return w.n }

// sender sends frames numbered from 0, as fast as its socket takes them,
// several frames per write.
type sender struct {
	quiet
	codec     *Codec
	to, index uint32
	perWrite  int
	seq       uint64
	what      string
}

func (s *sender) describe() string { return fmt.Sprintf("%s %d", s.what, s.index) }

func (s *sender) refill(c *gconn) {
	for range s.perWrite {
		c.out = appendFrame(c.out, s.to, s.codec, s.index, s.seq)
		s.seq++
	}
}

// receiver verifies every frame against its sender's sequence and counts it.
type receiver struct {
	quiet
	codec *Codec
	order *Order
	what  string
}

func (r *receiver) describe() string { return r.what }

func (r *receiver) received(w *worker, c *gconn, _ int64) error {
	for f, ok := c.in.Next(); ok; f, ok = c.in.Next() {
		if _, err := verify(r.codec, r.order, f); err != nil {
			return err
		}
		w.delivered(len(f))
	}
	return nil
}
