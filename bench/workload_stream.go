package bench

import (
	"context"
	"fmt"

	"github.com/ringrelay/ringrelay/internal/frame"
)

// stream is groups of senders, each group sending to its own receiver as
// fast as the server lets them: the flood workload is one group of one
// sender per pair, the fanin workload one group of many senders. Each
// receiver checks its senders' frames for integrity and order, and the
// receivers' counts are what the point reports.
type stream struct {
	groups  []streamGroup
	workers int
	codec   *Codec
	label   string
	n       int
	engineTraffic
}

// streamGroup names, by connection number, one receiver and its senders.
type streamGroup struct {
	receiver int
	senders  []int
}

// floodGroups turns pairs (sender, receiver) into one group per pair.
func floodGroups(pairs [][2]int) []streamGroup {
	groups := make([]streamGroup, len(pairs))
	for i, p := range pairs {
		groups[i] = streamGroup{receiver: p[1], senders: []int{p[0]}}
	}
	return groups
}

// faninGroup is senders connections 0 .. senders-1 sending to connection
// senders.
func faninGroup(senders int) streamGroup {
	g := streamGroup{receiver: senders, senders: make([]int, senders)}
	for i := range g.senders {
		g.senders[i] = i
	}
	return g
}

// streamEnd is what connection i of a stream is.
type streamEnd struct {
	group  int
	sender int // index among all the workload's senders; -1 for a receiver
	slot   int // the connection's place in group order, for spreading over workers
}

func (w *stream) open(ctx context.Context, d *dialer) error {
	total := 0
	for _, g := range w.groups {
		total += 1 + len(g.senders)
	}
	peers, err := d.dialMany(ctx, total)
	if err != nil {
		return err
	}
	w.n = len(peers)
	ends := make([]streamEnd, total)
	first := make([]uint32, len(w.groups)) // each group's first sender index
	// next is the next sender index, slot the next connection slot.
	next, slot := 0, 0
	for gi, g := range w.groups {
		first[gi] = uint32(next)
		ends[g.receiver] = streamEnd{group: gi, sender: -1, slot: slot}
		slot++
		for _, c := range g.senders {
			ends[c] = streamEnd{group: gi, sender: next, slot: slot}
			next++
			slot++
		}
	}
	perWrite := max(1, writeBatch/(w.codec.Size()+frameOverhead))
	return w.build(peers, w.workers, func(i int, c *gconn) int {
		e := ends[i]
		g := w.groups[e.group]
		if e.sender < 0 {
			c.in = frame.NewSplitter(readChunk, frameLimit)
			c.role = &receiver{codec: w.codec, order: NewOrder(first[e.group], len(g.senders)), what: w.label + " receiver"}
		} else {
			c.stream = true
			c.out = make([]byte, 0, perWrite*(w.codec.Size()+frameOverhead))
			c.role = &sender{codec: w.codec, to: peers[g.receiver].id, index: uint32(e.sender), perWrite: perWrite, what: w.label + " sender"}
		}
		return w.worker(e)
	})
}

// worker spreads the connections over the workers. With one group (flood
// of one pair, fanin) the receiver has worker 0 to itself and the senders
// share the others; with several, connections take the workers in turn,
// group by group.
func (w *stream) worker(e streamEnd) int {
	if len(w.groups) > 1 || w.workers <= 1 {
		return e.slot
	}
	if e.sender < 0 {
		return 0
	}
	return 1 + e.sender%(w.workers-1)
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
