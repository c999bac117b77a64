package reactor

import (
	"unsafe"

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
	fd    int32 // a descriptor is an int in Go's calls, 32 bits in the kernel's
	slot  int32
	gen   uint32
	flags connFlags
	loop  *eventLoop

	// Output, in chunks (outqueue.go). Send appends; a send covers a prefix
	// and consumes it when the kernel reports how much it took. On io_uring
	// the kernel reads chunks while Send keeps appending after them.
	out     outQueue
	written uint64

	drainMark int
}

// The idle memory per connection (README, Performance) counts a Conn, one
// allocation of the 64-byte size class: a new field must fit in or win its
// bytes elsewhere.
var _ [64 - unsafe.Sizeof(Conn{})]struct{}

type connFlags uint16

// What the owner asked for and what the peer did. What an engine has in
// flight or registered for a connection is its own business, kept in the
// engine's per-slot table (uringSlot, epollEngine.interest), with one
// exception: flagPinned, which Send must see.
const (
	flagOpen       connFlags = 1 << iota // between Opened and Closed events
	flagDirty                            // on the loop's dirty list
	flagWantPause                        // owner asked for reads to stop
	flagWantClose                        // owner called Close
	flagEOF                              // peer closed its sending side
	flagDrainArmed                       // NotifyDrained mark is set
	flagPinned                           // the kernel may be reading the output chunks (an io_uring send is in flight)
	flagTLS                              // a TLS connection: its record-layer state is in eventLoop.tls (tls.go)
)

// Slot is a small dense index of the connection, stable from Opened to
// Closed: owners use it to keep per-connection state in a slice.
func (c *Conn) Slot() int { return int(c.slot) }

// Send queues a copy of b for the peer. Bytes from successive calls go out
// in order. It is a no-op once Close was called or the connection is gone.
func (c *Conn) Send(b []byte) {
	if c.flags&(flagOpen|flagWantClose) != flagOpen {
		return
	}
	c.out.push(b, &c.loop.pool, c.flags&flagPinned != 0)
	c.loop.markDirty(c)
}

// Pending is the number of queued output bytes not yet accepted by the
// kernel. On a TLS connection it counts plaintext: bytes queued, and those
// sealed into ciphertext the kernel has not taken whole yet.
func (c *Conn) Pending() int { return c.out.n }

// Written is the total number of bytes the kernel accepted for this
// connection: on a TLS connection, ciphertext, so that Written minus
// Unacked stays in one unit.
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
	if c.flags&flagOpen == 0 {
		return 0
	}
	n, err := unix.IoctlGetInt(int(c.fd), unix.SIOCOUTQ)
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
