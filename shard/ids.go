package shard

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
)

// Owner is the loop, of n (at least 1), that owns connection ID id. It is
// a pure function of the ID and the loop count, so a sender's loop finds a
// frame's destination loop from the 4-byte header alone, with no table.
//
// The ID is first mixed (two rounds of xor-shift and multiply by an odd
// constant: a bijection on 32 bits in which every input bit affects every
// output bit), so that IDs that differ only in a few bits still spread over
// the loops. The 32-bit hash h is then mapped onto 0..n-1 as h*n/2^32, a
// multiply and a shift instead of a division; the n ranges differ in size
// by at most one value out of 2^32/n.
func Owner(id uint32, n int) int {
	return int(uint64(mix(id)) * uint64(n) >> 32)
}

func mix(x uint32) uint32 {
	x ^= x >> 16
	x *= 0x21f0aaad
	x ^= x >> 15
	x *= 0x735a2d97
	x ^= x >> 15
	return x
}

// IDs is the one source of connection IDs: it draws them for loop k of n
// on the node that Scheme names, random, non-zero, stamped with the node
// index and owned by k. Each candidate is 4 bytes of crypto/rand, read
// 4 KiB at a time; one candidate in n on average belongs to k, so a loop
// of 64 pays about one getrandom call per 16 IDs.
//
// Entropy: the drawn ID is uniform over the IDs that k owns on this node,
// about 2^(32-Bits)/n values. Which node and which loop own an ID is
// public (anyone can compute NodeOf and Owner), and placement is
// predictable enough (the least loaded loop) that a guesser should be
// credited with knowing both. So count 32 - Bits - log2(n) bits: 31 with
// 2 loops on one node, 30 with 4, 28 with 4 nodes of 4 loops. An ID is a
// routing address, not a secret credential, and the protocol never tells
// one client another's ID.
//
// Uniqueness is not IDs' business: the loop checks its own table (only
// loop k of this node can hold an ID that k owns here) and draws again on
// a clash.
//
// An IDs belongs to one goroutine.
type IDs struct {
	scheme Scheme
	n, k   int
	pool   [4096]byte
	off    int
	fill   func([]byte) // crypto/rand.Read, or a test's source
}

// NewIDs returns the ID source for loop k of n on the node scheme names.
func NewIDs(scheme Scheme, n, k int) (*IDs, error) {
	if err := scheme.Validate(); err != nil {
		return nil, err
	}
	if n < 1 || k < 0 || k >= n {
		return nil, fmt.Errorf("shard: loop %d of %d does not exist", k, n)
	}
	a := &IDs{scheme: scheme, n: n, k: k, fill: func(b []byte) { _, _ = rand.Read(b) }}
	a.off = len(a.pool)
	return a, nil
}

// Scheme is the node scheme the IDs are stamped with.
func (a *IDs) Scheme() Scheme { return a.scheme }

// Next returns a random non-zero ID of this node with Owner(id, n) == k.
func (a *IDs) Next() uint32 {
	for {
		if a.off+4 > len(a.pool) {
			// crypto/rand.Read does not fail on Linux: without
			// randomness the runtime aborts rather than return
			// predictable bytes.
			a.fill(a.pool[:])
			a.off = 0
		}
		id := a.scheme.Stamp(binary.BigEndian.Uint32(a.pool[a.off:]))
		a.off += 4
		if id != 0 && Owner(id, a.n) == a.k {
			return id
		}
	}
}
