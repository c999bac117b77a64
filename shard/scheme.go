package shard

import "fmt"

// MaxNodeBits caps -node-bits. Each bit given to the node index is taken
// from the random part of every connection ID, so the cap keeps at least
// 16 random bits in an ID whatever the cluster (an ID is a routing
// address, not a secret, but it must stay hard to guess and must leave
// room for the loop choice below). 2^16 nodes is far past any NATS
// deployment, and the bridge's peer table has 2^b slots.
const MaxNodeBits = 16

// Scheme says which node owns a connection ID: the node index sits in the
// ID's top Bits bits, so a sender's node finds the destination node from
// the 4-byte header alone, and IDs are unique cluster-wide because two
// nodes never draw the same top bits. Bits is fixed for a cluster (every
// node must be started with the same -node-bits); Bits == 0 is a single
// node, which owns every ID.
//
// Composition with the loops of one process: the owning loop is chosen by
// a hash over the whole 32-bit ID (Owner(id, N)), node bits included. A
// loop draws candidates as Stamp(random), keeping the first that is
// non-zero and that it owns (IDs.Next). Entropy: an ID has 32-Bits random
// bits; the node is public (it is in the ID), and the loop choice costs
// about log2(N) more, so count 32 - Bits - log2(N) bits: 28 with 4 nodes
// of 4 loops (Bits=2), 20 with 256 nodes of 16 loops (Bits=8).
type Scheme struct {
	Bits int // node index bits, 0..MaxNodeBits
	Self int // this node's index, 0..2^Bits-1
}

// NewScheme checks bits and self and returns the scheme.
func NewScheme(bits, self int) (Scheme, error) {
	s := Scheme{Bits: bits, Self: self}
	return s, s.Validate()
}

// Validate reports a node-bits or node value that cannot work.
func (s Scheme) Validate() error {
	if s.Bits < 0 || s.Bits > MaxNodeBits {
		return fmt.Errorf("node-bits %d: must be 0 to %d (every bit given to the node index is one random bit less in each ID)", s.Bits, MaxNodeBits)
	}
	if s.Self < 0 || s.Self >= s.Nodes() {
		return fmt.Errorf("node %d: with node-bits %d it must be 0 to %d", s.Self, s.Bits, s.Nodes()-1)
	}
	return nil
}

// Nodes is how many node indexes the scheme has: 2^Bits.
func (s Scheme) Nodes() int { return 1 << s.Bits }

// NodeOf is the node that owns id.
func (s Scheme) NodeOf(id uint32) int {
	if s.Bits == 0 {
		return 0
	}
	return int(id >> (32 - s.Bits))
}

// Local reports whether id belongs to this node.
func (s Scheme) Local(id uint32) bool { return s.NodeOf(id) == s.Self }

// Stamp turns 32 random bits into an ID of this node: the top Bits bits
// are replaced by the node index, the rest are kept. The result may be 0
// (node 0, all random bits 0); IDs.Next skips it.
func (s Scheme) Stamp(random uint32) uint32 {
	if s.Bits == 0 {
		return random
	}
	shift := 32 - s.Bits
	low := uint32(1)<<shift - 1
	return uint32(s.Self)<<shift | random&low
}
