package relay

import (
	"math/bits"

	"github.com/ringrelay/ringrelay/shard"
)

// Routes is the routing table: which open connection (by reactor slot)
// holds which ID. It also hands out the IDs, since the only rule for a new
// one beyond the ID scheme (shard.IDs: random, non-zero, of this node and
// this loop) is that it is not in the table. Like the rest of the relay's
// state it belongs to the loop goroutine and has no lock.
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

	// next draws an ID candidate: shard.IDs.Next of this loop and node;
	// tests replace it to force zeros and collisions.
	next func() uint32
}

// route is one table entry; id 0 marks an empty one (IDs are never 0).
type route struct {
	id   uint32
	slot int32
}

const minRoutes = 64 // smallest table, entries

// NewRoutes returns an empty table that draws its IDs from ids, or, when
// ids is nil, from the IDs of a lone loop on a lone node.
func NewRoutes(ids *shard.IDs) *Routes {
	if ids == nil {
		ids, _ = shard.NewIDs(shard.Scheme{}, 1, 0) // cannot fail
	}
	s := &Routes{next: ids.Next}
	s.seed = ids.Next() | 1
	s.resize(minRoutes)
	return s
}

// drawFrom makes the table draw its IDs from ids from now on; the table
// must still be empty (a cluster's node scheme, set before the loop runs).
func (s *Routes) drawFrom(ids *shard.IDs) {
	if s.n != 0 {
		panic("relay: ID source replaced in a table in use")
	}
	s.next = ids.Next
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
		id := s.next()
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
