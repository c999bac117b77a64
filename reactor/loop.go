package reactor

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// eventLoop is the Loop both engines share: the slot table, the requests
// owners record on connections, the listener with its accept back-off, the
// waker, and Poll, which runs the steps of the contract in doc.go in order.
// What is specific to io_uring or epoll sits behind engine.
type eventLoop struct {
	io  engine
	cfg Config

	conns   []*Conn
	free    []int32 // slots ready for new connections
	held    []int32 // released this Poll; free from the next one
	dirty   []*Conn // connections with requests to apply at the next Poll
	pending []Event // events produced outside the engine's completions, in order
	open    int
	stats   Stats
	pool    chunkPool           // output chunks
	segs    [maxSegments][]byte // scratch for outQueue.peek

	listenFd    int // -1 once StopAccepting ran
	addr        net.Addr
	acceptArmed bool // the engine is accepting on listenFd
	// After descriptor exhaustion accepting pauses until acceptPausedUntil;
	// the warning is logged at most once a second.
	acceptPausedUntil time.Time
	lastAcceptLog     time.Time

	waker *waker
	// doorbellSeen: a doorbell from another loop already became a Woken
	// event in this Poll; more of them fold into it.
	doorbellSeen bool
	err          error // first failure to hand work to the kernel; Poll reports it
	isClosed     bool

	// TLS connections (tls.go): record-layer state by slot (nil for a
	// plaintext connection), the inbox AdoptTLS fills, and the buffers
	// only TLS connections use.
	tls      []*tlsState
	tlsIn    tlsInbox
	tlsSpare []tlsAdoption
	tlsConns int
	tlsPlain tlsArena
	tlsBufs  tlsBufPool
	tlsSweep time.Time
}

// engine is what one I/O backend provides. Poll calls it in the order the
// contract in doc.go lists; a method may call back into eventLoop (newConn,
// closed, release, markDirty, wrote, pauseAccepting) but never into Poll.
type engine interface {
	backend() Backend
	features() string

	// giveBack returns the receive buffers lent out by the previous Poll.
	giveBack()

	// startSend starts writing c's queued output (c.out.n > 0) unless a
	// write is already under way. A failed write may close c.
	startSend(c *Conn)
	// armConn makes what the engine watches for c match c's state: reads
	// unless the owner paused c or the peer finished sending, and (epoll)
	// write readiness while output waits. It may close c on failure.
	armConn(c *Conn)
	// reading reports whether the engine may still hand out data for c:
	// io_uring: a recv is in flight (armed, or cancelled and its last
	// completion not yet reaped); epoll: read interest is registered.
	reading(c *Conn) bool
	// closeConn reports c closed (eventLoop.closed) and tears it down. The
	// slot goes back (eventLoop.release) once the kernel holds nothing of c.
	closeConn(c *Conn, err error)

	// armAccept starts accepting on listenFd. disarmAccept stops it; the
	// engine clears acceptArmed once nothing of the accept is left in the
	// kernel.
	armAccept() error
	disarmAccept()

	// wait hands whatever is queued to the kernel and waits up to timeout
	// (< 0: for ever, 0: not at all) for I/O. room is how many events the
	// caller's slice still holds; with none, nothing is reaped afterwards.
	wait(timeout time.Duration, room int) error
	// complete translates what the wait found into events from events[n]
	// on. It returns the new count and how many completions (io_uring) or
	// ready descriptors (epoll) it handled.
	complete(events []Event, n int) (int, int)

	// adopt takes c, just opened on a descriptor another loop (or this one,
	// under HandOff) accepted, puts it in the engine's blocking mode and
	// starts watching it, as the accept path does. It may close c.
	adopt(c *Conn)
	// ringLoop queues a doorbell for dst through the kernel (io_uring:
	// MSG_RING) and reports whether it did; if not, RingLoop writes dst's
	// eventfd. Called on this loop's goroutine; dst belongs to another.
	ringLoop(dst *eventLoop) bool

	// trim gives back what the engine keeps for reuse and no connection
	// holds (Loop.Trim). Called between Polls, after the owner handled
	// the last one's events.
	trim()

	// close releases the engine's resources. Connections that are still
	// open are closed by eventLoop.Close afterwards; the engine closes the
	// descriptors of those it was tearing down.
	close() error
}

// Poll carries out the steps of the contract in doc.go: give back borrowed
// buffers, reuse freed slots, apply the owner's requests, arm, wait,
// translate completions into events, hand out pending events.
func (l *eventLoop) Poll(events []Event, timeout time.Duration) (int, error) {
	if l.isClosed {
		return 0, ErrLoopClosed
	}
	if len(events) < 2 {
		return 0, ErrShortEvents
	}
	l.doorbellSeen = false
	l.io.giveBack()
	l.tlsPlain.reset()
	l.reuseSlots()
	l.takeTLSAdoptions()
	if l.tlsConns > 0 || len(l.tlsPlain.blocks) > 0 {
		l.sweepTLS()
	}
	l.applyRequests()
	timeout = l.armAccept(timeout)
	if l.err != nil {
		return 0, l.err
	}

	n := l.takePending(events)
	if n > 0 {
		timeout = 0 // there is something to hand back already
	}
	room := len(events) - n
	if err := l.io.wait(timeout, room); err != nil {
		return n, err
	}
	if room == 0 {
		// The rest of the pending events, and any I/O, wait for the next Poll.
		return n, l.err
	}
	n, handled := l.io.complete(events, n)
	l.stats.observeBatch(handled)
	n += l.takePending(events[n:])
	return n, l.err
}

// applyRequests carries out what owners asked for through Conn methods
// since the last Poll. Connections marked dirty on the way (by a close or a
// failed write) are handled in the same walk.
func (l *eventLoop) applyRequests() {
	for i := 0; i < len(l.dirty); i++ {
		c := l.dirty[i]
		l.dirty[i] = nil
		c.flags &^= flagDirty
		if c.flags&flagOpen == 0 {
			continue // closed before its requests came up
		}
		if c.flags&flagWantClose != 0 {
			if c.flags&flagTLS != 0 {
				l.tlsGoodbye(c)
			}
			l.io.closeConn(c, ErrClosedLocally)
			continue
		}
		if l.hasOutput(c) {
			if l.io.startSend(c); c.flags&flagOpen == 0 {
				continue // the write failed and closed it
			}
		}
		if c.flags&flagEOF != 0 && !l.hasOutput(c) {
			// The peer finished sending (or, on TLS, reading ended), everything
			// queued for it is out, and the owner has handled every event
			// before this Poll.
			l.io.closeConn(c, l.endErr(c))
			continue
		}
		l.checkDrained(c)
		l.io.armConn(c)
	}
	l.dirty = l.dirty[:0]
}

// wrote follows the kernel taking some of c's output: Drained when its mark
// is reached and, once the peer is done and nothing is left to send, the
// close at the next Poll (not now: the owner has yet to handle this batch,
// which may queue more output for c).
func (l *eventLoop) wrote(c *Conn) {
	l.checkDrained(c)
	if c.flags&flagEOF != 0 && !l.hasOutput(c) {
		l.markDirty(c)
	}
}

// armAccept arms the listener unless it is armed, closed, or paused after
// descriptor exhaustion; while paused, the wait ends when the pause does.
// It returns the timeout for the wait.
func (l *eventLoop) armAccept(timeout time.Duration) time.Duration {
	if l.acceptArmed || l.listenFd < 0 {
		return timeout
	}
	now := time.Now()
	if now.Before(l.acceptPausedUntil) {
		return shorter(timeout, l.acceptPausedUntil.Sub(now))
	}
	if err := l.io.armAccept(); err != nil {
		l.acceptPausedUntil = now.Add(l.cfg.AcceptRetry)
		l.cfg.Logger.Warn("arming the listener failed; retrying", "backend", l.io.backend(), "err", err)
		return shorter(timeout, l.cfg.AcceptRetry)
	}
	l.acceptArmed = true
	return timeout
}

// pauseAccepting handles an accept that failed for lack of descriptors or
// memory: the listener stays healthy, but accepting stops for AcceptRetry,
// or every queued connection would fail the same way and the loop would
// spin. Connections keep queuing in the kernel's backlog meanwhile.
func (l *eventLoop) pauseAccepting(err error) {
	l.stats.AcceptFails.Add(1)
	now := time.Now()
	l.acceptPausedUntil = now.Add(l.cfg.AcceptRetry)
	if now.Sub(l.lastAcceptLog) >= time.Second {
		l.lastAcceptLog = now
		l.cfg.Logger.Warn("accept failed for lack of descriptors or memory; accepting pauses",
			"backend", l.io.backend(), "err", err, "pause", l.cfg.AcceptRetry)
	}
	if l.acceptArmed {
		l.io.disarmAccept()
	}
}

// shorter returns the smaller of two timeouts, where negative means none.
func shorter(t, d time.Duration) time.Duration {
	if t < 0 || d < t {
		return d
	}
	return t
}

// newConn takes a free slot for fd and marks it open.
func (l *eventLoop) newConn(fd int) *Conn {
	var c *Conn
	if n := len(l.free); n > 0 {
		c = l.conns[l.free[n-1]]
		l.free = l.free[:n-1]
	} else {
		c = &Conn{slot: int32(len(l.conns)), loop: l}
		l.conns = append(l.conns, c)
	}
	c.fd = int32(fd)
	c.flags = flagOpen
	l.open++
	l.stats.Accepted.Add(1)
	l.stats.Open.Store(int64(l.open))
	l.stats.Descriptors.Add(1)
	return c
}

// slotState returns an engine's per-slot record for slot, growing the
// engine's table when the slot table just grew (slots are dense, so by one).
func slotState[T any](states *[]T, slot int32) *T {
	if int(slot) == len(*states) {
		var zero T
		*states = append(*states, zero)
	}
	return &(*states)[slot]
}

// lookup returns the connection in slot if its generation matches.
func (l *eventLoop) lookup(slot int32, gen uint32) *Conn {
	if slot < 0 || int(slot) >= len(l.conns) {
		return nil
	}
	c := l.conns[slot]
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
func (l *eventLoop) release(c *Conn) {
	if c.flags&flagTLS != 0 {
		l.releaseTLS(c)
	}
	c.gen = (c.gen + 1) & genMask
	c.fd = -1
	c.flags = 0
	c.out.reset(&l.pool)
	c.written = 0
	l.held = append(l.held, c.slot)
	l.stats.Descriptors.Add(-1)
}

// reuseSlots makes the slots released during the previous Poll available
// again. It runs at the start of Poll, after the owner has handled that
// Poll's events: a slot freed and reused within one Poll would hand the
// same *Conn to a new connection while the owner, not having seen the
// Closed event yet, still routes the old connection's traffic to it.
func (l *eventLoop) reuseSlots() {
	l.free = append(l.free, l.held...)
	l.held = l.held[:0]
}

// closed reports the connection gone to the owner, once.
func (l *eventLoop) closed(c *Conn, err error) {
	if c.flags&flagOpen == 0 {
		return
	}
	c.flags &^= flagOpen
	l.open--
	l.stats.Closed.Add(1)
	l.stats.Open.Store(int64(l.open))
	l.pending = append(l.pending, Event{Kind: Closed, Conn: c, Err: err})
}

func (l *eventLoop) markDirty(c *Conn) {
	if c.flags&flagDirty == 0 {
		c.flags |= flagDirty
		l.dirty = append(l.dirty, c)
	}
}

// checkDrained emits Drained when an armed mark is reached.
func (l *eventLoop) checkDrained(c *Conn) {
	if c.flags&(flagDrainArmed|flagOpen) == flagDrainArmed|flagOpen && c.out.n <= c.drainMark {
		c.flags &^= flagDrainArmed
		l.pending = append(l.pending, Event{Kind: Drained, Conn: c})
	}
}

// takePending moves queued events into events and returns how many it moved.
func (l *eventLoop) takePending(events []Event) int {
	n := copy(events, l.pending)
	if n == len(l.pending) {
		clear(l.pending)
		l.pending = l.pending[:0]
	} else {
		rest := copy(l.pending, l.pending[n:])
		clear(l.pending[rest:])
		l.pending = l.pending[:rest]
	}
	return n
}

func (l *eventLoop) Backend() Backend { return l.io.backend() }
func (l *eventLoop) Features() string { return l.io.features() }
func (l *eventLoop) Addr() net.Addr   { return l.addr }
func (l *eventLoop) Stats() *Stats    { return &l.stats }

// Wake makes the loop return a Woken event. Safe from any goroutine, even
// racing with Close: it touches nothing but the eventfd (see waker).
func (l *eventLoop) Wake() { l.waker.wake() }

// StopAccepting closes the listener; open connections stay. Idempotent.
func (l *eventLoop) StopAccepting() {
	if l.listenFd < 0 {
		return
	}
	if l.acceptArmed {
		l.io.disarmAccept()
	}
	_ = unix.Close(l.listenFd)
	l.listenFd = -1
}

// ReadsStopped reports whether no open connection can produce another
// Received event (see Loop). A connection the owner closed counts as
// stopped: its close is applied before the next wait, and the io_uring
// engine hands out no data for it meanwhile.
func (l *eventLoop) ReadsStopped() bool {
	for _, c := range l.conns {
		if c.flags&(flagOpen|flagWantClose) != flagOpen {
			continue
		}
		if c.flags&(flagWantPause|flagEOF) == 0 || l.io.reading(c) {
			return false
		}
	}
	return true
}

// Close closes the engine, every connection, the listener and the waker,
// without emitting events. Idempotent.
func (l *eventLoop) Close() error {
	if l.isClosed {
		return nil
	}
	l.isClosed = true
	l.closeTLSInbox()
	err := l.io.close()
	for _, c := range l.conns {
		if c.fd >= 0 && c.flags&flagOpen != 0 {
			_ = unix.Close(int(c.fd))
		}
		c.fd = -1
		c.flags = 0
	}
	l.open = 0
	l.stats.Open.Store(0)
	l.stats.Descriptors.Store(0)
	clear(l.dirty)
	l.dirty = l.dirty[:0]
	for _, ev := range l.pending {
		if ev.Kind == Accepted {
			_ = unix.Close(ev.Fd) // never handed to the owner
		}
	}
	clear(l.pending)
	l.pending = l.pending[:0]
	if l.listenFd >= 0 {
		_ = unix.Close(l.listenFd)
		l.listenFd = -1
	}
	if l.waker != nil {
		// Wake stays safe after this: writes to a closed os.File just fail.
		l.waker.close()
	}
	return err
}

var _ Loop = (*eventLoop)(nil)
