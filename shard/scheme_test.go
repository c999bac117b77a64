package shard

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

// TestIDsWithScheme: IDs.Next stamps the node into every ID it draws and
// keeps only those the loop owns, as the relay's tables rely on.
func TestIDsWithScheme(t *testing.T) {
	const loops = 4
	s := Scheme{Bits: 3, Self: 5}
	var state uint64 = 1
	fill := func(b []byte) { // xorshift64*: a deterministic stand-in for crypto/rand
		for i := range b {
			state ^= state >> 12
			state ^= state << 25
			state ^= state >> 27
			b[i] = byte((state * 2685821657736338717) >> 56)
		}
	}
	seen := map[uint32]bool{}
	for k := 0; k < loops; k++ {
		a, err := NewIDs(s, loops, k)
		if err != nil {
			t.Fatal(err)
		}
		a.fill = fill
		for i := 0; i < 1000; i++ {
			id := a.Next()
			if id == 0 || s.NodeOf(id) != 5 || Owner(id, loops) != k {
				t.Fatalf("loop %d drew %08x: node %d owner %d", k, id, s.NodeOf(id), Owner(id, loops))
			}
			seen[id] = true
		}
	}
	if len(seen) < 3990 {
		t.Fatalf("only %d distinct IDs in 4000 draws", len(seen))
	}
	// Node 0 with all random bits 0 is ID 0: Next must skip it.
	z, err := NewIDs(Scheme{Bits: 1, Self: 0}, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	z.fill = func(b []byte) {
		clear(b)
		b[7] = 1 // the second candidate is 1
	}
	if id := z.Next(); id != 1 || z.off != 8 {
		t.Fatalf("Next gave %08x after %d bytes, want 1 after 8", id, z.off)
	}
	// The entropy the doc comment states: 32 - Bits - log2(N).
	if got := 32 - s.Bits - bits.Len(uint(loops-1)); got != 27 {
		t.Fatalf("entropy %d", got)
	}
	if _, err := NewIDs(Scheme{Bits: 2, Self: 4}, 1, 0); err == nil {
		t.Fatal("NewIDs accepted node 4 of node-bits 2")
	}
}
