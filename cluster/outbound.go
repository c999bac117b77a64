package cluster

import (
	"errors"
	"time"

	"github.com/nats-io/nats.go"
)

// run is the bridge goroutine.
func (b *Bridge) run() {
	defer close(b.done)
	tick := time.NewTicker(max(b.cfg.AnnounceEvery/4, time.Millisecond))
	defer tick.Stop()
	nextAnnounce := time.Now().Add(b.cfg.AnnounceEvery)
	for {
		select {
		case <-b.stop:
			return
		case <-b.bell:
			b.rung.Store(false)
		case <-b.announceNow:
			b.announce()
			nextAnnounce = time.Now().Add(b.cfg.AnnounceEvery)
		case now := <-tick.C:
			if !now.Before(nextAnnounce) {
				b.announce()
				nextAnnounce = now.Add(b.cfg.AnnounceEvery)
			}
			b.watchPeers()
			b.trimSinks()
		}
		if b.pass() > 0 {
			b.Ring() // more may be waiting: come back after a look at the other cases
		}
	}
}

// pass drains every loop's Source once and publishes what it batched.
func (b *Bridge) pass() int {
	b.passNow = b.since()
	b.passMax = int(b.maxBatch.Load())
	b.passBusUp = b.busUp.Load()
	b.passFailed = b.stopped.Load()
	total := 0
	for k, src := range b.loops.Out {
		n, room := src.Drain(b.cfg.DrainBudget, b.routeFn)
		total += n
		if room && !b.closed {
			b.loops.Wake(k)
		}
	}
	for _, p := range b.dirty {
		b.publish(p)
		p.dirty = false
	}
	b.dirty = b.dirty[:0]
	b.publishControl()
	return total
}

// route takes one frame from a loop's Source into its node's batch, or
// one control record (ID 0) into the pass's control message.
func (b *Bridge) route(dest uint32, frame []byte) {
	if dest == 0 {
		b.addControl(frame)
		return
	}
	node := b.scheme.NodeOf(dest)
	p := b.peer(node)
	switch {
	case b.passFailed:
		p.drop(DropStopped, 1)
		return
	case node == b.cfg.Node:
		p.drop(DropLocal, 1)
		return
	case !b.passBusUp:
		p.drop(DropBusDown, 1)
		return
	case !b.isUp(p, b.passNow):
		p.drop(DropNodeDown, 1)
		return
	case len(frame) == 0 || frame[len(frame)-1] != 0:
		p.drop(DropMalformed, 1)
		return
	case BatchHeader+4+len(frame) > b.passMax:
		p.drop(DropTooBig, 1)
		return
	}
	if !p.dirty {
		p.dirty = true
		b.dirty = append(b.dirty, p)
		p.out.Reset(b.cfg.Node)
	} else if p.out.Len()+4+len(frame) > b.passMax {
		b.publish(p)
	}
	p.out.Add(dest, frame)
}

// publish sends p's batch, if it holds any frame, and empties it.
func (b *Bridge) publish(p *peer) {
	n := p.out.Count()
	if n == 0 {
		return
	}
	data := p.out.Bytes()
	err := b.nc.Publish(p.subject, data)
	p.out.Reset(b.cfg.Node)
	switch {
	case err == nil:
		size := uint64(len(data))
		p.framesOut.Add(uint64(n))
		p.bytesOut.Add(size - BatchHeader - 4*uint64(n))
		b.stats.batchesOut.Add(1)
		b.stats.batchBytesOut.Add(size)
		b.stats.batchFramesOut.Add(uint64(n))
		if size > b.stats.batchMaxOut.Load() {
			b.stats.batchMaxOut.Store(size)
		}
	case errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrDisconnected):
		p.drop(DropBusDown, n)
	case errors.Is(err, nats.ErrMaxPayload):
		p.drop(DropTooBig, n)
	default:
		p.drop(DropPublish, n)
	}
}

// drainOut is Close's last pass over the loops' outboxes, after the
// bridge goroutine ended: it publishes until every outbox is empty, or
// drops what is left as DropShutdown once deadline has passed.
func (b *Bridge) drainOut(deadline time.Time) {
	b.closed = true
	for b.pass() > 0 {
		if time.Now().After(deadline) {
			drop := func(dest uint32, _ []byte) { b.peer(b.scheme.NodeOf(dest)).drop(DropShutdown, 1) }
			for _, src := range b.loops.Out {
				for n, _ := src.Drain(b.cfg.DrainBudget, drop); n > 0; n, _ = src.Drain(b.cfg.DrainBudget, drop) {
				}
			}
			return
		}
	}
}

// Trimmer is a Sink that can let go of memory it has not used lately;
// *shard.Queue is one. Trim is a producer method: the bridge calls it
// under the lock the inbound goroutine holds while it fills the Sinks.
type Trimmer interface {
	Trim() int
}

// trimSinks lets the loops' inboxes release rings idle since the last
// tick (every AnnounceEvery/4).
//
// A delivery may hold the lock while it waits for room in an inbox; the
// bridge goroutine does not wait for it (it publishes for every loop) and
// trims at a later tick instead.
func (b *Bridge) trimSinks() {
	if !b.inMu.TryLock() {
		return
	}
	defer b.inMu.Unlock()
	if b.inClosed {
		return
	}
	for _, in := range b.loops.In {
		if t, ok := in.(Trimmer); ok {
			t.Trim()
		}
	}
}
