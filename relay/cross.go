package relay

import (
	"bytes"
	"encoding/binary"

	"golang.org/x/sys/unix"

	"github.com/ringrelay/ringrelay/shard"
)

// Frames between loops.
//
// The loop that owns a connection is a function of its ID
// (shard.Owner(id, N)): each loop draws the IDs of its own connections
// from shard.IDs, which only yields IDs it owns. A frame whose
// destination another loop owns is copied, whole, into the queue towards
// that loop (Port.Send) and delivered there when that loop drains its
// queues, once per pass, at most drainBudget bytes per source. Whether
// the destination exists is decided by its own loop at that moment: a
// frame for an ID that left (or never existed) is dropped and counted
// there, so it never reaches a later connection in the same slot.
//
// Order and whole frames: a sender lives on one loop and a destination on
// one loop, so every frame from one to the other passes through the same
// FIFO queue, each as one record, and is appended to the destination's
// output in one piece.
//
// A record with destination ID 0 (which no connection ever has, and which
// a frame addressed to 0 never reaches: it is dropped on the sender's
// loop) is a control record between loops:
//
//   - ctlPause d: loop j tells loop i that destination d (on j) is over
//     MaxQueue under the backpressure policy. Loop i pauses every one of
//     its connections that sends to d from then on, right after queueing
//     that frame, and lists it under d.
//   - ctlResume d: d drained below half of MaxQueue, or left; loop i
//     resumes the connections listed under d.
//   - ctlAdopt fd: the placing loop (0) gives this loop an accepted socket.
//
// Only the senders of the slow destination pause; frames between other
// pairs keep flowing through the same queues, which the destination
// always drains (delivering over MaxQueue what was already sent, exactly
// as a single loop delivers the frame that crossed the limit). What
// crosses before a pause takes effect is bounded by the queue.
//
// A full queue pauses the sender too: the frame it refused and the rest
// of that read are kept on the sender (held), which stops reading; when
// the queue has room (Port.Writable) the held bytes are parsed and routed
// again, in order, and reading resumes. No loop ever waits for another.
//
// Control records that find their queue full wait, in order, in a per
// loop list and go out in a later pass; they are never dropped.

const (
	ctlPause byte = iota + 1
	ctlResume
	ctlAdopt
)

// drainBudget is about how many bytes a loop takes from each other loop's
// queue per pass (at least one frame): a busy source cannot starve the
// others, nor the loop's own sockets. It is one default ring's worth.
const drainBudget = 1 << 20

// cross is a Server's state for the other loops; nil with one loop.
type cross struct {
	g    *Group
	k, n int
	port *shard.Port
	ids  *shard.IDs

	// As a source: destinations on other loops that asked for a pause,
	// with the senders of this loop paused for each.
	remote map[uint32]*[]waiter
	// As a source: senders holding frames a full queue refused, by
	// destination loop, and their held bytes by slot.
	stalled [][]waiter
	held    map[int][]byte
	// Frames that senders which have since closed had read, waiting for
	// room in the queue towards their loop, by destination loop.
	orphans   [][]orphan
	orphanAny int
	// As a destination: the loops asked to pause for one of this loop's
	// connections, by slot.
	paused map[int]*remotePause
	// Control records waiting for room, by destination loop.
	ctl    [][]ctlRecord
	ctlAny int

	// Placement (loop 0 only): connections handed to each loop so far.
	placed []uint64

	// quiet: shutting down, this loop will never send into the mesh
	// again and all it sent has been drained (see pass). Once set it
	// stays set; the Group's copy is what the other loops read.
	quiet bool

	deliverFn func(src int, dest uint32, payload []byte)
	resumeFn  func(dst int)
}

type orphan struct {
	dest  uint32
	frame []byte
}

type ctlRecord struct {
	op  byte
	arg uint32
}

type remotePause struct {
	id     uint32
	serial uint64
	loops  []int
}

func newCross(g *Group, s *Server, k int) *cross {
	ids, err := shard.NewIDs(g.n, k)
	if err != nil {
		panic(err) // k < n by construction
	}
	x := &cross{
		g:       g,
		k:       k,
		n:       g.n,
		port:    g.mesh.Port(k),
		ids:     ids,
		remote:  make(map[uint32]*[]waiter),
		stalled: make([][]waiter, g.n),
		held:    make(map[int][]byte),
		paused:  make(map[int]*remotePause),
		ctl:     make([][]ctlRecord, g.n),
		orphans: make([][]orphan, g.n),
	}
	if k == 0 {
		x.placed = make([]uint64, g.n)
	}
	x.port.SetRinger(loopRinger{self: g.loops[k], loops: g.loops})
	x.deliverFn = s.deliverRemote
	x.resumeFn = s.queueWritable
	s.routes = NewRoutesFrom(ids.Next)
	return x
}

// sendRemote hands a frame for dest, which loop o owns, to o's queue. It
// reports false when the queue is full: the caller holds the frame.
func (s *Server) sendRemote(src *peer, o int, dest uint32, frame []byte) bool {
	x := s.x
	if !x.port.Send(o, dest, frame) {
		return false
	}
	s.counts.crossOut++
	if len(x.remote) > 0 {
		if ws := x.remote[dest]; ws != nil {
			s.wait(src, ws)
		}
	}
	return true
}

// hold keeps frame (for dest, refused by loop o's full queue) and the
// unparsed rest of the read on src, and pauses src until o has room.
func (s *Server) hold(src *peer, o int, dest uint32, frame, rest []byte) {
	x := s.x
	buf := make([]byte, 0, 4+len(frame)+len(rest))
	buf = binary.BigEndian.AppendUint32(buf, dest)
	buf = append(buf, frame...)
	buf = append(buf, rest...)
	slot := src.conn.Slot()
	x.held[slot] = buf
	s.counts.received-- // counted again when parsed anew
	src.held = true
	x.stalled[o] = append(x.stalled[o], waiter{slot: slot, serial: src.serial})
	s.block(src)
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

// wait pauses src until the remote destination whose waiters are ws
// resumes.
func (s *Server) wait(src *peer, ws *[]waiter) {
	for _, w := range *ws {
		if w.serial == src.serial {
			return
		}
	}
	*ws = append(*ws, waiter{slot: src.conn.Slot(), serial: src.serial})
	s.block(src)
}

// queueWritable runs when the queue towards loop o has room again: every
// sender that held frames for it routes them now (and may hold again).
func (s *Server) queueWritable(o int) {
	x := s.x
	if len(x.orphans[o]) > 0 && !s.sendOrphans(o) {
		return // still full: Writable names o again when it has room
	}
	ws := x.stalled[o]
	x.stalled[o] = nil
	for _, w := range ws {
		p := s.peers.at(w.slot)
		if p.serial != w.serial || p.conn == nil || !p.held {
			continue
		}
		buf := x.held[w.slot]
		delete(x.held, w.slot)
		p.held = false
		if p.id != 0 {
			s.feed(p, buf)
		}
		s.unblock(p)
	}
}

// orphan routes what a held sender that closed had read: a sender's EOF
// comes after its data, which is delivered as on one loop. The held bytes
// start at a frame boundary; a trailing partial frame is discarded, as
// the parser would at EOF. Frames for a full queue wait in x.orphans.
func (s *Server) orphan(p *peer) {
	x := s.x
	slot := p.conn.Slot()
	buf := x.held[slot]
	delete(x.held, slot)
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
		if o := shard.Owner(dest, x.n); dest != 0 && o != x.k && !s.forOtherNode(dest) {
			if len(x.orphans[o]) > 0 || !x.port.Send(o, dest, fr) {
				x.orphans[o] = append(x.orphans[o], orphan{dest, bytes.Clone(fr)})
				x.orphanAny++
				continue
			}
			s.counts.crossOut++
			continue
		}
		s.route(nil, dest, fr)
	}
}

// sendOrphans sends the frames that wait for loop o, in order, and
// reports whether all went.
func (s *Server) sendOrphans(o int) bool {
	x := s.x
	pend := x.orphans[o]
	i := 0
	for i < len(pend) && x.port.Send(o, pend[i].dest, pend[i].frame) {
		i++
	}
	x.orphanAny -= i
	s.counts.crossOut += uint64(i)
	clear(pend[:i])
	x.orphans[o] = pend[i:]
	return len(x.orphans[o]) == 0
}

// deliverRemote handles one record another loop sent here.
func (s *Server) deliverRemote(src int, dest uint32, payload []byte) {
	if dest == shard.ControlDest {
		s.control(src, payload)
		return
	}
	s.counts.crossIn++
	slot, ok := s.routes.Lookup(dest)
	if !ok {
		s.counts.dropped[DropUnknownDest]++
		return
	}
	dp := s.peers.at(slot)
	if s.deliver(dp, payload) {
		s.pauseRemote(src, dp)
	}
}

// pauseRemote asks loop src to pause its senders to dp.
func (s *Server) pauseRemote(src int, dp *peer) {
	x := s.x
	slot := dp.conn.Slot()
	rp := x.paused[slot]
	if rp == nil || rp.serial != dp.serial {
		rp = &remotePause{id: dp.id, serial: dp.serial}
		x.paused[slot] = rp
	}
	for _, l := range rp.loops {
		if l == src {
			return
		}
	}
	rp.loops = append(rp.loops, src)
	if s.draining {
		// Reads are stopped everywhere; a pause would only be a record
		// that some loop, maybe gone already, has to drain.
		return
	}
	s.sendControl(src, ctlPause, dp.id)
	dp.conn.NotifyDrained(s.cfg.MaxQueue / 2)
}

// releaseRemote tells the loops paused for p that it drained or left.
func (s *Server) releaseRemote(p *peer) {
	x := s.x
	slot := p.conn.Slot()
	rp := x.paused[slot]
	if rp == nil {
		return
	}
	delete(x.paused, slot)
	if rp.serial != p.serial || s.draining {
		return
	}
	for _, l := range rp.loops {
		s.sendControl(l, ctlResume, rp.id)
	}
}

// control handles a control record from loop src.
func (s *Server) control(src int, rec []byte) {
	if len(rec) != 5 {
		return
	}
	x := s.x
	arg := binary.LittleEndian.Uint32(rec[1:])
	switch rec[0] {
	case ctlPause:
		if x.remote[arg] == nil {
			x.remote[arg] = new([]waiter)
		}
	case ctlResume:
		ws := x.remote[arg]
		if ws == nil {
			return
		}
		delete(x.remote, arg)
		for _, w := range *ws {
			p := s.peers.at(w.slot)
			if p.serial == w.serial && p.conn != nil {
				s.unblock(p)
			}
		}
	case ctlAdopt:
		s.loop.Adopt(int(arg))
	}
}

// sendControl queues a control record for loop dst, behind any that wait.
func (s *Server) sendControl(dst int, op byte, arg uint32) {
	x := s.x
	if len(x.ctl[dst]) == 0 && x.putControl(dst, ctlRecord{op, arg}) {
		return
	}
	x.ctl[dst] = append(x.ctl[dst], ctlRecord{op, arg})
	x.ctlAny++
}

func (x *cross) putControl(dst int, r ctlRecord) bool {
	var b [5]byte
	b[0] = r.op
	binary.LittleEndian.PutUint32(b[1:], r.arg)
	return x.port.Send(dst, shard.ControlDest, b[:])
}

// retryControl sends the control records that waited for room.
func (x *cross) retryControl() {
	for dst, rs := range x.ctl {
		i := 0
		for i < len(rs) && x.putControl(dst, rs[i]) {
			i++
		}
		x.ctlAny -= i
		x.ctl[dst] = append(rs[:0], rs[i:]...)
	}
}

// place puts an accepted socket on the loop with the fewest connections
// (loop 0 only). A loop's count is what it was given minus what it
// closed, so connections handed over but not yet opened count too, and a
// burst of connects spreads evenly.
func (s *Server) place(fd int) {
	x := s.x
	if s.draining {
		s.counts.closed[ClosedShutdown]++
		_ = unix.Close(fd)
		return
	}
	best, load := 0, ^uint64(0)
	for k := range x.n {
		l := x.placed[k] - min(x.g.loops[k].Stats().Closed.Load(), x.placed[k])
		if l < load {
			best, load = k, l
		}
	}
	x.placed[best]++
	if best == x.k {
		s.loop.Adopt(fd)
		return
	}
	s.sendControl(best, ctlAdopt, uint32(fd))
}

// pass is the mesh part of one loop iteration: take in what other loops
// sent, route again what waited for room, publish what this loop sent
// and ring the loops that sleep. While shutting down it also decides
// whether this loop has become quiet.
func (s *Server) pass() {
	x := s.x
	x.port.Drain(drainBudget, x.deliverFn)
	x.port.Writable(x.resumeFn)
	if x.ctlAny > 0 {
		x.retryControl()
	}
	x.port.Flush()
	if s.draining && !x.quiet && s.silent() {
		x.quiet = true
		x.g.state[x.k].quiet.Store(true)
		// The last loop to become quiet lets the others leave: ring
		// those that sleep rather than let them find out at their
		// next timeout.
		for j := range x.n {
			if j != x.k {
				x.g.mesh.Wake(j)
			}
		}
	}
}

// silent reports whether this loop, shutting down, will never put
// another record into the mesh and every record it put there has been
// drained by its destination. Nothing can make it send again:
//
//   - its reads have stopped for good (reactor.Loop.ReadsStopped: every
//     connection paused and the pause carried out in the kernel; reads
//     are never resumed while draining, and a connection that opens now
//     is closed unread);
//   - it holds no bytes a full queue refused (held), no frames of a
//     sender that left (orphans) and no control record (ctl);
//   - while draining it sends no pause or resume records and places no
//     connection, so what arrives from other loops is only delivered
//     here.
//
// So once it holds, it holds until the loop leaves, and once every loop
// is quiet every queue is empty and stays empty: a loop may leave then
// without any frame being sent to it afterwards. No timing is involved.
func (s *Server) silent() bool {
	x := s.x
	return len(x.held) == 0 && x.ctlAny == 0 && x.orphanAny == 0 &&
		x.port.Unread() == 0 && s.loop.ReadsStopped()
}

// trim releases the rings towards other loops that carried nothing since
// the last tick (Port.Trim) and publishes what is left (Group.RingBytes).
func (x *cross) trim() {
	x.port.Trim()
	x.g.state[x.k].ringBytes.Store(int64(x.port.RingBytes()))
}
