package relay_test

// The chaos engine's checks: every frame a client reads against the
// oracle's record of what was written, and the server's own counters
// against what the clients did.

import (
	"fmt"
	"math"
	"strings"

	"github.com/ringrelay/ringrelay/relay"
)

// check verifies one received payload against the oracle.
func (ch *chaos) check(inc *chaosInc, p []byte) {
	sender, seq64, err := ch.codec.Decode(p)
	if err != nil {
		ch.fail("incarnation %d got a payload that is no whole frame (%d bytes, %q): %v", inc.n, len(p), trim(p), err)
		return
	}
	src, seq := int32(sender), uint32(seq64)
	what := fmt.Sprintf("incarnation %d (id %08x) got frame %d of incarnation %d", inc.n, inc.id, seq64, sender)
	if sender > math.MaxInt32 || seq64 > math.MaxUint32 {
		ch.fail("%s, which does not exist", what)
		return
	}
	ch.mu.Lock()
	var from *chaosInc
	if src >= 1 && int(src) <= len(ch.incs) {
		from = ch.incs[src-1]
	}
	ch.mu.Unlock()
	if from == nil {
		ch.fail("%s, which does not exist", what)
		return
	}
	from.mu.Lock()
	var bad string
	var destInc int32
	switch {
	case seq < 1 || int(seq) > len(from.sent):
		bad = "which was never sent"
	case from.sent[seq-1].size != int32(len(p)):
		bad = fmt.Sprintf("of %d bytes, which the oracle's record says had %d", len(p), from.sent[seq-1].size)
	case from.sent[seq-1].dest != inc.id:
		bad = fmt.Sprintf("addressed to id %08x", from.sent[seq-1].dest)
	case from.sent[seq-1].truncated:
		bad = "which was never finished: its sender reset mid-frame"
	case from.sent[seq-1].delivered:
		bad = "twice"
	default:
		from.sent[seq-1].delivered = true
		destInc = from.sent[seq-1].destInc
	}
	from.mu.Unlock()
	if bad != "" {
		ch.fail("%s, %s", what, bad)
		return
	}
	if last := inc.lastSeq[src]; seq <= last {
		ch.fail("%s after frame %d: out of order", what, last)
		return
	}
	inc.lastSeq[src] = seq
	if destInc != inc.n {
		// Addressed to an unknown or stale ID that the server has since
		// handed to this connection: IDs are unique among open
		// connections only, so this is a correct delivery. Not so if the
		// incarnation it was meant for never closed: then its ID was
		// never free.
		ch.mu.Lock()
		meant := ch.incs[max(destInc, 1)-1]
		ch.mu.Unlock()
		if destInc != 0 && meant.end.Load() == chaosOpen {
			ch.fail("%s, meant for incarnation %d, which is still open with that ID", what, destInc)
			return
		}
		ch.reused.Add(1)
	}
	ch.checked.Add(1)
}

// chaosCounts is a snapshot of the server metrics the engine checks.
type chaosCounts struct {
	closed  []uint64 // by relay.CloseReason
	dropped []uint64 // by relay.DropReason
	frames  uint64
}

func chaosMetrics(m counters) chaosCounts {
	c := chaosCounts{closed: make([]uint64, len(relay.CloseReasons())), dropped: make([]uint64, len(relay.DropReasons()))}
	for _, r := range relay.CloseReasons() {
		c.closed[r] = m.Closed[r]
	}
	for _, r := range relay.DropReasons() {
		c.dropped[r] = m.Dropped[r]
	}
	c.frames = m.FramesRelayed
	return c
}

func (c chaosCounts) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "relayed=%d", c.frames)
	for _, r := range relay.CloseReasons() {
		if c.closed[r] != 0 {
			fmt.Fprintf(&b, " closed_%s=%d", r, c.closed[r])
		}
	}
	for _, r := range relay.DropReasons() {
		if c.dropped[r] != 0 {
			fmt.Fprintf(&b, " dropped_%s=%d", r, c.dropped[r])
		}
	}
	return b.String()
}

// checkMetrics holds the server's own account of the run against what the
// clients did: no client broke a limit, so no limit may have fired, and
// every connection (the warm-up one excluded) ended by the peer's doing.
func (ch *chaos) checkMetrics(before, after chaosCounts, rep chaosReport) {
	d := chaosMetrics(counters{})
	for i := range d.closed {
		d.closed[i] = after.closed[i] - before.closed[i]
	}
	for i := range d.dropped {
		d.dropped[i] = after.dropped[i] - before.dropped[i]
	}
	d.frames = after.frames - before.frames
	for _, r := range []relay.CloseReason{relay.ClosedOversize, relay.ClosedSlow, relay.ClosedStuck, relay.ClosedIncomplete, relay.ClosedOverLimit, relay.ClosedShutdown} {
		if d.closed[r] != 0 {
			ch.fail("server closed %d well-behaved connections for %s", d.closed[r], r)
		}
	}
	for _, r := range []relay.DropReason{relay.DropSlowConsumer, relay.DropOversize} {
		if d.dropped[r] != 0 {
			ch.fail("server dropped %d frames for %s under backpressure", d.dropped[r], r)
		}
	}
	byPeer, byError := d.closed[relay.ClosedByPeer], d.closed[relay.ClosedByError]
	if got := byPeer + byError; got != uint64(rep.conns) {
		ch.fail("server counted %d connections closed (peer %d, error %d), clients opened %d", got, byPeer, byError, rep.conns)
	}
	// Half-closes (mid-run and final) are orderly: the server sees EOF.
	if orderly := uint64(rep.conns - rep.resets - rep.closes); byPeer < orderly {
		ch.fail("server counted %d orderly closes, clients half-closed %d connections", byPeer, orderly)
	}
	if d.frames < uint64(rep.frames) {
		ch.fail("server relayed %d frames, clients verified %d", d.frames, rep.frames)
	}
	ch.t.Logf("%s: server %s", ch.tag, d)
}
