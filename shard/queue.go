package shard

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/cpu"
)

// A record in the ring is
//
//	[length u32][dest ID u32][payload: length bytes][0-3 bytes of padding]
//
// little-endian, starting on a 4-byte boundary. The length is the payload's,
// trailing NUL included. A length of padMark means "the rest of the ring is
// unused; the next record is at offset 0": a record never wraps, so the
// consumer hands out every payload as one slice.
const (
	recHeader = 8
	recAlign  = 4
	padMark   = ^uint32(0)
)

// recSize is the ring space one record with an n-byte payload takes.
func recSize(n int) int { return (recHeader + n + recAlign - 1) &^ (recAlign - 1) }

// QueueConfig sizes a Queue.
type QueueConfig struct {
	// Size is the ring allocated when the pair first talks, in bytes. It is
	// also how much a queue holds before Put reports it full.
	Size int
	// MaxPayload is the largest payload, trailing NUL included, that Put
	// must accept. A ring always has room for two of the largest records
	// it was recently asked to take: a bigger one makes it grow (by
	// doubling from Size, to at most two records of MaxPayload) as soon as
	// the queue is empty; Trim shrinks it back.
	MaxPayload int
}

// DefaultQueueSize is the ring a talking pair gets unless told otherwise:
// room for about 800 frames of 64 bytes.
const DefaultQueueSize = 64 << 10

func (c QueueConfig) check() error {
	if c.Size < 64 || c.Size%recAlign != 0 {
		return fmt.Errorf("shard: queue size %d: want a multiple of %d, at least 64", c.Size, recAlign)
	}
	if c.MaxPayload < 1 || c.MaxPayload > 1<<30 {
		return fmt.Errorf("shard: max payload %d: want 1 to 1GiB", c.MaxPayload)
	}
	return nil
}

// maxRing is the largest ring the queue may grow to: Size, or room for two
// records of the largest payload.
func (c QueueConfig) maxRing() int { return max(c.Size, 2*recSize(c.MaxPayload)) }

// Queue carries frames from one goroutine (the producer: the source loop)
// to one other (the consumer: the destination loop). It is a byte ring:
// Put copies a frame into the ring, Publish makes every frame Put since the
// last Publish visible with one atomic store, Drain hands the consumer what
// was published and gives the space back with one atomic store. No lock,
// no channel, and nothing allocated per frame: memory is taken on the first
// Put, and again only when a frame bigger than the ring passes or after
// Trim released an idle ring.
//
// Producer methods: Put, Publish, Trim, Armed. Consumer methods: Drain,
// Pending. Each side must stay on one goroutine at a time.
//
// Positions are byte counts since the queue was made (they never wrap in
// practice: 2^64 bytes). tail - consumed is what the ring holds; the
// producer refreshes its copy of consumed only when the ring looks full.
type Queue struct {
	cfg QueueConfig

	// Producer side.
	pbuf      []byte // the ring, as the producer sees it
	wpos      int    // offset of the next record in pbuf
	tail      uint64 // bytes written, published or not
	seen      uint64 // consumed, as last loaded
	growFor   int    // a refused record needs a bigger ring: place one when empty
	unsent    bool   // a Put happened since the last Publish
	wroteAny  bool   // a Put happened since the last Trim
	neededBig bool   // a record over Size passed since the last Trim
	// asked is set when ask stored a resume level. Only ask makes
	// resumeAt non-negative, so while asked is false resumeAt is -1 and
	// Armed answers without loading it: the hot path of Put does not read
	// the cache line the consumer writes at every Drain.
	asked bool
	_     cpu.CacheLinePad

	// What the producer hands the consumer when it (re)places the ring.
	// Written by the producer only while the queue is empty; read by the
	// consumer only after it loaded a published position beyond its head,
	// so the atomic store of published orders the two.
	ring  []byte
	epoch uint64 // bumped at every (re)placement; the consumer restarts at offset 0
	_     cpu.CacheLinePad

	published atomic.Uint64 // producer stores: end of the last published record
	_         cpu.CacheLinePad

	consumed atomic.Uint64 // consumer stores: everything before it may be overwritten
	// resumeAt is -1, or the fill level (bytes) at or below which the
	// producer, which found the ring full, wants to hear that it has room.
	// The consumer swaps it back to -1 when it gets there.
	resumeAt atomic.Int64
	_        cpu.CacheLinePad

	// Consumer side.
	cbuf   []byte
	rpos   int
	head   uint64
	cepoch uint64
}

// NewQueue returns an empty queue. It allocates no ring until the first Put.
func NewQueue(cfg QueueConfig) (*Queue, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return newQueue(cfg), nil
}

func newQueue(cfg QueueConfig) *Queue {
	q := &Queue{cfg: cfg}
	q.resumeAt.Store(-1)
	return q
}

// Put copies one frame (destination ID and payload, trailing NUL included)
// into the ring. It returns false when the ring has no room: the frame was
// not taken, and the producer should hold it and pause whoever sent it.
// The queue then asks the consumer's side to report room (see Drain and
// Armed), and until it does every Put is refused: no frame overtakes one
// that waits, or a stream of small frames could keep a big one out for
// ever. (The caller should retry its held frames in the order they were
// refused.) The frame stays invisible to the consumer until Publish.
//
// Put panics if the payload is longer than MaxPayload: the caller's parser
// enforces that limit, so a longer one is a bug.
func (q *Queue) Put(dest uint32, payload []byte) bool {
	if len(payload) > q.cfg.MaxPayload {
		panic(fmt.Sprintf("shard: Put of %d bytes, over MaxPayload %d", len(payload), q.cfg.MaxPayload))
	}
	r := recSize(len(payload))
	if q.Armed() || !q.reserve(r) {
		if 2*r > len(q.pbuf) {
			q.growFor = max(q.growFor, r)
		}
		if !q.ask(r) || !q.reserve(r) {
			return false
		}
	}
	b := q.pbuf[q.wpos : q.wpos+r]
	binary.LittleEndian.PutUint32(b[0:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[4:], dest)
	copy(b[recHeader:], payload)
	q.advance(r)
	q.unsent = true
	q.wroteAny = true
	if 2*r > q.cfg.Size {
		q.neededBig = true
	}
	return true
}

// advance moves the write position past n bytes of the ring.
func (q *Queue) advance(n int) {
	q.wpos += n
	q.tail += uint64(n)
	if q.wpos == len(q.pbuf) {
		q.wpos = 0
	}
}

// reserve makes room for a record of r bytes at wpos, padding to the end
// of the ring or replacing the ring when that is what it takes.
func (q *Queue) reserve(r int) bool {
	if q.growFor == 0 && q.fits(r) {
		return true
	}
	q.seen = q.consumed.Load()
	if q.tail == q.seen {
		// Empty: nothing published is unread and nothing unpublished is
		// waiting, so the consumer is not looking at the ring. Start
		// again at offset 0, in a bigger ring if this record or one that
		// was refused needs it.
		need := max(r, q.growFor)
		q.growFor = 0
		if 2*need > len(q.pbuf) && len(q.pbuf) < q.cfg.maxRing() {
			size := q.cfg.Size
			for size < 2*need {
				size *= 2
			}
			q.place(make([]byte, min(size, q.cfg.maxRing())))
		} else {
			q.place(q.pbuf)
		}
		return true
	}
	return q.growFor == 0 && q.fits(r)
}

// ask records that a refused record of r bytes waits for room. The level
// only ever goes down (the lowest level asked for suits every waiting
// record). Then it looks at the consumer's position once more: a consumer
// that drained before the ask did not see it, and might never drain
// again. It reports whether the room is there already, the ask withdrawn.
func (q *Queue) ask(r int) bool {
	want := q.resumeLevel(r)
	for {
		level := q.resumeAt.Load()
		if level >= 0 && level <= want {
			want = level
			break
		}
		if q.resumeAt.CompareAndSwap(level, want) {
			break
		}
	}
	q.asked = true
	q.seen = q.consumed.Load()
	return int64(q.tail-q.seen) <= want && q.resumeAt.CompareAndSwap(want, -1)
}

// fits reports whether r bytes fit at wpos given the last known consumed
// position, and writes the padding record if they fit only after a wrap.
func (q *Queue) fits(r int) bool {
	free := len(q.pbuf) - int(q.tail-q.seen)
	if q.wpos+r <= len(q.pbuf) {
		return r <= free
	}
	skip := len(q.pbuf) - q.wpos
	if skip+r > free {
		return false
	}
	binary.LittleEndian.PutUint32(q.pbuf[q.wpos:], padMark)
	q.advance(skip)
	return true
}

// place installs buf as the ring of an empty queue, writing from offset 0.
func (q *Queue) place(buf []byte) {
	q.pbuf, q.wpos = buf, 0
	q.ring = buf
	q.epoch++
}

// resumeLevel is the fill level at which a record of r bytes is sure to
// fit: with at least 2r bytes free it fits whatever the wrap, and an empty
// queue takes any record. It never asks for less than half the ring, so a
// paused sender does not resume for a few bytes only to pause again.
func (q *Queue) resumeLevel(r int) int64 {
	level := len(q.pbuf) - 2*r
	if level < 0 || q.growFor > 0 {
		return 0
	}
	return int64(min(level, len(q.pbuf)/2))
}

// Publish makes every frame Put since the last Publish visible to the
// consumer, with one atomic store. It reports whether there was anything
// to publish; the caller then wakes the consumer if it sleeps.
func (q *Queue) Publish() bool {
	if !q.unsent {
		return false
	}
	q.unsent = false
	q.published.Store(q.tail)
	return true
}

// Armed reports whether a Put found the ring full and the consumer has not
// yet reported room. Producer side.
func (q *Queue) Armed() bool {
	if !q.asked {
		return false
	}
	if q.resumeAt.Load() >= 0 {
		return true
	}
	q.asked = false
	return false
}

// Trim is for the producer's periodic tick. If the queue is empty it frees
// a ring that carried nothing since the last Trim, and shrinks one that
// grew for a big frame when none passed since the last Trim. The next Put
// allocates again. It returns how many bytes of ring it let go.
func (q *Queue) Trim() int {
	defer func() { q.wroteAny, q.neededBig = false, false }()
	if q.pbuf == nil || q.unsent || q.tail != q.consumed.Load() {
		return 0
	}
	if q.wroteAny && (len(q.pbuf) <= q.cfg.Size || q.neededBig) {
		return 0
	}
	n := len(q.pbuf)
	q.place(nil)
	return n
}

// Pending reports whether frames are published and not yet drained.
// Consumer side.
func (q *Queue) Pending() bool { return q.published.Load() != q.head }

// Drain hands fn the published frames, oldest first, until it has handed
// at least budget bytes of ring (always at least one frame, so a frame
// larger than the budget still passes). payload aliases the ring and is
// valid only until fn returns. The space goes back to the producer with one
// atomic store when Drain returns.
//
// room reports that the producer had found the ring full and now has the
// room it asked for: the caller wakes the producer's loop if it sleeps.
//
// fn must not call back into this queue.
func (q *Queue) Drain(budget int, fn func(dest uint32, payload []byte)) (frames int, room bool) {
	end := q.published.Load()
	if end == q.head {
		return 0, false
	}
	if q.cepoch != q.epoch {
		q.cbuf, q.rpos, q.cepoch = q.ring, 0, q.epoch
	} else if q.cbuf == nil {
		q.cbuf = q.ring // let go when emptied (below); same ring, same place
	}
	pos, taken := q.head, 0
	budget = max(budget, 1)
	for pos < end && taken < budget {
		n := binary.LittleEndian.Uint32(q.cbuf[q.rpos:])
		if n == padMark {
			pos += uint64(len(q.cbuf) - q.rpos)
			q.rpos = 0
			continue
		}
		dest := binary.LittleEndian.Uint32(q.cbuf[q.rpos+4:])
		start := q.rpos + recHeader
		fn(dest, q.cbuf[start:start+int(n):start+int(n)])
		r := recSize(int(n))
		q.rpos += r
		if q.rpos == len(q.cbuf) {
			q.rpos = 0
		}
		pos += uint64(r)
		taken += r
		frames++
	}
	q.head = pos
	q.consumed.Store(pos)
	if pos == end {
		// Empty for now: hold no reference to the ring, or the one Trim
		// releases stays alive here until the pair talks again.
		q.cbuf = nil
	}

	// Room: a Put that failed asked to hear when the fill level is down to
	// resumeAt. The store above comes first, so a producer that asks after
	// it sees the new consumed position in its second look instead.
	if level := q.resumeAt.Load(); level >= 0 &&
		int64(q.published.Load()-pos) <= level &&
		q.resumeAt.CompareAndSwap(level, -1) {
		room = true
	}
	return frames, room
}
