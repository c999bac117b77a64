package cluster

import (
	"errors"
	"time"

	"github.com/nats-io/nats.go"
)

// onBatch runs on the client's goroutine for NAME.node.K: it is the one
// producer of every Sink.
func (b *Bridge) onBatch(m *nats.Msg) {
	b.inMu.Lock()
	defer b.inMu.Unlock()
	if b.inClosed {
		return
	}
	d, err := DecodeBatch(m.Data, b.lim)
	if err != nil {
		var be *BatchError
		if errors.As(err, &be) {
			b.stats.rejected[be.Reason].Add(1)
		}
		return
	}
	b.stats.batchesIn.Add(1)
	b.inFrom = b.peer(d.Source)
	if b.stopped.Load() {
		b.inFrom.drop(DropStopped, d.Frames)
		return
	}
	b.inFrames, b.inBytes = 0, 0
	d.Each(b.deliverFn)
	// Counted once per batch: the peer's counters share a cache line with
	// what the bridge goroutine reads for every outgoing frame.
	b.inFrom.framesIn.Add(b.inFrames)
	b.inFrom.bytesIn.Add(b.inBytes)
	b.publishTouched()
}

// publishTouched makes what this delivery put into the loops' inboxes
// visible, and wakes those loops.
func (b *Bridge) publishTouched() {
	for _, k := range b.inList {
		if b.loops.In[k].Publish() {
			b.loops.Wake(k)
		}
		b.inTouched[k], b.inBlocked[k] = false, false
	}
	b.inList = b.inList[:0]
}

// deliver hands one received frame to the loop that owns its ID. A full
// inbox is published and its loop woken, and the frame waits up to
// SinkWait for room; if none comes, it and the rest of this batch for that
// loop are dropped, so one stuck loop costs the batch at most one wait.
func (b *Bridge) deliver(dest uint32, frame []byte) {
	p := b.inFrom
	k := b.loops.Owner(dest)
	if k < 0 || k >= len(b.loops.In) {
		p.drop(DropNoLoop, 1)
		return
	}
	if !b.inTouched[k] {
		b.inTouched[k] = true
		b.inList = append(b.inList, k)
	}
	if b.inBlocked[k] {
		p.drop(DropSinkFull, 1)
		return
	}
	sink := b.loops.In[k]
	if !sink.Put(dest, frame) && !b.waitForRoom(k, dest, frame) {
		b.inBlocked[k] = true
		p.drop(DropSinkFull, 1)
		return
	}
	b.inFrames++
	b.inBytes += uint64(len(frame))
}

// waitForRoom publishes loop k's full inbox, wakes the loop, and waits
// until the loop says the inbox has room (Room) or SinkWait has passed.
func (b *Bridge) waitForRoom(k int, dest uint32, frame []byte) bool {
	sink := b.loops.In[k]
	if sink.Publish() {
		b.loops.Wake(k)
	}
	timer := time.NewTimer(b.cfg.SinkWait)
	defer timer.Stop()
	for {
		// A Put refused after the loop drained asks again; Room answers
		// each ask once, so this never waits for a signal already spent.
		if sink.Put(dest, frame) {
			return true
		}
		select {
		case <-b.room[k]:
		case <-timer.C:
			return sink.Put(dest, frame)
		}
	}
}

// Room tells the bridge that loop k's inbox, which had refused a frame,
// has room again. Loops call it; it never blocks.
func (b *Bridge) Room(k int) {
	select {
	case b.room[k] <- struct{}{}:
	default:
	}
}
