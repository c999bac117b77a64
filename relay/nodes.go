package relay

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ringrelay/ringrelay/cluster"
	"github.com/ringrelay/ringrelay/shard"
)

// Cluster mode: several relay nodes joined through NATS (package cluster).
// Each loop (Server) gets a nodeLink: an outbox of frames for IDs of other
// nodes, which the bridge goroutine drains, and an inbox of frames from
// other nodes, which the bridge fills. Both are shard.Queues, so the loop
// never calls the NATS client and never waits for the bus:
//
//   - route() hands a frame whose ID belongs to another node to
//     sendToNode, which copies it into the outbox. A full outbox holds the
//     frame (in arrival order, behind any frame already held) and pauses
//     its sender; the bridge wakes the loop when it has drained enough,
//     and the loop sends the held frames again, oldest first, and resumes
//     the senders once every held frame is out.
//   - Every pass, pollNodes delivers what the inbox holds to this loop's
//     connections (an unknown ID is dropped and counted here, on the
//     owner), sends held frames again, and publishes the outbox and rings
//     the bridge.
//   - IDs carry the node index in their top bits (cluster.Scheme), so the
//     owning node is known from the 4-byte header alone.
//
// Across nodes the slow-consumer policy applies on the receiving node:
// drop and disconnect as for a local sender; under backpressure a remote
// sender cannot be paused, so its frames are delivered even over
// -max-queue (a destination that stops reading is still closed after
// -write-timeout).

// Queue sizes of one loop's link to the bridge. The outbox holds what
// this loop sends across between two bridge passes; the inbox what the
// bridge delivers between two loop passes (the bridge waits up to the
// cluster's SinkWait for room before it drops).
const (
	nodeOutbox = 1 << 20
	nodeInbox  = 1 << 20
	// nodeBudget is how many bytes of inbox a pass delivers before it
	// lets the loop look at its sockets again.
	nodeBudget = 256 << 10
	// nodeTrimEvery is how often a loop offers its outbox's ring back
	// (shard.Queue.Trim): one idle for a whole period is released.
	nodeTrimEvery = time.Second
)

// nodeLink is one loop's link to the other nodes. It belongs to the loop's
// goroutine, except the queues' other ends, which belong to the bridge.
type nodeLink struct {
	scheme cluster.Scheme
	out    *shard.Queue // this loop -> bridge (cluster.Source)
	in     *shard.Queue // bridge -> this loop (cluster.Sink)
	ring   func()       // tells the bridge that out has frames

	// Frames the outbox refused, oldest first, their bytes in heldBuf,
	// and the senders paused for them (slot -> serial).
	held    []nodeHeld
	heldBuf []byte
	paused  map[int]uint64

	deliverFn func(uint32, []byte)
	trimmed   time.Time    // when out was last offered to Trim
	released  atomic.Int64 // bytes of outbox ring given back by Trim, for tests
}

type nodeHeld struct {
	dest     uint32
	off, end int
}

// NodeLinks are the links of a process's loops to the bridge, one per
// Server, made by Join. Loops is what cluster.Start needs.
type NodeLinks struct {
	servers []*Server
	loops   cluster.Loops
}

// Join readies servers (the loops of one process, in loop order) for a
// cluster: each gets an outbox and an inbox, and draws its IDs with this
// node's index in the top bits. Call it before the servers run, then
// start the bridge with Loops and hand it to Attach.
func Join(servers []*Server, scheme cluster.Scheme) (*NodeLinks, error) {
	if err := scheme.Validate(); err != nil {
		return nil, err
	}
	if scheme.Bits == 0 {
		return nil, errors.New("relay: a cluster needs node-bits of at least 1")
	}
	rs := &NodeLinks{servers: servers}
	n := len(servers)
	rs.loops.Owner = func(id uint32) int { return shard.Owner(id, n) }
	rs.loops.Wake = func(k int) { servers[k].loop.Wake() }
	for k, s := range servers {
		if s.link != nil {
			return nil, errors.New("relay: server already joined a cluster")
		}
		qc := shard.QueueConfig{Size: nodeOutbox, MaxPayload: s.cfg.MaxFrame + 1}
		out, err := shard.NewQueue(qc)
		if err != nil {
			return nil, fmt.Errorf("relay: outbox: %w", err)
		}
		qc.Size = nodeInbox
		in, err := shard.NewQueue(qc)
		if err != nil {
			return nil, fmt.Errorf("relay: inbox: %w", err)
		}
		r := &nodeLink{scheme: scheme, out: out, in: in, ring: func() {}, paused: make(map[int]uint64)}
		r.deliverFn = s.deliverFromNode
		s.link = r
		// Every ID this loop hands out carries the node index, and is one
		// that this loop owns (shard.Owner hashes the whole ID, node bits
		// included); the table still checks it is not in use.
		routes := s.routes
		owns := func(id uint32) bool { return shard.Owner(id, n) == k }
		routes.next = func() uint32 { return scheme.Draw(routes.random, owns) }
		rs.loops.Out = append(rs.loops.Out, out)
		rs.loops.In = append(rs.loops.In, in)
	}
	return rs, nil
}

// Loops is what cluster.Start takes: the outboxes, inboxes, the owning
// loop of an ID and how to wake a loop.
func (rs *NodeLinks) Loops() cluster.Loops { return rs.loops }

// Attach tells every loop how to ring the bridge. Call it after
// cluster.Start and before the servers run.
func (rs *NodeLinks) Attach(b *cluster.Bridge) {
	for _, s := range rs.servers {
		s.link.ring = b.Ring
	}
}

// forOtherNode reports whether route must hand dest to another node.
func (s *Server) forOtherNode(dest uint32) bool {
	return s.link != nil && !s.link.scheme.Local(dest)
}

// sendToNode queues one frame (payload and NUL) for an ID of another
// node. Whether the ID exists is the owning node's to find out.
func (s *Server) sendToNode(src *peer, dest uint32, frame []byte) {
	r := s.link
	if dest == 0 {
		// No connection has ID 0, and a batch holding it would be
		// rejected whole by the receiver.
		s.counts.dropped[DropUnknownDest]++
		return
	}
	if len(r.held) == 0 && r.out.Put(dest, frame) {
		return
	}
	off := len(r.heldBuf)
	r.heldBuf = append(r.heldBuf, frame...)
	r.held = append(r.held, nodeHeld{dest: dest, off: off, end: len(r.heldBuf)})
	if src == nil || src.conn == nil {
		return // a sender that left: nobody to pause
	}
	if serial, ok := r.paused[src.conn.Slot()]; ok && serial == src.serial {
		return
	}
	r.paused[src.conn.Slot()] = src.serial
	src.blocked++
	if src.blocked == 1 {
		src.conn.PauseRead()
		s.counts.pauses++
	}
}

// pollNodes is the loop's part of the cluster each pass: deliver what
// came in, send what was held, hand the outbox to the bridge.
func (s *Server) pollNodes() {
	r := s.link
	r.in.Drain(nodeBudget, r.deliverFn)
	if len(r.held) > 0 {
		s.sendHeldToNode()
	}
	if r.out.Publish() {
		r.ring()
	}
	if r.in.Pending() {
		s.again = true // more came in than one pass delivers: no waiting
	}
	if s.now.Sub(r.trimmed) >= nodeTrimEvery {
		// The outbox's ring (this loop is its producer) goes back once it
		// carried nothing for a whole period; the bridge trims the inbox.
		r.trimmed = s.now
		r.released.Add(int64(r.out.Trim()))
	}
}

// sendHeldToNode puts held frames into the outbox, oldest first, and resumes
// their senders once none is left.
func (s *Server) sendHeldToNode() {
	r := s.link
	i := 0
	for ; i < len(r.held); i++ {
		h := r.held[i]
		if !r.out.Put(h.dest, r.heldBuf[h.off:h.end]) {
			break
		}
	}
	if i < len(r.held) {
		n := copy(r.held, r.held[i:])
		r.held = r.held[:n]
		return
	}
	r.held = r.held[:0]
	r.heldBuf = r.heldBuf[:0]
	if cap(r.heldBuf) > 4<<20 {
		r.heldBuf = nil // a burst of big frames passed: let it go
	}
	for slot, serial := range r.paused {
		sp := s.peers.at(slot)
		if sp.serial != serial || sp.conn == nil {
			continue
		}
		sp.blocked--
		if sp.blocked == 0 && sp.id != 0 && !s.draining {
			sp.conn.ResumeRead()
		}
	}
	clear(r.paused)
}

// deliverFromNode hands one frame from another node to its destination on
// this loop, under this node's limits.
func (s *Server) deliverFromNode(dest uint32, frame []byte) {
	slot, ok := s.routes.Lookup(dest)
	if !ok {
		s.counts.dropped[DropUnknownDest]++
		return
	}
	dp := s.peers.at(slot)
	dc := dp.conn
	if dc.Pending() >= s.cfg.MaxQueue {
		switch s.cfg.SlowConsumer {
		case Drop:
			s.counts.dropped[DropSlowConsumer]++
			return
		case Disconnect:
			s.kick(dp, ClosedSlow, "slow consumer over max-queue")
			return
		}
		// Backpressure: the sender is on another node and cannot be
		// paused from here. Frames are still delivered up to twice the
		// limit, so a burst towards a reader that is briefly behind is not
		// lost; beyond that they are dropped and counted, or a reader that
		// stopped would let remote senders grow its queue without bound.
		if dc.Pending() >= 2*s.cfg.MaxQueue {
			s.counts.dropped[DropRemoteOverLimit]++
			return
		}
	}
	dc.Send(frame)
	s.counts.frames++
	s.counts.bytes += uint64(len(frame))
}
