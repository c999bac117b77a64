package shard

import (
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/cpu"
)

// A loop's state, as others see it. Only the loop itself stores awake or
// sleeping; a producer moves sleeping to rung with a compare-and-swap, so
// of all the producers that find a loop asleep exactly one rings it.
const (
	awake    uint32 = iota
	sleeping        // about to wait, or waiting: ring to wake it
	rung            // a doorbell is on its way; nobody else needs to ring
)

// ControlDest is the destination ID of control records between loops (the
// relay's pause, resume and adopt records: relay/control.go). No
// connection has ID 0, so a consumer tells them from frames by the ID
// alone.
const ControlDest uint32 = 0

// Mesh connects N loops with one Queue per (source, destination) pair,
// created the first time the source sends to that destination. Each loop
// uses the mesh only through its own Port.
type Mesh struct {
	n      int
	qcfg   QueueConfig
	queues []atomic.Pointer[Queue] // [src*n+dst]; stored once, by src
	loops  []loopSlot
	ports  []Port
}

type loopSlot struct {
	state atomic.Uint32
	bell  Doorbell
	_     cpu.CacheLinePad
}

// NewMesh makes a mesh for len(bells) loops. bells[k] is how any goroutine
// wakes loop k (its reactor's Wake, say); a Port may override how its loop rings
// the others with SetRinger. Nothing is allocated per pair until it talks.
func NewMesh(qcfg QueueConfig, bells []Doorbell) (*Mesh, error) {
	if err := qcfg.check(); err != nil {
		return nil, err
	}
	n := len(bells)
	if n < 1 {
		return nil, fmt.Errorf("shard: a mesh needs at least one loop")
	}
	m := &Mesh{
		n:      n,
		qcfg:   qcfg,
		queues: make([]atomic.Pointer[Queue], n*n),
		loops:  make([]loopSlot, n),
		ports:  make([]Port, n),
	}
	for k, b := range bells {
		if b == nil {
			return nil, fmt.Errorf("shard: loop %d has no doorbell", k)
		}
		m.loops[k].bell = b
		m.ports[k] = Port{
			m:         m,
			k:         k,
			out:       make([]*Queue, n),
			in:        make([]*Queue, n),
			isDirty:   make([]bool, n),
			isStalled: make([]bool, n),
		}
	}
	return m, nil
}

// Loops is the number of loops.
func (m *Mesh) Loops() int { return m.n }

// Port is loop k's end of the mesh. Only loop k's goroutine may use it.
func (m *Mesh) Port(k int) *Port { return &m.ports[k] }

// Wake wakes loop k if it sleeps, from any goroutine: a signal handler, a
// placing loop that left a descriptor in k's inbox. Whatever the caller
// wants k to see must be stored before Wake, and k must look for it after
// Port.Sleep and before it waits.
func (m *Mesh) Wake(k int) { m.wake(k, nil) }

// wake rings loop k through r (or k's own doorbell) if k sleeps and nobody
// rang it yet. It reports whether it rang.
func (m *Mesh) wake(k int, r Ringer) bool {
	s := &m.loops[k].state
	if s.Load() != sleeping || !s.CompareAndSwap(sleeping, rung) {
		return false
	}
	if r != nil {
		r.Ring(k)
	} else {
		m.loops[k].bell.Ring()
	}
	return true
}

// PortStats counts what one loop did through its Port: the relay publishes
// its cross-loop metrics from them once per pass, on the loop's goroutine.
// Control records (ControlDest) are not frames, and are not counted as
// frames or bytes.
type PortStats struct {
	FramesOut, BytesOut uint64 // frames and payload bytes Sent towards other loops
	FramesIn, BytesIn   uint64 // frames and payload bytes drained from other loops
	Full                uint64 // Sends refused because a queue was full
	Rings               uint64 // doorbells this loop rang
	Sleeps              uint64 // times Sleep let the loop block
}

// Port is one loop's view of the mesh: its outgoing queues (it is their
// producer) and its incoming ones (it is their consumer).
//
// A pass of the loop, in order:
//
//	handle I/O; Send frames for other loops    (Send false: pause the sender)
//	Drain(budget, deliver)                      (frames other loops sent here)
//	Writable(resume)                            (queues that were full have room)
//	Flush()                                     (publish, ring sleeping loops)
//	if the pass did nothing and Sleep() {       (Sleep false: go round again)
//		wait (doorbell, own I/O, timer); Awake()
//	}
type Port struct {
	m      *Mesh
	k      int
	ringer Ringer

	out, in   []*Queue // by destination, by source; nil until the pair talks
	dirty     []int    // destinations with frames Put and not yet published
	isDirty   []bool
	stalled   []int // destinations whose queue refused a frame
	isStalled []bool
	next      int // the source Drain starts with, rotated for fairness

	stats PortStats
	_     cpu.CacheLinePad
}

// Index is the port's loop number.
func (p *Port) Index() int { return p.k }

// SetRinger replaces the way this loop wakes the others (by default their
// doorbells). Call it before the loop's first Flush.
func (p *Port) SetRinger(r Ringer) { p.ringer = r }

// Stats returns the counts so far.
func (p *Port) Stats() PortStats { return p.stats }

// Send copies a frame for a connection on loop dst into the queue towards
// dst. It reports false, taking nothing, when that queue is full or still
// holds back for a frame it refused earlier (see Queue.Put): the caller
// keeps the frame, pauses the connection it came from, and sends it again
// once Writable names dst, retrying held frames in the order they were
// refused. The frame becomes visible to dst at the next Flush.
func (p *Port) Send(dst int, dest uint32, payload []byte) bool {
	q := p.out[dst]
	if q == nil {
		q = newQueue(p.m.qcfg)
		p.out[dst] = q
		p.m.queues[p.k*p.m.n+dst].Store(q)
	}
	if !q.Put(dest, payload) {
		p.stats.Full++
		if !p.isStalled[dst] {
			p.isStalled[dst] = true
			p.stalled = append(p.stalled, dst)
		}
		return false
	}
	if dest != ControlDest {
		p.stats.FramesOut++
		p.stats.BytesOut += uint64(len(payload))
	}
	if !p.isDirty[dst] {
		p.isDirty[dst] = true
		p.dirty = append(p.dirty, dst)
	}
	return true
}

// Flush publishes what Send queued, one atomic store per destination, and
// rings every destination that sleeps. Rings go through the Ringer, so on
// io_uring they ride the loop's next submit.
func (p *Port) Flush() {
	for _, dst := range p.dirty {
		p.isDirty[dst] = false
		p.out[dst].Publish()
		// Publish stored before this load; the destination stores
		// sleeping before it looks at its queues. One of the two sees the
		// other, so a frame is never left behind a sleeping loop.
		if p.m.wake(dst, p.ringer) {
			p.stats.Rings++
		}
	}
	p.dirty = p.dirty[:0]
}

// Drain hands deliver the frames other loops published for this one: from
// each source at most about budget bytes (at least one frame), so one busy
// source cannot starve the others. payload is valid only until deliver
// returns. Sources whose full queue now has room are woken. It returns the
// number of frames delivered.
func (p *Port) Drain(budget int, deliver func(src int, dest uint32, payload []byte)) int {
	total := 0
	for i := 0; i < p.m.n; i++ {
		src := (p.next + i) % p.m.n
		q := p.inbox(src)
		if q == nil {
			continue
		}
		frames, room := q.Drain(budget, func(dest uint32, payload []byte) {
			if dest != ControlDest {
				p.stats.FramesIn++
				p.stats.BytesIn += uint64(len(payload))
			}
			deliver(src, dest, payload)
		})
		total += frames
		if room && p.m.wake(src, p.ringer) {
			p.stats.Rings++
		}
	}
	p.next = (p.next + 1) % p.m.n
	return total
}

// inbox returns the queue from src, or nil while src never sent here.
func (p *Port) inbox(src int) *Queue {
	if q := p.in[src]; q != nil {
		return q
	}
	q := p.m.queues[src*p.m.n+p.k].Load()
	p.in[src] = q
	return q
}

// Writable calls resume for every destination whose queue refused a frame
// and has since drained enough for frames of that size; the loop resumes
// the connections it paused for it.
func (p *Port) Writable(resume func(dst int)) {
	for i := 0; i < len(p.stalled); {
		dst := p.stalled[i]
		if p.out[dst].Armed() {
			i++
			continue
		}
		p.isStalled[dst] = false
		last := len(p.stalled) - 1
		p.stalled[i] = p.stalled[last]
		p.stalled = p.stalled[:last]
		resume(dst)
	}
}

// Pending reports whether there is mesh work for this loop: frames
// published towards it, or a full queue of its own that has room again.
func (p *Port) Pending() bool {
	for src := 0; src < p.m.n; src++ {
		if q := p.inbox(src); q != nil && q.Pending() {
			return true
		}
	}
	for _, dst := range p.stalled {
		if !p.out[dst].Armed() {
			return true
		}
	}
	return false
}

// Sleep is called by the loop when it is about to block. It flushes, tells
// the other loops this one is asleep, then looks at its queues once more.
// It returns true when the loop may block (until its doorbell rings, or its
// own I/O or timer wakes it) and false when work arrived meanwhile: the
// loop then runs another pass at once, and is counted as awake again.
//
// A loop that has other wake sources set by other goroutines (flags stored
// before Mesh.Wake) must check them after Sleep returns true, and call
// Awake instead of blocking if one is set.
func (p *Port) Sleep() bool {
	p.Flush()
	s := &p.m.loops[p.k].state
	s.Store(sleeping)
	if p.Pending() {
		s.Store(awake)
		return false
	}
	p.stats.Sleeps++
	return true
}

// Awake is called by the loop when its wait returns, whatever woke it.
// Producers stop ringing it until its next Sleep.
func (p *Port) Awake() { p.m.loops[p.k].state.Store(awake) }

// Trim calls Queue.Trim on every outgoing queue (see there); it is meant
// for the loop's periodic tick. It returns the bytes of ring released.
func (p *Port) Trim() int {
	freed := 0
	for _, q := range p.out {
		if q != nil {
			freed += q.Trim()
		}
	}
	return freed
}

// RingBytes is the memory this loop's outgoing queues hold now.
func (p *Port) RingBytes() int {
	n := 0
	for _, q := range p.out {
		if q != nil {
			n += len(q.pbuf)
		}
	}
	return n
}

// Unread is the bytes this loop has sent (published or not) that their
// destinations have not drained yet; zero means every frame this loop
// sent has been handed over. For shutdown: a loop may stop once its own
// Unread and its Pending are both empty and no other loop sends to it.
func (p *Port) Unread() int {
	n := 0
	for _, q := range p.out {
		if q != nil {
			n += int(q.tail - q.consumed.Load())
		}
	}
	return n
}
