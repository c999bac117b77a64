package relay

import (
	"crypto/rand"
	"encoding/binary"

	"github.com/ringrelay/ringrelay/reactor"
)

// Routes is the routing table: which open connection holds which ID. It
// also hands out the IDs, since the only rule for a new one is that it is
// not in the table: an ID is never 0, never one in use, and drawn from
// crypto/rand, so that a client cannot guess who connects after it. Like
// the rest of the relay's state it belongs to the loop goroutine and has
// no lock.
type Routes struct {
	conns map[uint32]*reactor.Conn

	// Random bytes are read in batches: one getrandom call serves a
	// thousand IDs instead of one.
	pool [4096]byte
	off  int // next unread byte of pool

	// next, when set, replaces the random source; tests use it to force
	// zeros and collisions.
	next func() uint32
}

// NewRoutes returns an empty table.
func NewRoutes() *Routes {
	s := &Routes{conns: make(map[uint32]*reactor.Conn)}
	s.off = len(s.pool) // fill on first use
	return s
}

// Add gives c a fresh ID and routes it to c until Remove.
//
// With fewer than a few billion IDs in use the loop almost always runs once;
// the relay's connection limit keeps the table far smaller than that.
func (s *Routes) Add(c *reactor.Conn) uint32 {
	for {
		id := s.draw()
		if id == 0 {
			continue
		}
		if _, taken := s.conns[id]; taken {
			continue
		}
		s.conns[id] = c
		return id
	}
}

// Lookup returns the connection holding id.
func (s *Routes) Lookup(id uint32) (*reactor.Conn, bool) {
	c, ok := s.conns[id]
	return c, ok
}

// Remove frees id. Removing an ID that is not in use does nothing.
func (s *Routes) Remove(id uint32) {
	delete(s.conns, id)
}

// Len returns how many IDs are in use.
func (s *Routes) Len() int {
	return len(s.conns)
}

// draw returns the next candidate ID, which may be 0 or taken.
func (s *Routes) draw() uint32 {
	if s.next != nil {
		return s.next()
	}
	if s.off+4 > len(s.pool) {
		// crypto/rand.Read never fails on supported platforms; if the
		// kernel could not supply randomness the runtime aborts rather
		// than return predictable bytes.
		rand.Read(s.pool[:])
		s.off = 0
	}
	id := binary.BigEndian.Uint32(s.pool[s.off:])
	s.off += 4
	return id
}
