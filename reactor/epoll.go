package reactor

// The epoll engine: the fallback when io_uring cannot be used, and the
// baseline the io_uring engine is measured against. Sockets are
// non-blocking and level-triggered; requests are carried out at once with
// plain system calls while Poll applies them.
//
// Its part in each step of Poll:
//
//   - giveBack resets the read arena: Data handed out by the previous Poll
//     is dead.
//   - startSend writes straight from the output chunks until the socket
//     buffer is full; armConn registers EPOLLOUT until the rest is written,
//     and read interest unless paused or at EOF.
//   - wait is epoll_wait; complete handles each ready descriptor: the
//     listener accepts, the eventfd wakes, a connection writes queued
//     output and does one read into the next free arena chunk.
//
// Level-triggering keeps this simple: whatever one Poll leaves undone
// (arena full, caller's slice full, accept budget spent) is reported again
// by the next epoll_wait, so nothing has to be remembered here.
//
// Received goes straight into the caller's slice, because its Data points
// into the arena and must not outlive this Poll. Every other event
// (Opened, Closed, Drained, Woken) goes through the shared pending queue,
// in the order it happened.

import (
	"fmt"
	"math"
	"time"
	"unsafe"

	"github.com/ringrelay/ringrelay/internal/bytesize"
	"golang.org/x/sys/unix"
)

// Reserved values of EpollEvent.Fd for the two descriptors that are not
// connections. Connections store their slot there (never negative) and
// their generation in Pad.
const (
	epollListenerSlot = -1
	epollWakeSlot     = -2
)

const (
	// epollReadyMax is the size of the epoll_wait result array.
	epollReadyMax = 1024
	// epollAcceptMax bounds the accepts of one Poll, so a connection storm
	// cannot keep a single Poll from returning.
	epollAcceptMax = 256
	// epollReadInterest is what a connection that wants bytes registers.
	// EPOLLRDHUP reports the peer's FIN even when no data comes with it.
	epollReadInterest = unix.EPOLLIN | unix.EPOLLRDHUP
)

type epollEngine struct {
	*eventLoop
	epfd int

	// ready receives epoll_wait results (allocated once); nready is how
	// many the last wait returned.
	ready  []unix.EpollEvent
	nready int
	// ctl is the scratch argument for epoll_ctl, kept here so registering
	// interest does not allocate.
	ctl unix.EpollEvent
	// vec is the scratch argument of a multi-chunk sendmsg.
	vec sendVec
	// interest is the mask registered for each connection slot.
	interest []uint32

	// arena is the loop-wide read buffer: Buffers chunks of BufferSize
	// bytes. A readable connection borrows the next chunk for one read, and
	// every chunk returns at the start of the next Poll. Idle connections
	// hold no read memory at all.
	arena     []byte
	arenaNext int // chunks handed out in this Poll
}

// newEpoll opens the listener on addr and the epoll instance around it.
// cfg must already carry its defaults.
func newEpoll(addr string, cfg Config) (*eventLoop, error) {
	if cfg.BufferSize == 0 {
		cfg.BufferSize = epollBufferSize
	}
	if cfg.Buffers <= 0 || cfg.BufferSize <= 0 {
		return nil, fmt.Errorf("epoll: read arena of %d x %d bytes: both must be positive", cfg.Buffers, cfg.BufferSize)
	}
	l := &eventLoop{cfg: cfg, listenFd: -1}
	e := &epollEngine{eventLoop: l, epfd: -1}
	l.io = e
	fail := func(err error) (*eventLoop, error) {
		l.Close()
		return nil, err
	}

	var err error
	if e.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		e.epfd = -1
		return fail(fmt.Errorf("epoll_create1: %w", err))
	}
	if l.waker, err = newWaker(); err != nil {
		return fail(err)
	}
	// The eventfd stays registered for the loop's life: Wake needs nothing
	// armed per Poll.
	if err := e.control(unix.EPOLL_CTL_ADD, l.waker.fd, unix.EPOLLIN, epollWakeSlot, 0); err != nil {
		return fail(fmt.Errorf("epoll_ctl add eventfd: %w", err))
	}
	if err := l.listenOn(addr); err != nil {
		return fail(err)
	}
	if l.listenFd >= 0 {
		if err := e.armAccept(); err != nil {
			return fail(err)
		}
		l.acceptArmed = true
	}

	e.ready = make([]unix.EpollEvent, epollReadyMax)
	// The arena is mapped outside the Go heap, like the io_uring buffer
	// ring, so that trim can hand its pages back to the kernel.
	if e.arena, err = unix.Mmap(-1, 0, cfg.Buffers*cfg.BufferSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE); err != nil {
		return fail(fmt.Errorf("epoll: read arena: mmap %d bytes: %w", cfg.Buffers*cfg.BufferSize, err))
	}
	return l, nil
}

func (e *epollEngine) backend() Backend { return Epoll }

func (e *epollEngine) features() string {
	return fmt.Sprintf("epoll, level-triggered, read arena %dx%s", e.cfg.Buffers, bytesize.Format(int64(e.cfg.BufferSize)))
}

func (e *epollEngine) giveBack() { e.arenaNext = 0 }

// trim gives the arena's pages back to the kernel: only this loop's own
// read(2) calls write into it, and none is under way between Polls, so
// the pages can go (they read as zeros when next touched).
func (e *epollEngine) trim() {
	if e.arena != nil {
		_ = unix.Madvise(e.arena, unix.MADV_DONTNEED)
	}
}

// startSend writes now, unless EPOLLOUT is registered: then the socket
// buffer was full at the last try, and epoll says when it has room.
func (e *epollEngine) startSend(c *Conn) {
	if e.interest[c.slot]&unix.EPOLLOUT == 0 {
		e.writeOut(c)
	}
}

// writeOut writes c's queued output straight from its chunks, up to
// maxSegments of them per system call, until the queue is empty or the
// socket buffer is full (a short write or EAGAIN; armConn then registers
// EPOLLOUT). A failed write closes c.
func (e *epollEngine) writeOut(c *Conn) {
	if c.flags&flagTLS != 0 {
		e.writeTLS(c)
		return
	}
	for c.out.n > 0 {
		k := c.out.peek(e.segs[:])
		want := 0
		for _, s := range e.segs[:k] {
			want += len(s)
		}
		n, err := e.sendSegments(int(c.fd), e.segs[:k])
		clear(e.segs[:k])
		if n > 0 {
			c.consumed(n)
		}
		switch err {
		case nil:
			if n < want {
				return
			}
		case unix.EAGAIN:
			return
		case unix.EINTR:
		default: // EPIPE, ECONNRESET, ...
			e.closeConn(c, err)
			return
		}
	}
}

// writeTLS is writeOut for a TLS connection: it writes sealed batches
// (eventLoop.tlsOutput) until there is nothing left or the socket buffer
// is full.
func (e *epollEngine) writeTLS(c *Conn) {
	for {
		b := e.tlsOutput(c)
		if len(b) == 0 {
			return
		}
		n, err := sendNoSignal(int(c.fd), b)
		if n > 0 {
			e.tlsSent(c, n)
		}
		switch err {
		case nil:
			if n < len(b) {
				return
			}
		case unix.EAGAIN:
			return
		case unix.EINTR:
		default:
			e.closeConn(c, err)
			return
		}
	}
}

// sendSegments writes segs in one system call: send(2) for one segment,
// sendmsg(2) with an iovec per segment otherwise, both with MSG_NOSIGNAL.
func (e *epollEngine) sendSegments(fd int, segs [][]byte) (int, error) {
	if len(segs) == 1 {
		return sendNoSignal(fd, segs[0])
	}
	msg := e.vec.set(segs)
	n, _, errno := unix.Syscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(msg)), unix.MSG_NOSIGNAL)
	e.vec.reset()
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// armConn brings c's registration in line with its state: read interest
// unless paused or at EOF, EPOLLOUT while output is queued.
func (e *epollEngine) armConn(c *Conn) {
	var want uint32
	if c.flags&(flagWantPause|flagEOF) == 0 {
		want |= epollReadInterest
	}
	if e.hasOutput(c) {
		want |= unix.EPOLLOUT
	}
	if want == e.interest[c.slot] {
		return
	}
	// A mask of 0 is valid: the socket stays registered and still reports
	// errors and hang-ups.
	if err := e.control(unix.EPOLL_CTL_MOD, int(c.fd), want, c.slot, c.gen); err != nil {
		e.closeConn(c, fmt.Errorf("epoll_ctl mod: %w", err))
		return
	}
	e.interest[c.slot] = want
}

// reading: read interest is registered (armConn drops it at the Poll
// after PauseRead).
func (e *epollEngine) reading(c *Conn) bool { return e.interest[c.slot]&unix.EPOLLIN != 0 }

// closeConn tears c down at once and queues its Closed event. Nothing is in
// flight on epoll, so the slot is released right away.
func (e *epollEngine) closeConn(c *Conn, err error) {
	// Deregister explicitly instead of relying on close: the registration
	// belongs to the open file, and a child process forked in this instant
	// would hold a copy of the descriptor and keep it alive.
	_ = e.control(unix.EPOLL_CTL_DEL, int(c.fd), 0, 0, 0)
	_ = unix.Close(int(c.fd))
	e.closed(c, err)
	e.interest[c.slot] = 0
	e.release(c)
}

// armAccept puts the listener in the epoll set. disarmAccept takes it out:
// level-triggering would otherwise report it on every wait during an
// accept pause, and the loop would spin.
func (e *epollEngine) armAccept() error {
	if err := e.control(unix.EPOLL_CTL_ADD, e.listenFd, unix.EPOLLIN, epollListenerSlot, 0); err != nil {
		return fmt.Errorf("epoll_ctl add listener: %w", err)
	}
	return nil
}

func (e *epollEngine) disarmAccept() {
	_ = e.control(unix.EPOLL_CTL_DEL, e.listenFd, 0, 0, 0)
	e.acceptArmed = false
}

// wait is epoll_wait with sub-millisecond timeouts rounded up, so that a
// short wait does not turn into a busy loop, and EINTR retried with what
// is left. With no room for events there is nothing to wait for: epoll
// has no queued work to hand over.
func (e *epollEngine) wait(timeout time.Duration, room int) error {
	e.nready = 0
	if room == 0 {
		return nil
	}
	ready := e.ready[:min(room, len(e.ready))]
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		n, err := unix.EpollWait(e.epfd, ready, waitMillis(timeout))
		if err == nil {
			e.nready = n
			return nil
		}
		if err != unix.EINTR {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		if timeout > 0 {
			timeout = max(time.Until(deadline), 0)
		}
	}
}

// waitMillis converts a Poll timeout to epoll_wait's milliseconds.
func waitMillis(timeout time.Duration) int {
	if timeout < 0 {
		return -1
	}
	if timeout >= math.MaxInt32*time.Millisecond {
		return math.MaxInt32
	}
	return int((timeout + time.Millisecond - 1) / time.Millisecond)
}

func (e *epollEngine) complete(events []Event, n int) (int, int) {
	for i := range e.ready[:e.nready] {
		n = e.handleReady(&e.ready[i], events, n)
	}
	return n, e.nready
}

// handleReady deals with one ready descriptor. Received events go into
// events at n; it returns the new count.
func (e *epollEngine) handleReady(ev *unix.EpollEvent, events []Event, n int) int {
	switch ev.Fd {
	case epollListenerSlot:
		// Opened events travel through the pending queue; keep what is queued
		// for the caller within one slice's worth.
		if budget := min(epollAcceptMax, len(events)-n-len(e.pending)); budget > 0 {
			e.acceptBatch(budget)
		}
		return n
	case epollWakeSlot:
		// Draining resets the eventfd counter: any number of Wake calls
		// since the last drain fold into one Woken event.
		e.waker.drain()
		e.pending = append(e.pending, Event{Kind: Woken})
		return n
	}

	c := e.lookup(ev.Fd, uint32(ev.Pad))
	if c == nil || c.flags&flagOpen == 0 {
		// A report for a connection that is gone (the slot moved on to a new
		// generation): nothing to do.
		return n
	}

	if ev.Events&unix.EPOLLOUT != 0 && e.hasOutput(c) {
		e.writeOut(c)
		if c.flags&flagOpen == 0 {
			return n // the write failed and closed it
		}
		e.wrote(c)
		if e.armConn(c); c.flags&flagOpen == 0 {
			return n
		}
	}

	const readable = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLERR | unix.EPOLLHUP
	if ev.Events&readable == 0 {
		return n
	}
	if c.flags&(flagWantPause|flagEOF) != 0 {
		// Not reading, yet the kernel reports an error or hang-up (those come
		// whatever the interest set says). The socket is dead: reading more
		// is not wanted and writing would fail, so close it now rather than
		// be told again on every wait.
		if ev.Events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			e.closeConn(c, socketError(int(c.fd)))
		}
		return n
	}
	return e.readOnce(c, events, n)
}

// readOnce does one read(2) for c into the next arena chunk. When the arena
// or the caller's slice is full it does nothing: level-triggered epoll
// reports c again next time.
func (e *epollEngine) readOnce(c *Conn, events []Event, n int) int {
	size := e.cfg.BufferSize
	if n == len(events) || (e.arenaNext+1)*size > len(e.arena) {
		return n
	}
	start := e.arenaNext * size
	// The capacity is cut to the chunk, so an owner appending to Data
	// copies instead of writing into the neighbouring chunk.
	chunk := e.arena[start : start+size : start+size]

	r, err := unix.Read(int(c.fd), chunk)
	switch {
	case r > 0:
		e.arenaNext++
		data := chunk[:r]
		if c.flags&flagTLS != 0 {
			if data = e.tlsReceive(c, data, nil); len(data) == 0 {
				return n
			}
		}
		events[n] = Event{Kind: Received, Conn: c, Data: data}
		return n + 1
	case err == nil: // r == 0: the peer closed its sending side
		c.flags |= flagEOF
		e.armConn(c)
		e.markDirty(c) // the next Poll closes it once its output is out
	case err == unix.EAGAIN || err == unix.EINTR:
		// Nothing after all, or interrupted; still ready if there is data.
	default:
		e.closeConn(c, err)
	}
	return n
}

// acceptBatch accepts up to limit connections, stopping at EAGAIN.
func (e *epollEngine) acceptBatch(limit int) {
	for range limit {
		fd, err := acceptNoAddr(e.listenFd)
		switch {
		case err == nil:
			e.opened(fd)
		case err == unix.EAGAIN:
			return
		case isFdExhaustion(err):
			e.pauseAccepting(err)
			return
		default:
			// ECONNABORTED, EPERM (firewall), network errors: the failure
			// belongs to that one connection; the listener is fine.
		}
	}
}

// opened announces an accepted socket: as a connection of this loop, or
// under HandOff as an Accepted event for the owner to place.
func (e *epollEngine) opened(fd int) {
	if e.cfg.HandOff {
		e.handOff(fd)
		return
	}
	c := e.openConn(fd)
	*slotState(&e.interest, c.slot) = 0
	e.register(c)
}

// adopt makes a socket another loop may have accepted (blocking, on
// io_uring) non-blocking, and registers it.
func (e *epollEngine) adopt(c *Conn) {
	*slotState(&e.interest, c.slot) = 0
	if err := unix.SetNonblock(int(c.fd), true); err != nil {
		e.closeConn(c, fmt.Errorf("adopt: set non-blocking: %w", err))
		return
	}
	e.register(c)
}

// register adds a new connection, whose Opened is queued, to the epoll set.
func (e *epollEngine) register(c *Conn) {
	if err := e.control(unix.EPOLL_CTL_ADD, int(c.fd), epollReadInterest, c.slot, c.gen); err != nil {
		// Out of epoll watches or memory. The owner already has its Opened
		// (queued), so it gets the matching Closed.
		e.closeConn(c, fmt.Errorf("epoll_ctl add: %w", err))
		return
	}
	e.interest[c.slot] = epollReadInterest
}

// ringLoop: epoll has no ring to carry a doorbell; RingLoop uses the
// target's eventfd.
func (e *epollEngine) ringLoop(*eventLoop) bool { return false }

// control is epoll_ctl with the slot and generation packed into the event.
func (e *epollEngine) control(op, fd int, mask uint32, slot int32, gen uint32) error {
	e.ctl = unix.EpollEvent{Events: mask, Fd: slot, Pad: int32(gen)}
	return unix.EpollCtl(e.epfd, op, fd, &e.ctl)
}

// close closes the epoll instance; its registrations go with it.
func (e *epollEngine) close() error {
	if e.epfd < 0 {
		return nil
	}
	err := unix.Close(e.epfd)
	e.epfd = -1
	if e.arena != nil {
		_ = unix.Munmap(e.arena)
		e.arena = nil
	}
	if err != nil {
		return fmt.Errorf("close epoll: %w", err)
	}
	return nil
}

// acceptNoAddr is accept4(2) without the peer address: unix.Accept4
// decodes the address into a freshly allocated Sockaddr on every call, and
// the loop has no use for it.
func acceptNoAddr(listenFd int) (int, error) {
	fd, _, errno := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(listenFd), 0, 0,
		unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// sendNoSignal is write(2) for sockets with MSG_NOSIGNAL: writing to a peer
// that reset the connection fails with EPIPE instead of raising SIGPIPE.
func sendNoSignal(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])),
		uintptr(len(p)), unix.MSG_NOSIGNAL, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// socketError fetches the error pending on a socket that epoll reported
// broken. A hang-up with no error left to fetch is reported as a reset.
func socketError(fd int) error {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if v == 0 {
		return unix.ECONNRESET
	}
	return unix.Errno(v)
}
