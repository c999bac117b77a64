package bench

import (
	"slices"
	"strings"
	"testing"
)

// Every pairing is a perfect matching: each connection in exactly one
// pair, never paired with itself.
func checkMatching(t *testing.T, pairs int, got [][2]int) {
	t.Helper()
	if len(got) != pairs {
		t.Fatalf("%d pairs, want %d", len(got), pairs)
	}
	seen := make([]int, 2*pairs)
	for _, p := range got {
		for _, c := range p {
			if c < 0 || c >= 2*pairs {
				t.Fatalf("connection %d out of range 0..%d", c, 2*pairs-1)
			}
			seen[c]++
		}
		if p[0] == p[1] {
			t.Fatalf("connection %d paired with itself", p[0])
		}
	}
	for c, n := range seen {
		if n != 1 {
			t.Fatalf("connection %d is in %d pairs", c, n)
		}
	}
}

func TestPairUpAdjacent(t *testing.T) {
	got := pairUp(3, PairAdjacent, 99)
	if want := [][2]int{{0, 1}, {2, 3}, {4, 5}}; !slices.Equal(got, want) {
		t.Errorf("adjacent: %v, want %v", got, want)
	}
	if got := pairUp(3, "", 1); !slices.Equal(got, [][2]int{{0, 1}, {2, 3}, {4, 5}}) {
		t.Errorf("default: %v", got)
	}
}

func TestPairUpRandom(t *testing.T) {
	for _, n := range []int{1, 2, 7, 500} {
		checkMatching(t, n, pairUp(n, PairRandom, 1))
		checkMatching(t, n, pairUp(n, PairRandom, 12345))
	}
	a, b := pairUp(500, PairRandom, 7), pairUp(500, PairRandom, 7)
	if !slices.Equal(a, b) {
		t.Error("the same seed drew two different pairings")
	}
	if c := pairUp(500, PairRandom, 8); slices.Equal(a, c) {
		t.Error("seeds 7 and 8 drew the same pairing")
	}
	if slices.Equal(a, pairUp(500, PairAdjacent, 7)) {
		t.Error("random pairing is the adjacent one")
	}
	// Dealt out to two loops in turn (connection c on loop c%2), about
	// half the pairs span both loops; adjacent pairs always do, pairs of
	// halves (i, P+i) never would. The seed is fixed, so this is exact.
	cross := 0
	for _, p := range a {
		if p[0]%2 != p[1]%2 {
			cross++
		}
	}
	if cross < 200 || cross > 300 {
		t.Errorf("%d of 500 random pairs span two loops, want about 250", cross)
	}
}

func TestPointPairing(t *testing.T) {
	pp := must(NewPoint("pingpong", 500, 16, 0, 0, 64))
	r, err := pp.Paired(PairRandom, 3)
	if err != nil || r.Name != "pingpong-p500-w16-random" || r.Pairing != PairRandom || r.Seed != 3 {
		t.Errorf("random pingpong: %+v, %v", r, err)
	}
	if back, err := r.Paired(PairAdjacent, 3); err != nil || back != pp {
		t.Errorf("back to adjacent: %+v, want %+v (%v)", back, pp, err)
	}
	fl := must(NewPoint("flood", 64, 0, 0, 0, 1024))
	if fl.Name != "flood-p64-1k" || fl.Pairs != 64 {
		t.Errorf("flood with pairs: %+v", fl)
	}
	if one := must(NewPoint("flood", 0, 0, 0, 0, 1024)); one.Name != "flood-1k" || one.Pairs != 1 {
		t.Errorf("flood of one pair keeps its name: %+v", one)
	}
	if r, err := fl.Paired(PairRandom, 1); err != nil || r.Name != "flood-p64-1k-random" {
		t.Errorf("random flood: %+v, %v", r, err)
	}
	if _, err := must(NewPoint("fanin", 0, 0, 10, 0, 256)).Paired(PairRandom, 1); err == nil {
		t.Error("fanin accepted a random pairing")
	}
	if _, err := pp.Paired("shuffled", 1); err == nil || !strings.Contains(err.Error(), "random") {
		t.Errorf("unknown pairing: %v", err)
	}
}
