package shard

import (
	"math/rand/v2"
	"testing"
)

// TestOwnerIsStable pins a few values. Which loop owns an ID must not
// change by accident: nodes of a cluster will have to agree on it.
func TestOwnerIsStable(t *testing.T) {
	for _, g := range []struct {
		id             uint32
		of2, of4, of64 int
	}{
		{0x1, 1, 2, 33},
		{0x2, 0, 0, 3},
		{0x3, 1, 3, 59},
		{0xdeadbeef, 0, 0, 10},
		{0x80000000, 1, 3, 56},
		{0xffffffff, 1, 2, 38},
	} {
		if a, b, c := Owner(g.id, 2), Owner(g.id, 4), Owner(g.id, 64); a != g.of2 || b != g.of4 || c != g.of64 {
			t.Errorf("Owner(%#x) of 2, 4, 64 = %d, %d, %d; want %d, %d, %d", g.id, a, b, c, g.of2, g.of4, g.of64)
		}
	}
}

func TestOwnerIsPureAndInRange(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for range 100000 {
		id, n := rng.Uint32(), 1+rng.IntN(200)
		o := Owner(id, n)
		if o < 0 || o >= n || Owner(id, n) != o {
			t.Fatalf("Owner(%#x, %d) = %d, then %d", id, n, o, Owner(id, n))
		}
		if Owner(id, 1) != 0 {
			t.Fatalf("Owner(%#x, 1) = %d", id, Owner(id, 1))
		}
	}
}

func TestMixIsABijection(t *testing.T) {
	// Distinct IDs keep distinct hashes (so the mixing loses nothing); a
	// million consecutive IDs, the worst case for a weak mix, suffice.
	seen := make(map[uint32]struct{}, 1<<20)
	for id := uint32(0); id < 1<<20; id++ {
		h := mix(id)
		if _, dup := seen[h]; dup {
			t.Fatalf("mix(%#x) = %#x collides", id, h)
		}
		seen[h] = struct{}{}
	}
}

// TestOwnerSpreadsIDs: over a large sample every loop gets its share
// within 5% (6 standard deviations at 64 loops), for random IDs and for consecutive ones (which a plain
// "id mod n" would also spread, but only because they are consecutive:
// IDs that differ in high bits only would all land on one loop).
func TestOwnerSpreadsIDs(t *testing.T) {
	const sample = 1 << 20
	rng := rand.New(rand.NewPCG(2, 2))
	sources := map[string]func(i int) uint32{
		"random":      func(int) uint32 { return rng.Uint32() },
		"consecutive": func(i int) uint32 { return uint32(i + 1) },
		"high bits":   func(i int) uint32 { return uint32(i+1) << 12 },
	}
	for name, next := range sources {
		for _, n := range []int{2, 3, 4, 5, 7, 8, 16, 64} {
			counts := make([]int, n)
			for i := range sample {
				counts[Owner(next(i), n)]++
			}
			mean := float64(sample) / float64(n)
			for k, c := range counts {
				if dev := (float64(c) - mean) / mean; dev > 0.05 || dev < -0.05 {
					t.Errorf("%s IDs over %d loops: loop %d got %d, %.1f%% off the mean %.0f", name, n, k, c, 100*dev, mean)
				}
			}
		}
	}
}

func TestIDsBelongToTheirLoop(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 7, 64} {
		for k := range n {
			a, err := NewIDs(Scheme{}, n, k)
			if err != nil {
				t.Fatal(err)
			}
			for range 500 {
				id := a.Next()
				if id == 0 || Owner(id, n) != k {
					t.Fatalf("loop %d of %d drew %#x, owned by %d", k, n, id, Owner(id, n))
				}
			}
		}
	}
}

func TestIDsAreSpreadAndRarelyRepeat(t *testing.T) {
	a, err := NewIDs(Scheme{}, 4, 3)
	if err != nil {
		t.Fatal(err)
	}
	const draws = 20000
	seen := make(map[uint32]bool, draws)
	var high [256]bool
	repeats, highs := 0, 0
	for range draws {
		id := a.Next()
		if seen[id] {
			repeats++
		}
		seen[id] = true
		if !high[id>>24] {
			high[id>>24] = true
			highs++
		}
	}
	// 20000 draws from about 2^30 values repeat 0.2 times on average.
	if repeats > 4 {
		t.Errorf("%d of %d IDs repeated", repeats, draws)
	}
	if highs < 250 {
		t.Errorf("IDs used %d of 256 values of the top byte", highs)
	}
}

func TestIDsSkipZeroAndRefill(t *testing.T) {
	a, err := NewIDs(Scheme{}, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	fills := 0
	a.fill = func(b []byte) {
		fills++
		clear(b) // every candidate 0 ...
		if fills == 2 {
			b[len(b)-1] = 2 // ... but the last of the second batch: owned by 0 of 2
		}
	}
	if id := a.Next(); id != 2 || fills != 2 {
		t.Fatalf("Next = %#x after %d fills; want 0x2 after skipping a batch of zeros", id, fills)
	}
}

func TestNewIDsChecksLoop(t *testing.T) {
	for _, c := range [][2]int{{0, 0}, {2, 2}, {2, -1}} {
		if _, err := NewIDs(Scheme{}, c[0], c[1]); err == nil {
			t.Errorf("NewIDs(%d, %d) accepted", c[0], c[1])
		}
	}
}
