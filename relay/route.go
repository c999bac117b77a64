package relay

import "github.com/ringrelay/ringrelay/shard"

// A frame's way through a loop is three steps, each written once:
//
//   - route (this file): from the 4-byte header alone, where the frame
//     goes next: a connection of this loop, another loop, or another node;
//   - deliver (deliver.go): the slow-consumer policy at the destination,
//     whatever the frame's origin;
//   - hold (hold.go): a bounded hop (the queue towards another loop, the
//     outbox towards the bridge) refused the frame; the sender keeps it
//     and the rest of its read, stops reading, and resumes when that hop
//     has room.

// Where a frame goes next: a hop index (0..n-1 another loop, n the link to
// other nodes), or one of these.
const (
	here    = -1 // a connection of this loop, if the ID is in use
	nowhere = -2 // ID 0, which no connection anywhere has
)

// where answers, from the destination ID alone, where a frame goes next.
// The ID says it all (shard.Scheme for the node, shard.Owner for the
// loop), so nothing is looked up until the frame reaches its loop.
func (s *Server) where(dest uint32) int {
	switch {
	case dest == 0:
		return nowhere
	case s.link != nil && !s.scheme.Local(dest):
		return s.n
	case s.n > 1:
		if k := shard.Owner(dest, s.n); k != s.k {
			return k
		}
	}
	return here
}

// feed parses data, read from p, and routes every frame in it. When a hop
// refuses a frame, p holds it and the rest of data (hold.go).
func (s *Server) feed(p *peer, data []byte) {
	for len(data) > 0 {
		n, dest, frame, ok, err := p.parser.Next(data)
		data = data[n:]
		if err != nil {
			s.counts.dropped[DropOversize]++
			s.kick(p, ClosedOversize, "frame over max-frame")
			return
		}
		if !ok {
			continue
		}
		p.partialSince = 0
		s.counts.received++
		p.tally.framesIn++
		if h := s.forward(p, dest, frame); h >= 0 {
			s.hold(p, h, dest, frame, data)
			return
		}
		if p.id == 0 {
			return // a limit closed p: the rest of its read goes nowhere
		}
	}
	if p.parser.Partial() && p.partialSince == 0 {
		p.partialSince = s.clock
	}
}

// forward takes one complete frame (payload and NUL) from src one step
// towards dest: delivers it here, drops it, or puts it on the hop towards
// its loop or node. src is nil for a sender that has left. It returns the
// hop that refused the frame, or -1 when the frame was taken.
func (s *Server) forward(src *peer, dest uint32, frame []byte) int {
	switch h := s.where(dest); h {
	case nowhere:
		s.counts.dropped[DropUnknownDest]++
		s.unknownDest(src, dest)
	case here:
		slot, ok := s.routes.Lookup(dest)
		if !ok {
			s.counts.dropped[DropUnknownDest]++
			s.unknownDest(src, dest)
			break
		}
		dp := s.peers.at(slot)
		if s.deliver(dp, frame, false) && src != nil {
			s.pauseFor(src, dp)
		}
	default:
		if !s.put(h, dest, frame) {
			return h
		}
		if src != nil && s.lim.sent != nil && h < s.n {
			s.sentElsewhere(src, dest)
		}
		if src != nil && len(s.remote) > 0 {
			if rw := s.remote[dest]; rw != nil {
				s.wait(src, rw)
			}
		}
	}
	return -1
}

// put copies a frame onto hop h, or reports false, taking nothing, when
// that hop is full.
func (s *Server) put(h int, dest uint32, frame []byte) bool {
	if h == s.n {
		return s.link.out.Put(dest, frame)
	}
	return s.x.port.Send(h, dest, frame)
}
