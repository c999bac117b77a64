package relay

import (
	"math/rand/v2"
	"testing"
)

// scripted returns a source that yields vals in order and fails the test
// if asked for more.
func scripted(t *testing.T, vals ...uint32) func() uint32 {
	return func() uint32 {
		if len(vals) == 0 {
			t.Fatal("the ID source was asked for more values than scripted")
		}
		v := vals[0]
		vals = vals[1:]
		return v
	}
}

func TestRoutesIDsNeverZero(t *testing.T) {
	s := NewRoutes(nil)
	s.next = scripted(t, 0, 0, 0, 42)
	if id := s.Add(0); id != 42 {
		t.Fatalf("Take = %d, want 42 (the zeros skipped)", id)
	}
}

func TestRoutesIDsSkipInUse(t *testing.T) {
	s := NewRoutes(nil)
	s.next = scripted(t, 5, 5, 0, 5, 9, 5)
	if id := s.Add(0); id != 5 {
		t.Fatalf("first Take = %d, want 5", id)
	}
	if id := s.Add(0); id != 9 {
		t.Fatalf("second Take = %d, want 9 (5 is in use)", id)
	}
	if s.Len() != 2 {
		t.Fatalf("Len = %d, want 2", s.Len())
	}
	s.Remove(5)
	if id := s.Add(0); id != 5 {
		t.Fatalf("Take after Release(5) = %d, want 5 again", id)
	}
	s.Remove(1234) // not in use: no effect
	if s.Len() != 2 {
		t.Fatalf("Len = %d, want 2", s.Len())
	}
}

// churn takes and releases IDs at random, checking after every Take that the
// new ID is non-zero and not among the live ones.
func churn(t *testing.T, s *Routes, rng *rand.Rand, ops, maxLive int) {
	t.Helper()
	live := make(map[uint32]bool)
	var order []uint32
	for range ops {
		if len(order) > 0 && (len(order) >= maxLive || rng.IntN(2) == 0) {
			i := rng.IntN(len(order))
			id := order[i]
			order[i] = order[len(order)-1]
			order = order[:len(order)-1]
			delete(live, id)
			s.Remove(id)
		} else {
			id := s.Add(0)
			if id == 0 {
				t.Fatal("Take returned 0")
			}
			if live[id] {
				t.Fatalf("Take returned %#x, which is still in use", id)
			}
			live[id] = true
			order = append(order, id)
		}
		if s.Len() != len(live) {
			t.Fatalf("Len = %d, want %d", s.Len(), len(live))
		}
	}
}

func TestRoutesIDsUniqueUnderChurn(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	churn(t, NewRoutes(nil), rng, 100_000, 5000)
}

func TestRoutesIDsUniqueUnderChurnWithCollidingSource(t *testing.T) {
	// A source with only 300 values, zero among them, makes collisions the
	// common case, so the rejection loop is exercised on nearly every Take.
	rng := rand.New(rand.NewPCG(3, 4))
	s := NewRoutes(nil)
	s.next = func() uint32 { return uint32(rng.IntN(300)) }
	churn(t, s, rng, 100_000, 250)
}

func TestRoutesIDsLookRandom(t *testing.T) {
	const n = 10_000
	s := NewRoutes(nil)
	ids := make([]uint32, n)
	for i := range ids {
		// Release at once, so that uniqueness below comes from the source
		// and not from the in-use check.
		ids[i] = s.Add(0)
		s.Remove(ids[i])
	}
	var ones [32]int
	sequential := 0
	for i, id := range ids {
		for b := range ones {
			ones[b] += int(id >> b & 1)
		}
		if i > 0 {
			if id == ids[i-1] {
				t.Fatalf("IDs %d and %d are both %#x", i-1, i, id)
			}
			if id-ids[i-1] == 1 {
				sequential++
			}
		}
	}
	// Expected count is about 10000/2^32, i.e. nothing.
	if sequential > 2 {
		t.Errorf("%d consecutive ID pairs differ by one: looks like a counter", sequential)
	}
	// Each bit should be set about half the time; 40..60 % is more than
	// 20 standard deviations wide, so a fair source never fails it.
	for b, c := range ones {
		if c < n*4/10 || c > n*6/10 {
			t.Errorf("bit %d set in %d of %d IDs", b, c, n)
		}
	}
}

func TestRoutesIDsTakeReleaseAllocatesNothing(t *testing.T) {
	s := NewRoutes(nil)
	for range 100 {
		s.Add(0)
	}
	if allocs := testing.AllocsPerRun(10_000, func() { s.Remove(s.Add(0)) }); allocs != 0 {
		t.Errorf("%v allocations per Take+Release, want 0", allocs)
	}
}

// TestRoutesLookup checks the table routes each ID to the connection it was
// given to, and forgets it on Remove.
func TestRoutesLookup(t *testing.T) {
	s := NewRoutes(nil)
	const a, b = 7, 11
	ida, idb := s.Add(a), s.Add(b)
	if got, ok := s.Lookup(ida); !ok || got != a {
		t.Fatalf("Lookup(%08x) = %d, %v; want %d", ida, got, ok, a)
	}
	if got, ok := s.Lookup(idb); !ok || got != b {
		t.Fatalf("Lookup(%08x) = %d, %v; want %d", idb, got, ok, b)
	}
	s.Remove(ida)
	if _, ok := s.Lookup(ida); ok {
		t.Fatalf("Lookup(%08x) still found after Remove", ida)
	}
	if got, ok := s.Lookup(idb); !ok || got != b || s.Len() != 1 {
		t.Fatalf("Remove(%08x) disturbed %08x or Len (%d)", ida, idb, s.Len())
	}
}

// TestRoutesAgreesWithMap drives the table and a Go map with the same
// random adds and removes, growth included, and checks after every step
// that each live ID still leads to its slot and removed IDs lead nowhere:
// the backward shift of Remove must keep every entry reachable.
func TestRoutesAgreesWithMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	s := NewRoutes(nil)
	want := make(map[uint32]int)
	var live, gone []uint32
	for op := range 200_000 {
		if len(live) > 0 && (len(live) >= 3000 || rng.IntN(5) < 2) {
			i := rng.IntN(len(live))
			id := live[i]
			live[i] = live[len(live)-1]
			live = live[:len(live)-1]
			delete(want, id)
			s.Remove(id)
			gone = append(gone, id)
		} else {
			id := s.Add(op)
			want[id] = op
			live = append(live, id)
		}
		if s.Len() != len(want) {
			t.Fatalf("op %d: Len = %d, want %d", op, s.Len(), len(want))
		}
		if op%997 != 0 {
			continue
		}
		for id, slot := range want {
			if got, ok := s.Lookup(id); !ok || got != slot {
				t.Fatalf("op %d: Lookup(%08x) = %d, %v; want %d", op, id, got, ok, slot)
			}
		}
		for _, id := range gone {
			if _, in := want[id]; in {
				continue // drawn again since
			}
			if slot, ok := s.Lookup(id); ok {
				t.Fatalf("op %d: removed %08x still routes to %d", op, id, slot)
			}
		}
		gone = gone[:0]
	}
	if _, ok := s.Lookup(0); ok {
		t.Fatal("Lookup(0) found an entry")
	}
}

// BenchmarkRoutesLookup measures the per-frame route lookup with 10,000
// connections, against the Go map it replaced.
func BenchmarkRoutesLookup(b *testing.B) {
	const n = 10_000
	s := NewRoutes(nil)
	m := make(map[uint32]int, n)
	ids := make([]uint32, n)
	for i := range ids {
		ids[i] = s.Add(i)
		m[ids[i]] = i
	}
	b.Run("table", func(b *testing.B) {
		sum := 0
		for i := range b.N {
			slot, _ := s.Lookup(ids[i%n])
			sum += slot
		}
		_ = sum
	})
	b.Run("map", func(b *testing.B) {
		sum := 0
		for i := range b.N {
			sum += m[ids[i%n]]
		}
		_ = sum
	})
}
