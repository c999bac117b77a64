package relay

import (
	"bytes"
	"encoding/binary"

	"github.com/ringrelay/ringrelay/internal/frame"
)

// Holding and pausing, on the sender's side. Backpressure stops a sender
// reading for one of two reasons, both counted in peer.blocked, and block
// and unblock are the only places that pause and resume its reads for it
// (shutdown and lame duck stop a connection's reads for good, and never
// resume them):
//
//   - a bounded hop refused one of its frames (hold): the queue towards
//     another loop, or the outbox towards the bridge, was full. The sender
//     keeps that frame and the unparsed rest of its read, in order, and is
//     listed under the hop; when the hop has room (Port.Writable for a
//     loop, the outbox's room signal for the bridge) the held bytes are
//     parsed and routed again, and reading resumes. A sender that closes
//     while holding leaves its complete frames behind as orphans, which go
//     out in order when the hop has room, as its EOF comes after its data.
//   - a destination elsewhere asked for a pause (wait): the destination's
//     loop sent a pause record (deliver.go); each connection of this loop
//     that sends to that destination afterwards sends its frame and then
//     waits, listed under the destination, until the resume record comes,
//     or, for a pause from another node, until its lease lapses.

// holds is one loop's record of what its hops refused.
type holds struct {
	// bytes holds, by slot, the refused frame (header included) and the
	// unparsed rest of its read, plus what was read after it.
	bytes map[int][]byte
	// stalled lists, by hop, the senders whose frame that hop refused.
	stalled [][]waiter
	// orphans lists, by hop, frames of held senders that have since closed.
	orphans   [][]orphan
	orphanAny int
}

type orphan struct {
	dest  uint32
	frame []byte
}

func (h *holds) init(hops int) {
	h.bytes = make(map[int][]byte)
	h.stalled = make([][]waiter, hops)
	h.orphans = make([][]orphan, hops)
}

// holding reports whether this loop keeps any frame a hop refused.
func (s *Server) holding() bool {
	return len(s.holds.bytes) > 0 || s.holds.orphanAny > 0 || s.ctl.any > 0
}

// remoteWait is a destination elsewhere that asked this loop to pause its
// senders, and the senders paused for it.
type remoteWait struct {
	waiters []waiter
	lease   instant // when a pause from another node lapses; 0: from a loop, no lease
}

// block adds one reason for src not to read.
func (s *Server) block(src *peer) {
	src.blocked++
	if src.blocked == 1 {
		src.conn.PauseRead()
		s.counts.pauses++
	}
}

// unblock removes one reason; reading resumes when none is left.
func (s *Server) unblock(p *peer) {
	p.blocked--
	if p.blocked == 0 && p.id != 0 && !s.draining {
		p.conn.ResumeRead()
	}
}

// hold keeps frame (for dest, refused by hop h) and the unparsed rest of
// the read on src, and pauses src until h has room.
func (s *Server) hold(src *peer, h int, dest uint32, fr, rest []byte) {
	buf := make([]byte, 0, frame.HeaderLen+len(fr)+len(rest))
	buf = binary.BigEndian.AppendUint32(buf, dest)
	buf = append(buf, fr...)
	buf = append(buf, rest...)
	slot := src.conn.Slot()
	s.holds.bytes[slot] = buf
	s.counts.received-- // counted again when parsed anew
	src.tally.framesIn--
	src.held = true
	s.holds.stalled[h] = append(s.holds.stalled[h], waiter{slot: slot, serial: src.serial})
	s.block(src)
}

// stalledOn reports whether anything waits for room on hop h.
func (s *Server) stalledOn(h int) bool {
	return len(s.holds.stalled[h]) > 0 || len(s.holds.orphans[h]) > 0
}

// writable runs when hop h has room again: the orphans for it go first,
// then every sender that held frames for it routes them (and may hold
// again).
func (s *Server) writable(h int) {
	if len(s.holds.orphans[h]) > 0 && !s.sendOrphans(h) {
		return // still full: h will have room again later
	}
	ws := s.holds.stalled[h]
	s.holds.stalled[h] = nil
	for _, w := range ws {
		p := s.peers.at(w.slot)
		if p.serial != w.serial || p.conn == nil || !p.held {
			continue
		}
		buf := s.holds.bytes[w.slot]
		delete(s.holds.bytes, w.slot)
		p.held = false
		if p.id != 0 {
			s.feed(p, buf)
		}
		s.unblock(p)
	}
}

// orphan routes what a held sender that closed had read. The held bytes
// start at a frame boundary; a trailing partial frame is discarded, as the
// parser would at EOF. Frames for a full hop wait in holds.orphans.
func (s *Server) orphan(p *peer) {
	slot := p.conn.Slot()
	buf := s.holds.bytes[slot]
	delete(s.holds.bytes, slot)
	p.held = false
	s.counts.received-- // the first frame was counted when it was held
	pr := NewParser(s.cfg.MaxFrame)
	for len(buf) > 0 {
		n, dest, fr, ok, err := pr.Next(buf)
		buf = buf[n:]
		if err != nil {
			return
		}
		if !ok {
			continue
		}
		s.counts.received++
		if h := s.where(dest); h >= 0 && len(s.holds.orphans[h]) > 0 {
			s.keepOrphan(h, dest, fr) // behind those that wait
			continue
		}
		if h := s.forward(nil, dest, fr); h >= 0 {
			s.keepOrphan(h, dest, fr)
		}
	}
}

func (s *Server) keepOrphan(h int, dest uint32, fr []byte) {
	s.holds.orphans[h] = append(s.holds.orphans[h], orphan{dest, bytes.Clone(fr)})
	s.holds.orphanAny++
}

// sendOrphans puts the frames that wait for hop h on it, in order, and
// reports whether all went.
func (s *Server) sendOrphans(h int) bool {
	pend := s.holds.orphans[h]
	i := 0
	for i < len(pend) && s.put(h, pend[i].dest, pend[i].frame) {
		i++
	}
	s.holds.orphanAny -= i
	clear(pend[:i])
	s.holds.orphans[h] = pend[i:]
	return len(s.holds.orphans[h]) == 0
}

// wait pauses src until the destination elsewhere that rw stands for
// resumes.
func (s *Server) wait(src *peer, rw *remoteWait) {
	for _, w := range rw.waiters {
		if w.serial == src.serial {
			return
		}
	}
	rw.waiters = append(rw.waiters, waiter{slot: src.conn.Slot(), serial: src.serial})
	s.block(src)
}

// paused records that dest, on hop h, asked for a pause. A pause from
// another node is a lease, renewed by every repeat.
func (s *Server) paused(h int, dest uint32) {
	rw := s.remote[dest]
	if rw == nil {
		rw = new(remoteWait)
		s.remote[dest] = rw
	}
	if h == s.n {
		rw.lease = s.clock + instant(nodeLease)
	}
}

// resumed releases the senders paused for dest.
func (s *Server) resumed(dest uint32) {
	rw := s.remote[dest]
	if rw == nil {
		return
	}
	delete(s.remote, dest)
	for _, w := range rw.waiters {
		p := s.peers.at(w.slot)
		if p.serial == w.serial && p.conn != nil {
			s.unblock(p)
		}
	}
}

// expireLeases resumes the senders of every pause from another node whose
// lease lapsed: its resume was lost, or its node is gone.
func (s *Server) expireLeases() {
	for dest, rw := range s.remote {
		if rw.lease != 0 && s.clock >= rw.lease {
			s.counts.leasesLapsed++
			s.resumed(dest)
		}
	}
}
