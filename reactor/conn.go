package reactor

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Conn is one accepted TCP connection. It is owned by the loop: its methods
// only record what the owner wants (queue bytes, pause, close) and the
// backend carries it out on the next Poll, so they never block and never
// make a system call.
//
// A Conn is valid from its Opened event to its Closed event. Conn values are
// recycled afterwards (a new connection may get the same *Conn), so the owner
// must drop every reference when it sees Closed.
type Conn struct {
	fd    int
	slot  int32
	gen   uint32
	flags connFlags
	loop  *base

	// Output, in chunks (outqueue.go). Send appends; a send covers a prefix
	// and consumes it when the kernel reports how much it took. On io_uring
	// the kernel reads chunks while Send keeps appending after them.
	out     outQueue
	written uint64
	vec     *sendVec // io_uring: sendmsg arguments, lent while a multi-chunk send is in flight

	drainMark int

	// Backend bookkeeping: operations the kernel still holds for this slot
	// (io_uring), or the interest set registered with epoll.
	inflight int32
	interest uint32
}

type connFlags uint16

const (
	flagOpen       connFlags = 1 << iota // between Opened and Closed events
	flagDirty                            // on the loop's dirty list
	flagWantPause                        // owner asked for reads to stop
	flagReadPaused                       // backend has actually stopped reading
	flagWantClose                        // owner called Close
	flagEOF                              // peer closed its sending side
	flagClosing                          // backend is tearing the socket down
	flagDrainArmed                       // NotifyDrained mark is set
	flagRecvArmed                        // io_uring: multishot recv in flight
	flagSendArmed                        // io_uring: send in flight
	flagCloseSent                        // io_uring: close(2) of fd submitted
)

// Slot is a small dense index of the connection, stable from Opened to
// Closed: owners use it to keep per-connection state in a slice.
func (c *Conn) Slot() int { return int(c.slot) }

// Send queues a copy of b for the peer. Bytes from successive calls go out
// in order. It is a no-op once Close was called or the connection is gone.
func (c *Conn) Send(b []byte) {
	if c.flags&(flagOpen|flagWantClose|flagClosing) != flagOpen {
		return
	}
	c.out.push(b, &c.loop.pool)
	c.loop.markDirty(c)
}

// Pending is the number of queued output bytes not yet accepted by the kernel.
func (c *Conn) Pending() int { return c.out.n }

// Written is the total number of bytes the kernel accepted for this
// connection.
func (c *Conn) Written() uint64 { return c.written }

// Unacked is the number of bytes the kernel has taken for this connection
// but the peer has not acknowledged yet (SIOCOUTQ). Unlike the other
// methods it makes a system call, so owners ask it only of connections
// with output pending, or at shutdown. Written minus Unacked is what the
// peer really received: the measure of a stuck reader, since the kernel's
// send buffer can hide a stall for seconds. At shutdown it says when
// closing is safe: closing a socket whose input was left unread makes the
// kernel reset it and drop whatever the peer has not acknowledged.
func (c *Conn) Unacked() int {
	if c.flags&(flagOpen|flagClosing) != flagOpen {
		return 0
	}
	n, err := unix.IoctlGetInt(c.fd, unix.SIOCOUTQ)
	if err != nil {
		return 0
	}
	return n
}

// PauseRead stops delivering Received events for this connection until
// ResumeRead. Bytes the kernel already handed over may still arrive once.
func (c *Conn) PauseRead() {
	if c.flags&(flagOpen|flagWantPause) == flagOpen {
		c.flags |= flagWantPause
		c.loop.markDirty(c)
	}
}

// ResumeRead undoes PauseRead.
func (c *Conn) ResumeRead() {
	if c.flags&(flagOpen|flagWantPause) == flagOpen|flagWantPause {
		c.flags &^= flagWantPause
		c.loop.markDirty(c)
	}
}

// ReadPaused reports whether the owner has paused reading.
func (c *Conn) ReadPaused() bool { return c.flags&flagWantPause != 0 }

// NotifyDrained arms a one-shot Drained event for when Pending falls to mark
// bytes or fewer. Arming it again moves the mark.
func (c *Conn) NotifyDrained(mark int) {
	if c.flags&flagOpen == 0 {
		return
	}
	c.drainMark = mark
	c.flags |= flagDrainArmed
	c.loop.markDirty(c)
}

// Close discards queued output and closes the connection. A Closed event
// with ErrClosedLocally follows on a later Poll.
func (c *Conn) Close() {
	if c.flags&flagOpen != 0 && c.flags&flagWantClose == 0 {
		c.flags |= flagWantClose
		c.loop.markDirty(c)
	}
}

// consumed records n bytes accepted by the kernel.
func (c *Conn) consumed(n int) {
	c.out.consume(n, &c.loop.pool)
	c.written += uint64(n)
}

// base is the state both backends share: the slot table, the list of
// connections with requested changes, and events produced outside I/O
// completions.
type base struct {
	conns   []*Conn
	free    []int32
	held    []int32 // released this Poll; free from the next one
	dirty   []*Conn
	pending []Event
	open    int
	stats   Stats
	pool    chunkPool           // output chunks
	segs    [maxSegments][]byte // scratch for outQueue.peek
}

// newConn takes a free slot for fd and marks it open.
func (b *base) newConn(fd int) *Conn {
	var c *Conn
	if n := len(b.free); n > 0 {
		c = b.conns[b.free[n-1]]
		b.free = b.free[:n-1]
	} else {
		c = &Conn{slot: int32(len(b.conns)), loop: b}
		b.conns = append(b.conns, c)
	}
	c.fd = fd
	c.flags = flagOpen
	b.open++
	b.stats.Accepted.Add(1)
	b.stats.Open.Store(int64(b.open))
	return c
}

// lookup returns the connection in slot if its generation matches.
func (b *base) lookup(slot int32, gen uint32) *Conn {
	if slot < 0 || int(slot) >= len(b.conns) {
		return nil
	}
	c := b.conns[slot]
	if c.gen != gen&genMask {
		return nil
	}
	return c
}

// genMask bounds generations to what the io_uring user_data codec carries.
const genMask = 1<<24 - 1

// release retires a fully torn-down connection's slot; it becomes free at
// the next Poll (see reuseSlots). Its generation moves on, so late
// completions or readiness reports for the old socket miss.
func (b *base) release(c *Conn) {
	c.gen = (c.gen + 1) & genMask
	c.fd = -1
	c.flags = 0
	c.out.reset(&b.pool)
	c.written = 0
	c.inflight = 0
	c.interest = 0
	b.held = append(b.held, c.slot)
}

// reuseSlots makes the slots released during the previous Poll available
// again. It runs at the start of Poll, after the owner has handled that
// Poll's events: a slot freed and reused within one Poll would hand the
// same *Conn to a new connection while the owner, not having seen the
// Closed event yet, still routes the old connection's traffic to it.
func (b *base) reuseSlots() {
	b.free = append(b.free, b.held...)
	b.held = b.held[:0]
}

// closed reports the connection gone to the owner, once.
func (b *base) closed(c *Conn, err error) {
	if c.flags&flagOpen == 0 {
		return
	}
	c.flags &^= flagOpen
	b.open--
	b.stats.Closed.Add(1)
	b.stats.Open.Store(int64(b.open))
	b.pending = append(b.pending, Event{Kind: Closed, Conn: c, Err: err})
}

func (b *base) markDirty(c *Conn) {
	if c.flags&flagDirty == 0 {
		c.flags |= flagDirty
		b.dirty = append(b.dirty, c)
	}
}

// checkDrained emits Drained when an armed mark is reached.
func (b *base) checkDrained(c *Conn) {
	if c.flags&(flagDrainArmed|flagOpen) == flagDrainArmed|flagOpen && c.Pending() <= c.drainMark {
		c.flags &^= flagDrainArmed
		b.pending = append(b.pending, Event{Kind: Drained, Conn: c})
	}
}

// takePending moves queued events into events and returns how many it moved.
func (b *base) takePending(events []Event) int {
	n := copy(events, b.pending)
	if n == len(b.pending) {
		clear(b.pending)
		b.pending = b.pending[:0]
	} else {
		rest := copy(b.pending, b.pending[n:])
		clear(b.pending[rest:])
		b.pending = b.pending[:rest]
	}
	return n
}

// Stats are counters a loop keeps for metrics. The loop writes them with
// atomic operations; any goroutine may read them.
type Stats struct {
	Open        atomic.Int64
	Accepted    atomic.Uint64
	Closed      atomic.Uint64
	Iterations  atomic.Uint64 // waits for I/O
	Completions atomic.Uint64 // CQEs (io_uring) or ready descriptors (epoll) handled
	NoBuffers   atomic.Uint64 // io_uring recv found the buffer ring empty (ENOBUFS)
	AcceptFails atomic.Uint64 // accept failed for lack of descriptors (EMFILE/ENFILE)
	// BatchSizes is a histogram of completions per wait: bucket i counts
	// waits that returned at most BatchBounds[i] completions; the last
	// bucket counts the rest.
	BatchSizes [len(BatchBounds) + 1]atomic.Uint64
}

// BatchBounds are the upper bounds of the Stats.BatchSizes buckets.
var BatchBounds = [...]int{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}

func (s *Stats) observeBatch(n int) {
	s.Iterations.Add(1)
	s.Completions.Add(uint64(n))
	i := 0
	for i < len(BatchBounds) && n > BatchBounds[i] {
		i++
	}
	s.BatchSizes[i].Add(1)
}
