package relay

import (
	"errors"
	"fmt"

	"github.com/ringrelay/ringrelay/cluster"
	"github.com/ringrelay/ringrelay/shard"
)

// Cluster mode: several relay nodes joined through NATS (package cluster).
// Each loop (Server) gets a remote: an outbox of frames for IDs of other
// nodes, which the bridge goroutine drains, and an inbox of frames from
// other nodes, which the bridge fills. Both are shard.Queues, so the loop
// never calls the NATS client and never waits for the bus:
//
//   - route() hands a frame whose ID belongs to another node to
//     sendRemote, which copies it into the outbox. A full outbox holds the
//     frame (in arrival order, behind any frame already held) and pauses
//     its sender; the bridge wakes the loop when it has drained enough,
//     and the loop sends the held frames again, oldest first, and resumes
//     the senders once every held frame is out.
//   - Every pass, pollRemote delivers what the inbox holds to this loop's
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
	remoteOutbox = 1 << 20
	remoteInbox  = 1 << 20
	// remoteBudget is how many bytes of inbox a pass delivers before it
	// lets the loop look at its sockets again.
	remoteBudget = 256 << 10
)

// remote is one loop's link to the other nodes. It belongs to the loop's
// goroutine, except the queues' other ends, which belong to the bridge.
type remote struct {
	scheme cluster.Scheme
	out    *shard.Queue // this loop -> bridge (cluster.Source)
	in     *shard.Queue // bridge -> this loop (cluster.Sink)
	ring   func()       // tells the bridge that out has frames

	// Frames the outbox refused, oldest first, their bytes in heldBuf,
	// and the senders paused for them (slot -> serial).
	held    []heldFrame
	heldBuf []byte
	paused  map[int]uint64

	deliverFn func(uint32, []byte)
}

type heldFrame struct {
	dest     uint32
	off, end int
}

// Remotes are the links of a process's loops to the bridge, one per
// Server, made by Join. Loops is what cluster.Start needs.
type Remotes struct {
	servers []*Server
	loops   cluster.Loops
}

// Join readies servers (the loops of one process, in loop order) for a
// cluster: each gets an outbox and an inbox, and draws its IDs with this
// node's index in the top bits. Call it before the servers run, then
// start the bridge with Loops and hand it to Attach.
func Join(servers []*Server, scheme cluster.Scheme) (*Remotes, error) {
	if err := scheme.Validate(); err != nil {
		return nil, err
	}
	if scheme.Bits == 0 {
		return nil, errors.New("relay: a cluster needs node-bits of at least 1")
	}
	rs := &Remotes{servers: servers}
	n := len(servers)
	rs.loops.Owner = func(id uint32) int { return shard.Owner(id, n) }
	rs.loops.Wake = func(k int) { servers[k].loop.Wake() }
	for _, s := range servers {
		if s.remote != nil {
			return nil, errors.New("relay: server already joined a cluster")
		}
		qc := shard.QueueConfig{Size: remoteOutbox, MaxPayload: s.cfg.MaxFrame + 1}
		out, err := shard.NewQueue(qc)
		if err != nil {
			return nil, fmt.Errorf("relay: outbox: %w", err)
		}
		qc.Size = remoteInbox
		in, err := shard.NewQueue(qc)
		if err != nil {
			return nil, fmt.Errorf("relay: inbox: %w", err)
		}
		r := &remote{scheme: scheme, out: out, in: in, ring: func() {}, paused: make(map[int]uint64)}
		r.deliverFn = s.deliverRemote
		s.remote = r
		// Every ID this loop hands out carries the node index.
		routes := s.routes
		routes.next = func() uint32 { return scheme.Stamp(routes.random()) }
		rs.loops.Out = append(rs.loops.Out, out)
		rs.loops.In = append(rs.loops.In, in)
	}
	return rs, nil
}

// Loops is what cluster.Start takes: the outboxes, inboxes, the owning
// loop of an ID and how to wake a loop.
func (rs *Remotes) Loops() cluster.Loops { return rs.loops }

// Attach tells every loop how to ring the bridge. Call it after
// cluster.Start and before the servers run.
func (rs *Remotes) Attach(b *cluster.Bridge) {
	for _, s := range rs.servers {
		s.remote.ring = b.Ring
	}
}

// isRemote reports whether route must hand dest to another node.
func (s *Server) isRemote(dest uint32) bool {
	return s.remote != nil && !s.remote.scheme.Local(dest)
}

// sendRemote queues one frame (payload and NUL) for an ID of another
// node. Whether the ID exists is the owning node's to find out.
func (s *Server) sendRemote(src *peer, dest uint32, frame []byte) {
	r := s.remote
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
	r.held = append(r.held, heldFrame{dest: dest, off: off, end: len(r.heldBuf)})
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

// pollRemote is the loop's part of the cluster each pass: deliver what
// came in, send what was held, hand the outbox to the bridge.
func (s *Server) pollRemote() {
	r := s.remote
	r.in.Drain(remoteBudget, r.deliverFn)
	if len(r.held) > 0 {
		s.sendHeld()
	}
	if r.out.Publish() {
		r.ring()
	}
	if r.in.Pending() {
		s.loop.Wake() // more came in than one pass delivers: no sleeping
	}
}

// sendHeld puts held frames into the outbox, oldest first, and resumes
// their senders once none is left.
func (s *Server) sendHeld() {
	r := s.remote
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

// deliverRemote hands one frame from another node to its destination on
// this loop, under this node's limits.
func (s *Server) deliverRemote(dest uint32, frame []byte) {
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
		// paused from here; the frame is delivered.
	}
	dc.Send(frame)
	s.counts.frames++
	s.counts.bytes += uint64(len(frame))
}
