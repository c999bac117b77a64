package reactor

import "testing"

// TestObserveBatch checks each wait lands in the bucket of the smallest
// bound at or above its completion count, and the totals add up.
func TestObserveBatch(t *testing.T) {
	var s Stats
	for _, n := range []int{0, 1, 2, 3, 4, 5, 512, 513, 100000} {
		s.observeBatch(n)
	}
	want := map[int]uint64{0: 2, 1: 1, 2: 2, 3: 1, 9: 1, 10: 2} // bucket index -> waits
	for i := range s.BatchSizes {
		if got := s.BatchSizes[i].Load(); got != want[i] {
			t.Errorf("bucket %d (le %v): %d waits, want %d", i, boundOf(i), got, want[i])
		}
	}
	if s.Iterations.Load() != 9 || s.Completions.Load() != 0+1+2+3+4+5+512+513+100000 {
		t.Errorf("iterations %d completions %d", s.Iterations.Load(), s.Completions.Load())
	}
}

func boundOf(i int) any {
	if i < len(BatchBounds) {
		return BatchBounds[i]
	}
	return "+Inf"
}
