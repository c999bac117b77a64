package relay

// Delivery: the slow-consumer policy, applied once, at the destination's
// loop, to every frame whatever its origin (this loop, another loop,
// another node). Under backpressure the frame that takes a destination
// over -max-queue is still delivered (it was already read), and its
// senders are asked to pause until the destination drains below half its
// limit:
//
//   - a sender on this loop is paused here at once (pauseFor);
//   - another loop, or the other nodes, are sent a pause record naming the
//     destination (ask); each pauses its connections that send to it
//     (hold.go) until the resume record comes.
//
// Across nodes the records travel at most once (NATS core), so a pause
// there is a lease: the destination's loop renews it every nodeRenew
// while it stays over its limit, and the senders' loops let it lapse
// after nodeLease without a renewal (a lost resume, a node that died). A
// lost pause is covered by a hard bound: frames from other nodes are
// dropped, and counted, once the destination holds nodeSlack bytes past
// its limit.

import "time"

// Leases of pauses across nodes.
const (
	// nodeRenew is how often a destination over its limit repeats its
	// pause to the other nodes.
	nodeRenew = time.Second
	// nodeLease is how long a sender's loop keeps a pause from another
	// node without a renewal: three renewals, so one lost record does not
	// release a sender that should wait.
	nodeLease = 3 * nodeRenew
	// nodeSlack is how far past -max-queue frames from other nodes are
	// still queued for one destination: what can be in flight when a
	// pause lands. Most of it can sit in the NATS subscription's buffer
	// of this node (its pending limit, 64 MiB by default: a loaded node
	// falls that far behind a flood, measured in the cluster tests), the
	// rest in this loop's inbox, the senders' outboxes and the batches
	// between them.
	nodeSlack = 64<<20 + nodeInbox + 4*nodeOutbox
)

// asked is what one destination of this loop asked other hops for: which
// loops, and whether the other nodes (hop n), pause their senders to it.
type asked struct {
	id      uint32
	serial  uint64
	hops    []int
	renewed instant // when the nodes were last told; 0: not asked
}

// deliver queues frame on dp's connection under the slow-consumer policy.
// fromNode says the frame came from another node, whose senders a pause
// may not have reached yet (nodeSlack). It reports whether dp's senders
// must pause (backpressure, dp over its limit).
func (s *Server) deliver(dp *peer, frame []byte, fromNode bool) bool {
	dc := dp.conn
	if q := dc.Pending(); q >= s.cfg.MaxQueue {
		switch {
		case s.cfg.SlowConsumer == Drop:
			s.counts.dropped[DropSlowConsumer]++
			return false
		case s.cfg.SlowConsumer == Disconnect:
			s.kick(dp, ClosedSlow, "slow consumer over max-queue")
			return false
		case fromNode && q >= s.cfg.MaxQueue+nodeSlack:
			s.counts.dropped[DropRemoteOverLimit]++
			return true
		}
	}
	dc.Send(frame)
	dp.tally.framesOut++
	s.counts.frames++
	s.counts.bytes += uint64(len(frame))
	return s.cfg.SlowConsumer == Backpressure && dc.Pending() > s.cfg.MaxQueue
}

// pauseFor stops reading from src, a connection of this loop, until dst
// drains below half its limit.
func (s *Server) pauseFor(src, dst *peer) {
	slot := dst.conn.Slot()
	ws := s.waiting[slot]
	for _, w := range ws {
		if w.serial == src.serial {
			return
		}
	}
	s.waiting[slot] = append(ws, waiter{slot: src.conn.Slot(), serial: src.serial})
	s.block(src)
	dst.conn.NotifyDrained(s.cfg.MaxQueue / 2)
}

// ask tells hop h (another loop, or the other nodes) to pause its senders
// to dp until dp drains below half its limit.
func (s *Server) ask(dp *peer, h int) {
	slot := dp.conn.Slot()
	a := s.asked[slot]
	if a == nil || a.serial != dp.serial {
		a = &asked{id: dp.id, serial: dp.serial}
		s.asked[slot] = a
	}
	for _, o := range a.hops {
		if o == h {
			return
		}
	}
	a.hops = append(a.hops, h)
	if s.draining {
		// Reads are stopped everywhere; a pause would only be a record
		// that some loop, maybe gone already, has to drain.
		return
	}
	if h == s.n {
		a.renewed = s.clock
	}
	s.sendControl(h, ctlPause, dp.id)
	dp.conn.NotifyDrained(s.cfg.MaxQueue / 2)
}

// renewNodePauses repeats, every nodeRenew, the pauses this loop's
// destinations asked of the other nodes: they are leases.
func (s *Server) renewNodePauses() {
	if s.draining {
		return
	}
	for _, a := range s.asked {
		if a.renewed != 0 && s.since(a.renewed) >= nodeRenew {
			a.renewed = s.clock
			s.sendControl(s.n, ctlPause, a.id)
		}
	}
}

// release resumes every sender waiting on p, wherever it is: p drained
// below half its limit, or left.
func (s *Server) release(p *peer) {
	if p.conn == nil {
		return
	}
	if a := s.asked[p.conn.Slot()]; a != nil {
		delete(s.asked, p.conn.Slot())
		if a.serial == p.serial && !s.draining {
			for _, h := range a.hops {
				s.sendControl(h, ctlResume, a.id)
			}
		}
	}
	slot := p.conn.Slot()
	ws, ok := s.waiting[slot]
	if !ok {
		return
	}
	for _, w := range ws {
		sp := s.peers.at(w.slot)
		if sp.serial != w.serial || sp.conn == nil {
			continue
		}
		s.unblock(sp)
	}
	// The emptied list stays while p is open, so that its next pause
	// does not allocate; it goes when p leaves.
	clear(ws)
	if p.id == 0 {
		delete(s.waiting, slot)
	} else {
		s.waiting[slot] = ws[:0]
	}
}
