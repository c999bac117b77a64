package relay

import (
	"sync/atomic"

	"github.com/ringrelay/ringrelay/shard"
)

// CloseReason says why the server saw a connection end.
type CloseReason int

const (
	ClosedByPeer      CloseReason = iota // orderly close (EOF)
	ClosedByError                        // reset or another socket error
	ClosedOversize                       // frame longer than MaxFrame
	ClosedSlow                           // slow consumer under the disconnect policy
	ClosedStuck                          // no write progress for WriteTimeout
	ClosedIncomplete                     // frame incomplete for FrameTimeout
	ClosedOverLimit                      // over MaxConns
	ClosedShutdown                       // server shutdown
	ClosedLameDuck                       // closed on schedule after SIGUSR2 (Group.LameDuck)
	ClosedUnknownDest                    // over MaxUnknownDest frames to unknown IDs in a window (limits.go)
	ClosedConnsPerIP                     // over MaxConnsPerIP or MaxNewConnsPerIP (limits.go)
	ClosedMaxMemory                      // among the largest buffers while over MaxMemory (budget.go)
	numCloseReasons
)

var closeReasonNames = [numCloseReasons]string{
	"peer", "error", "oversize", "slow_consumer", "write_timeout", "frame_timeout", "max_conns", "shutdown", "lame_duck",
	"unknown_dest", "max_conns_per_ip", "max_memory",
}

func (r CloseReason) String() string { return closeReasonNames[r] }

// CloseReasons lists every reason, for exporters.
func CloseReasons() []CloseReason {
	out := make([]CloseReason, numCloseReasons)
	for i := range out {
		out[i] = CloseReason(i)
	}
	return out
}

// DropReason says why a frame was not delivered.
type DropReason int

const (
	DropUnknownDest     DropReason = iota // no open connection has the dest ID
	DropSlowConsumer                      // destination over MaxQueue under the drop policy
	DropOversize                          // frame over MaxFrame (its connection is closed)
	DropRemoteOverLimit                   // from another node, destination far over MaxQueue: a pause did not reach its sender (backpressure)
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{"unknown_destination", "slow_consumer", "oversize", "remote_over_limit"}

func (r DropReason) String() string { return dropReasonNames[r] }

// DropReasons lists every reason, for exporters.
func DropReasons() []DropReason {
	out := make([]DropReason, numDropReasons)
	for i := range out {
		out[i] = DropReason(i)
	}
	return out
}

// Metrics are the relay's counters. The loop keeps plain counts while it
// handles a batch and publishes them here with atomic stores once per
// batch; exporters read them from any goroutine.
type Metrics struct {
	FramesRelayed  atomic.Uint64 // frames written to this loop's connections
	FramesReceived atomic.Uint64 // complete frames read from this loop's connections
	// Frames this loop handed to other loops, and took from them
	// (several loops only).
	CrossOut, CrossIn  atomic.Uint64
	BytesRelayed       atomic.Uint64 // payload bytes including the NUL, as written to receivers
	BackpressurePauses atomic.Uint64
	// Pauses from another node that lapsed without a resume: the resume
	// was lost, or that node is gone (cluster only).
	PauseLeasesLapsed atomic.Uint64
	// Bytes the loop's connections held in buffers (partial frames,
	// queued output, held frames) at its last count for -max-memory
	// (budget.go); 0 with the budget off.
	ClientBuffered atomic.Int64
	Closed         [numCloseReasons]atomic.Uint64
	Dropped        [numDropReasons]atomic.Uint64
	Passes         PassTimes // how long the loop's passes take (passtime.go)
}

// counts is the loop-private twin of Metrics.
type counts struct {
	frames, bytes, pauses uint64
	received              uint64
	leasesLapsed          uint64
	closed                [numCloseReasons]uint64
	dropped               [numDropReasons]uint64
}

// publish stores the counts in m; port, with several loops, is the mesh's
// count of frames this loop sent to and took from the others.
func (c *counts) publish(m *Metrics, port *shard.Port) {
	m.FramesRelayed.Store(c.frames)
	m.FramesReceived.Store(c.received)
	if port != nil {
		st := port.Stats()
		m.CrossOut.Store(st.FramesOut)
		m.CrossIn.Store(st.FramesIn)
	}
	m.PauseLeasesLapsed.Store(c.leasesLapsed)
	m.BytesRelayed.Store(c.bytes)
	m.BackpressurePauses.Store(c.pauses)
	for i := range c.closed {
		m.Closed[i].Store(c.closed[i])
	}
	for i := range c.dropped {
		m.Dropped[i].Store(c.dropped[i])
	}
}
