package relay

import "github.com/ringrelay/ringrelay/shard"

// Frames between loops: the hop towards another loop of this process is
// that pair's queue in the shard mesh (see shard's package comment for the
// design of the mesh, placement and the doorbell). A frame for a
// destination that another loop owns is copied, whole, into the queue
// towards that loop (route.go) and delivered there (deliver.go) when that
// loop drains its queues, once per pass, at most drainBudget bytes per
// source. Whether the destination exists is decided by its own loop at
// that moment: a frame for an ID that left is dropped and counted there,
// so it never reaches a later connection in the same slot. Pause, resume
// and adopt records travel on the same queues (control.go).

// drainBudget is about how many bytes a loop takes from each other loop's
// queue per pass (at least one frame): a busy source cannot starve the
// others, nor the loop's own sockets. It is one default ring's worth.
const drainBudget = 1 << 20

// cross is a Server's state for the other loops; nil with one loop.
type cross struct {
	g    *Group
	port *shard.Port

	// Placement (loop 0 only): connections handed to each loop so far.
	placed []uint64

	// quiet: shutting down, this loop will never send into the mesh
	// again and all it sent has been drained (see flush). Once set it
	// stays set; the Group's copy is what the other loops read.
	quiet bool

	deliverFn func(src int, dest uint32, payload []byte)
	resumeFn  func(dst int)
}

func newCross(g *Group, s *Server) *cross {
	x := &cross{g: g, port: g.mesh.Port(s.k)}
	if s.k == 0 {
		x.placed = make([]uint64, s.n)
	}
	x.port.SetRinger(loopRinger{self: g.loops[s.k], loops: g.loops})
	x.deliverFn = s.fromLoop
	x.resumeFn = s.writable
	return x
}

// fromLoop handles one record another loop sent here.
func (s *Server) fromLoop(src int, dest uint32, payload []byte) {
	if dest == shard.ControlDest {
		s.control(src, payload)
		return
	}
	slot, ok := s.routes.Lookup(dest)
	if !ok {
		s.counts.dropped[DropUnknownDest]++
		s.unknownElsewhere(src, dest)
		return
	}
	dp := s.peers.at(slot)
	if s.deliver(dp, payload, false) {
		s.ask(dp, src)
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
		s.loop.Reject(fd)
		return
	}
	best, load := 0, ^uint64(0)
	for k := range s.n {
		l := x.placed[k] - min(x.g.loops[k].Stats().Closed.Load(), x.placed[k])
		if l < load {
			best, load = k, l
		}
	}
	x.placed[best]++
	if best == s.k {
		s.loop.Adopt(fd)
		return
	}
	s.sendControl(best, ctlAdopt, uint32(fd))
}

// take delivers what other loops sent here and routes again what waited
// for a queue that has room now.
func (x *cross) take(s *Server) {
	x.port.Drain(drainBudget, x.deliverFn)
	x.port.Writable(x.resumeFn)
}

// flush publishes what this pass sent and rings the loops that sleep.
// While shutting down it also decides whether this loop has become quiet.
func (x *cross) flush(s *Server) {
	x.port.Flush()
	if s.draining && !x.quiet && s.silent() {
		x.quiet = true
		x.g.state[s.k].quiet.Store(true)
		// The last loop to become quiet lets the others leave: ring
		// those that sleep rather than let them find out at their
		// next timeout.
		for j := range s.n {
			if j != s.k {
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
//   - it holds no bytes a full hop refused, no frames of a sender that
//     left (orphans) and no control record (Server.holding);
//   - while draining it sends no pause or resume records and places no
//     connection, so what arrives from other loops is only delivered
//     here.
//
// So once it holds, it holds until the loop leaves, and once every loop
// is quiet every queue is empty and stays empty: a loop may leave then
// without any frame being sent to it afterwards. No timing is involved.
func (s *Server) silent() bool {
	return !s.holding() && s.x.port.Unread() == 0 && s.loop.ReadsStopped()
}

// trim releases the rings towards other loops that carried nothing since
// the last tick (Port.Trim) and publishes what is left (Group.RingBytes).
func (x *cross) trim() {
	x.port.Trim()
	x.g.state[x.port.Index()].ringBytes.Store(int64(x.port.RingBytes()))
}
