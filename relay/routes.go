package relay

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
)

// Routes is the routing table: which open connection (by reactor slot)
// holds which ID. It also hands out the IDs, since the only rule for a new
// one is that it is not in the table: an ID is never 0, never one in use,
// and drawn from crypto/rand, so that a client cannot guess who connects
// after it. Like the rest of the relay's state it belongs to the loop
// goroutine and has no lock.
//
// The table is open addressing with linear probing over one array of
// 8-byte (ID, slot) pairs, kept at most half full, so a lookup (one per
// relayed frame) is a multiply, a shift and usually one cache line, where
// a Go map lookup costs a hash call and a group scan. Removal shifts the
// following entries back instead of leaving tombstones, so lookups never
// slow down with churn. The probe position mixes the ID with a per-table
// random seed: the layout is not predictable from the IDs, and IDs that
// were chosen to share some bits (the loop an ID belongs to, say) still
// spread over the whole array.
type Routes struct {
	tab   []route
	shift uint8  // 32 - log2(len(tab))
	seed  uint32 // mixed into every probe position
	n     int    // IDs in use

	// Random bytes are read in batches: one getrandom call serves a
	// thousand IDs instead of one.
	pool [4096]byte
	off  int // next unread byte of pool

	// next, when set, replaces the random source: with several loops it
	// draws only IDs the loop owns (NewRoutesFrom with shard.IDs.Next), in
	// a cluster only IDs of this node as well (Join); tests use it to force
	// zeros and collisions.
	next func() uint32
}

// route is one table entry; id 0 marks an empty one (IDs are never 0).
type route struct {
	id   uint32
	slot int32
}

const minRoutes = 64 // smallest table, entries

// NewRoutes returns an empty table that draws its IDs from crypto/rand.
func NewRoutes() *Routes {
	s := &Routes{}
	s.off = len(s.pool) // fill on first use
	s.seed = s.random() | 1
	s.resize(minRoutes)
	return s
}

// NewRoutesFrom returns an empty table that draws ID candidates from
// next instead: with several loops, each loop's table takes the IDs its
// loop owns (shard.IDs.Next), so that the owner of an ID is a function
// of the ID alone. Uniqueness is still checked here, in this table only,
// which is enough because no other loop can draw an ID this one owns.
// next must return random values; 0 and IDs in use are skipped.
func NewRoutesFrom(next func() uint32) *Routes {
	s := NewRoutes()
	s.next = next
	return s
}

// Add gives the connection in slot a fresh ID and routes it there until
// Remove.
//
// With fewer than a few billion IDs in use the loop almost always runs once;
// the relay's connection limit keeps the table far smaller than that.
func (s *Routes) Add(slot int) uint32 {
	if 2*(s.n+1) > len(s.tab) {
		s.resize(2 * len(s.tab))
	}
	for {
		id := s.draw()
		if id == 0 {
			continue
		}
		i := s.find(id)
		if s.tab[i].id == id {
			continue // in use
		}
		s.tab[i] = route{id: id, slot: int32(slot)}
		s.n++
		return id
	}
}

// Lookup returns the slot of the connection holding id.
func (s *Routes) Lookup(id uint32) (slot int, ok bool) {
	e := s.tab[s.find(id)]
	return int(e.slot), e.id == id && id != 0
}

// Remove frees id. Removing an ID that is not in use does nothing.
func (s *Routes) Remove(id uint32) {
	if id == 0 {
		return
	}
	i := s.find(id)
	if s.tab[i].id != id {
		return
	}
	s.n--
	// Backward-shift deletion: walk the run after the hole and move back
	// every entry whose home position does not lie between the hole and
	// where it sits now (cyclically), so each entry stays reachable from
	// its home by a probe that meets no empty entry.
	mask := len(s.tab) - 1
	for j := (i + 1) & mask; s.tab[j].id != 0; j = (j + 1) & mask {
		home := s.home(s.tab[j].id)
		if (j-home)&mask >= (j-i)&mask {
			s.tab[i] = s.tab[j]
			i = j
		}
	}
	s.tab[i] = route{}
}

// Len returns how many IDs are in use.
func (s *Routes) Len() int {
	return s.n
}

// home is id's first probe position.
func (s *Routes) home(id uint32) int {
	return int(((id ^ s.seed) * 0x9e3779b1) >> s.shift)
}

// find returns the index holding id, or the empty entry where it would go.
// The table is never full, so the probe ends.
func (s *Routes) find(id uint32) int {
	mask := len(s.tab) - 1
	i := s.home(id)
	for s.tab[i].id != id && s.tab[i].id != 0 {
		i = (i + 1) & mask
	}
	return i
}

// resize moves every entry into a table of n entries (a power of two).
func (s *Routes) resize(n int) {
	old := s.tab
	s.tab = make([]route, n)
	s.shift = uint8(32 - bits.TrailingZeros(uint(n)))
	for _, e := range old {
		if e.id != 0 {
			s.tab[s.find(e.id)] = e
		}
	}
}

// draw returns the next candidate ID, which may be 0 or taken.
func (s *Routes) draw() uint32 {
	if s.next != nil {
		return s.next()
	}
	return s.random()
}

func (s *Routes) random() uint32 {
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
