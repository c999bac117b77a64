package relay

import (
	"crypto/rand"
	"encoding/binary"
)

// IDs hands out connection IDs. An ID is never 0, never one that is in use,
// and drawn from crypto/rand, so that a client cannot guess who connects after
// it. Like the rest of the relay's state it belongs to the loop goroutine and
// has no lock.
type IDs struct {
	inUse map[uint32]struct{}

	// Random bytes are read in batches: one getrandom call serves a
	// thousand IDs instead of one.
	pool [4096]byte
	off  int // next unread byte of pool

	// next, when set, replaces the random source; tests use it to force
	// zeros and collisions.
	next func() uint32
}

// NewIDs returns an empty ID set.
func NewIDs() *IDs {
	s := &IDs{inUse: make(map[uint32]struct{})}
	s.off = len(s.pool) // fill on first use
	return s
}

// Take returns a fresh ID and marks it in use until Release.
//
// With fewer than a few billion IDs in use the loop almost always runs once;
// the relay's connection limit keeps the set far smaller than that.
func (s *IDs) Take() uint32 {
	for {
		id := s.draw()
		if id == 0 {
			continue
		}
		if _, taken := s.inUse[id]; taken {
			continue
		}
		s.inUse[id] = struct{}{}
		return id
	}
}

// Release returns id to the pool. Releasing an ID that is not in use does
// nothing.
func (s *IDs) Release(id uint32) {
	delete(s.inUse, id)
}

// Len returns how many IDs are in use.
func (s *IDs) Len() int {
	return len(s.inUse)
}

// draw returns the next candidate ID, which may be 0 or taken.
func (s *IDs) draw() uint32 {
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
