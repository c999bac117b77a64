package cluster

import (
	"fmt"
	"sync/atomic"
)

// Drop is why a frame crossing the bus was dropped. Frames are counted on
// the node that knows: the sender's node for the outbound reasons, the
// receiving node for DropSinkFull. (A frame for an unknown ID on the
// receiving node is the owning loop's to count, as for a local frame.)
type Drop uint8

const (
	DropNodeDown  Drop = iota // for a node not up (no announcement lately)
	DropBusDown               // sent while the NATS connection is down
	DropTooBig                // does not fit in a batch under the server's max_payload
	DropLocal                 // for an ID of this node: a wiring error, never sent
	DropMalformed             // handed over without its trailing NUL: a wiring error
	DropStopped               // sent or received after the bridge stopped serving (duplicate node)
	DropPublish               // the NATS client refused the batch for another reason
	DropSinkFull              // received, but the owning loop's inbox stayed full for SinkWait
	DropNoLoop                // received, but Owner named no loop: a wiring error
	DropShutdown              // still in a loop's outbox when Close ran out of ShutdownTimeout
	NumDrops
)

var dropNames = [NumDrops]string{
	"node_down", "bus_down", "too_big", "local", "malformed", "stopped", "publish", "sink_full", "no_loop", "shutdown",
}

func (d Drop) String() string {
	if d < NumDrops {
		return dropNames[d]
	}
	return fmt.Sprintf("drop(%d)", uint8(d))
}

// peer is what the bridge knows of one node: whether it is up, and the
// counters of what went to it and came from it.
type peer struct {
	node    int
	subject string

	// Written by the announcement handler, read by everyone.
	lastSeen atomic.Int64 // ns since the bridge's epoch of its last "serving"; 0: not up
	instance atomic.Uint64

	framesOut, bytesOut atomic.Uint64 // published to it
	framesIn, bytesIn   atomic.Uint64 // received from it and handed to a loop
	drops               [NumDrops]atomic.Uint64

	// The bridge goroutine's own.
	out   Batch
	dirty bool
	wasUp bool
}

func (p *peer) drop(d Drop, frames int) { p.drops[d].Add(uint64(frames)) }

// bridgeStats are the bridge's counters that belong to no peer.
type bridgeStats struct {
	batchesOut, batchBytesOut, batchFramesOut atomic.Uint64
	batchMaxOut                               atomic.Uint64
	batchesIn                                 atomic.Uint64
	rejected                                  [NumRejects]atomic.Uint64
	badAnnouncements                          atomic.Uint64
	disconnects                               atomic.Uint64
	controlOut, controlIn, controlDropped     atomic.Uint64
	controlRejected                           atomic.Uint64
}

// PeerSnapshot is one peer node's counters. Bytes are payload bytes with
// their trailing NUL, as the destination receives them.
type PeerSnapshot struct {
	Node                int
	Up                  bool
	FramesOut, BytesOut uint64
	FramesIn, BytesIn   uint64
	Drops               [NumDrops]uint64
}

// Snapshot is the bridge's state and counters at one moment, for the
// metrics page; every field is read from an atomic.
type Snapshot struct {
	Node         int
	BusConnected bool
	Serving      bool // false once a duplicate node was detected
	Disconnects  uint64

	// Batches this node published, their total size in bytes (headers
	// included), the frames in them, and the largest.
	BatchesOut, BatchBytesOut, BatchFramesOut, BatchMaxBytes uint64
	// Batches received whole, and batches rejected whole by reason.
	BatchesIn uint64
	Rejected  [NumRejects]uint64
	// SlowConsumer counts batches the NATS client dropped because the
	// subscription's pending limits were full.
	SlowConsumer     uint64
	BadAnnouncements uint64
	// Control records (pauses and resumes) sent to the other nodes,
	// handed to this node's loops (once per loop), and dropped: the bus
	// was down, or a loop's inbox was full.
	ControlOut, ControlIn, ControlDropped uint64
	ControlRejected                       uint64 // malformed control messages

	Peers []PeerSnapshot // every node heard of or sent to, by node index
}

// Drops sums one reason over every peer.
func (s Snapshot) Drops(d Drop) uint64 {
	var n uint64
	for _, p := range s.Peers {
		n += p.Drops[d]
	}
	return n
}

// Peer returns the snapshot of one node, and whether it is known.
func (s Snapshot) Peer(node int) (PeerSnapshot, bool) {
	for _, p := range s.Peers {
		if p.Node == node {
			return p, true
		}
	}
	return PeerSnapshot{}, false
}
