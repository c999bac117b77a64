package bench

import (
	"slices"
	"strconv"
	"testing"
)

func seq(from, to int) []int {
	var out []int
	for c := from; c <= to; c++ {
		out = append(out, c)
	}
	return out
}

func TestSplitCPUs(t *testing.T) {
	ownCore := func(c int) string { return strconv.Itoa(c) }
	for _, tc := range []struct {
		what        string
		cpus        []int
		core        coreOf
		server, gen []int
	}{
		{"no hyperthreads", seq(0, 15), ownCore, seq(0, 7), seq(8, 15)},
		{"two CPUs", []int{0, 1}, ownCore, []int{0}, []int{1}},
		{"one CPU", []int{3}, ownCore, []int{3}, nil},
		{"odd count", []int{0, 1, 2}, ownCore, []int{0, 1}, []int{2}},
		{"unsorted", []int{5, 1, 3, 7}, ownCore, []int{1, 3}, []int{5, 7}},
		// Linux's usual numbering: CPU c and c+8 are one core's threads.
		// The server takes cores 0-3 whole, their first threads first.
		{"siblings c and c+8", seq(0, 15), func(c int) string { return strconv.Itoa(c % 8) },
			[]int{0, 1, 2, 3, 8, 9, 10, 11}, []int{4, 12, 5, 13, 6, 14, 7, 15}},
		// Siblings numbered next to each other.
		{"siblings 2k and 2k+1", seq(0, 15), func(c int) string { return strconv.Itoa(c / 2) },
			[]int{0, 2, 4, 6, 1, 3, 5, 7}, seq(8, 15)},
		{"one core, two threads", []int{0, 1}, func(int) string { return "0" }, []int{0}, []int{1}},
	} {
		server, gen := SplitCPUs(tc.cpus, tc.core)
		if !slices.Equal(server, tc.server) || !slices.Equal(gen, tc.gen) {
			t.Errorf("%s: server %v gen %v, want %v and %v", tc.what, server, gen, tc.server, tc.gen)
		}
	}
}

func TestPowersOfTwo(t *testing.T) {
	for n, want := range map[int][]int{1: {1}, 2: {1, 2}, 6: {1, 2, 4, 6}, 8: {1, 2, 4, 8}, 0: nil} {
		if got := PowersOfTwo(n); !slices.Equal(got, want) {
			t.Errorf("PowersOfTwo(%d) = %v, want %v", n, got, want)
		}
	}
}
