package bench

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
)

// Pairings say which two connections of a workload talk to each other: a
// pingpong pair's A and B, a flood's sender and receiver. Connections are
// numbered in the order they are dialled.
const (
	// PairAdjacent pairs connection 2i with 2i+1, as c-loadgen does.
	PairAdjacent = "adjacent"
	// PairRandom pairs connections at random: a random perfect matching,
	// drawn from the point's seed. A server that deals connections out to
	// N loops in turn then sees about (N-1)/N of the pairs span two loops,
	// whatever order it accepted them in.
	PairRandom = "random"
)

// Pairings lists the values Point.Pairing accepts ("" means adjacent).
var Pairings = []string{PairAdjacent, PairRandom}

// DefaultSeed is the seed of random pairings unless one is given, so that
// two runs of a point pair the same connection numbers.
const DefaultSeed = 1

// checkPairing reports whether pairing is a known pairing.
func checkPairing(pairing string) error {
	if pairing == "" || slices.Contains(Pairings, pairing) {
		return nil
	}
	return fmt.Errorf("unknown pairing %q (want %s)", pairing, strings.Join(Pairings, " or "))
}

// pairUp splits connections 0 .. 2*pairs-1 into pairs: every connection
// is in exactly one pair. The first of each pair is the one that starts
// (pingpong's A, flood's sender). A random pairing depends only on pairs
// and seed.
func pairUp(pairs int, pairing string, seed uint64) [][2]int {
	order := make([]int, 2*pairs)
	for i := range order {
		order[i] = i
	}
	if pairing == PairRandom {
		rng := rand.New(rand.NewPCG(seed, 0x7061697273)) // "pairs"
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	}
	out := make([][2]int, pairs)
	for i := range out {
		out[i] = [2]int{order[2*i], order[2*i+1]}
	}
	return out
}
