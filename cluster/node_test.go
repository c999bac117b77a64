package cluster

import (
	"math/bits"
	"strings"
	"testing"
)

func TestSchemeValidate(t *testing.T) {
	cases := []struct {
		bits, self int
		err        string
	}{
		{0, 0, ""},
		{1, 1, ""},
		{16, 65535, ""},
		{0, 1, "must be 0 to 0"},
		{2, 4, "must be 0 to 3"},
		{2, -1, "must be 0 to 3"},
		{17, 0, "must be 0 to 16"},
		{-1, 0, "must be 0 to 16"},
	}
	for _, c := range cases {
		_, err := NewScheme(c.bits, c.self)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("bits %d node %d: %v", c.bits, c.self, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("bits %d node %d: err %v, want %q", c.bits, c.self, err, c.err)
		}
	}
}

func TestSchemeNodeOfStamp(t *testing.T) {
	for _, b := range []int{0, 1, 2, 8, 16} {
		for _, self := range []int{0, 1<<b - 1, (1 << b) / 2} {
			s := Scheme{Bits: b, Self: self}
			for _, r := range []uint32{0, 1, 0xffffffff, 0x80000000, 0x12345678} {
				id := s.Stamp(r)
				if s.NodeOf(id) != self || !s.Local(id) {
					t.Fatalf("bits %d node %d: Stamp(%08x) = %08x, NodeOf %d", b, self, r, id, s.NodeOf(id))
				}
				// The low 32-b bits are the random ones, untouched.
				low := uint32(0xffffffff)
				if b > 0 {
					low = 1<<(32-b) - 1
				}
				if id&low != r&low {
					t.Fatalf("bits %d: Stamp(%08x) = %08x changed random bits", b, r, id)
				}
			}
		}
	}
	s := Scheme{Bits: 2, Self: 1}
	if got := s.NodeOf(0xc0000001); got != 3 {
		t.Fatalf("NodeOf(c0000001) = %d, want 3", got)
	}
	if got := s.NodeOf(0x3fffffff); got != 0 {
		t.Fatalf("NodeOf(3fffffff) = %d, want 0", got)
	}
}

// owner mirrors shard.Owner's shape (a hash over the whole ID, mapped onto
// n loops) so Draw is tested with a real spread, not a stub.
func owner(id uint32, n int) int {
	x := id
	x ^= x >> 16
	x *= 0x21f0aaad
	x ^= x >> 15
	x *= 0x735a2d97
	x ^= x >> 15
	return int(uint64(x) * uint64(n) >> 32)
}

func TestSchemeDraw(t *testing.T) {
	const loops = 4
	s := Scheme{Bits: 3, Self: 5}
	var state uint64 = 1
	random := func() uint32 { // xorshift64*: a deterministic stand-in for crypto/rand
		state ^= state >> 12
		state ^= state << 25
		state ^= state >> 27
		return uint32((state * 2685821657736338717) >> 32)
	}
	seen := map[uint32]bool{}
	for k := 0; k < loops; k++ {
		for i := 0; i < 1000; i++ {
			id := s.Draw(random, func(id uint32) bool { return owner(id, loops) == k })
			if id == 0 || s.NodeOf(id) != 5 || owner(id, loops) != k {
				t.Fatalf("loop %d drew %08x: node %d owner %d", k, id, s.NodeOf(id), owner(id, loops))
			}
			seen[id] = true
		}
	}
	if len(seen) < 3990 {
		t.Fatalf("only %d distinct IDs in 4000 draws", len(seen))
	}
	// Node 0 with all random bits 0 is ID 0: Draw must skip it.
	z := Scheme{Bits: 1, Self: 0}
	calls := 0
	id := z.Draw(func() uint32 { calls++; return uint32(calls - 1) }, func(uint32) bool { return true })
	if id != 1 || calls != 2 {
		t.Fatalf("Draw gave %08x after %d candidates, want 1 after 2", id, calls)
	}
	// The entropy the doc comment states: 32 - Bits - log2(N).
	if got := 32 - s.Bits - bits.Len(uint(loops-1)); got != 27 {
		t.Fatalf("entropy %d", got)
	}
}
