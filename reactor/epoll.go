package reactor

// The epoll backend: the fallback when io_uring cannot be used, and the
// baseline the io_uring backend is measured against.
//
// How one Poll goes:
//
//  1. The read arena is reset: Data handed out by the previous Poll is dead.
//  2. Requests queued through Conn methods (the dirty list) are carried out:
//     closes, writes straight from the output buffer, pause and resume.
//  3. Events queued so far are copied out; if the caller's slice still has
//     room, epoll_wait blocks (or not, when events are already waiting).
//  4. Each ready descriptor is handled: the listener accepts, the eventfd
//     wakes, a connection writes queued output and does one read into the
//     next free arena chunk.
//
// Level-triggered epoll keeps this simple: whatever one Poll leaves undone
// (arena full, caller's slice full, accept budget spent) is reported again
// by the next epoll_wait, so nothing has to be remembered here.
//
// Which events go where: Received goes straight into the caller's slice,
// because its Data points into the arena and must not outlive this Poll.
// Every other event (Opened, Closed, Drained, Woken) goes through the
// shared pending queue, in the order it happened. That order matters: a
// slot freed by a close can be handed to a new connection in the same
// Poll, and the owner must see the old Closed before the new Opened.

import (
	"fmt"
	"math"
	"net"
	"time"
	"unsafe"

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

type epollLoop struct {
	base
	cfg Config

	epfd     int
	listenFd int // -1 after StopAccepting
	addr     net.Addr

	// waker is the eventfd other goroutines write to wake the loop; it is
	// registered with epoll like any socket.
	waker *waker

	// ready receives epoll_wait results; allocated once.
	ready []unix.EpollEvent
	// ctl is the scratch argument for epoll_ctl, kept here so registering
	// interest does not allocate.
	ctl unix.EpollEvent
	// msg and iov are the scratch arguments of a multi-chunk sendmsg.
	msg unix.Msghdr
	iov [maxSegments]unix.Iovec

	// arena is the loop-wide read buffer: Buffers chunks of BufferSize
	// bytes. A readable connection borrows the next chunk for one read, and
	// every chunk returns at the start of the next Poll. Idle connections
	// hold no read memory at all.
	arena     []byte
	arenaNext int // chunks handed out in this Poll

	// Accept pause after descriptor exhaustion (EMFILE and friends): the
	// listener leaves the epoll set, or level-triggering would report it
	// ready on every wait and the loop would spin.
	acceptPaused  bool
	acceptRetryAt time.Time
	lastAcceptLog time.Time

	isClosed bool // Close was called
}

// newEpoll opens the listener on addr and the epoll instance around it.
// cfg must already carry its defaults.
func newEpoll(addr string, cfg Config) (*epollLoop, error) {
	if cfg.BufferSize == 0 {
		cfg.BufferSize = epollBufferSize
	}
	if cfg.Buffers <= 0 || cfg.BufferSize <= 0 {
		return nil, fmt.Errorf("epoll: read arena of %d x %d bytes: both must be positive", cfg.Buffers, cfg.BufferSize)
	}
	l := &epollLoop{cfg: cfg, epfd: -1, listenFd: -1}
	fail := func(err error) (*epollLoop, error) {
		l.Close()
		return nil, err
	}

	var err error
	if l.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		l.epfd = -1
		return fail(fmt.Errorf("epoll_create1: %w", err))
	}
	if l.waker, err = newWaker(); err != nil {
		return fail(err)
	}
	if err := l.control(unix.EPOLL_CTL_ADD, l.waker.fd, unix.EPOLLIN, epollWakeSlot, 0); err != nil {
		return fail(fmt.Errorf("epoll_ctl add eventfd: %w", err))
	}
	if l.listenFd, l.addr, err = listen(addr, cfg.Backlog); err != nil {
		l.listenFd = -1
		return fail(err)
	}
	if err := l.control(unix.EPOLL_CTL_ADD, l.listenFd, unix.EPOLLIN, epollListenerSlot, 0); err != nil {
		return fail(fmt.Errorf("epoll_ctl add listener: %w", err))
	}

	l.ready = make([]unix.EpollEvent, epollReadyMax)
	l.arena = make([]byte, cfg.Buffers*cfg.BufferSize)
	return l, nil
}

func (l *epollLoop) Backend() Backend { return Epoll }
func (l *epollLoop) Addr() net.Addr   { return l.addr }
func (l *epollLoop) Stats() *Stats    { return &l.stats }

func (l *epollLoop) Features() string {
	return fmt.Sprintf("epoll, level-triggered, read arena %dx%s", l.cfg.Buffers, formatSize(l.cfg.BufferSize))
}

// formatSize writes n the way configuration is usually written: 16KiB, 1MiB.
func formatSize(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// Wake makes the loop return a Woken event. Safe from any goroutine, even
// racing with Close: it touches nothing but the eventfd (see waker).
func (l *epollLoop) Wake() { l.waker.wake() }

// Poll carries out queued requests, waits up to timeout for I/O and fills
// events. See the top of this file for the order of things.
func (l *epollLoop) Poll(events []Event, timeout time.Duration) (int, error) {
	if l.isClosed {
		return 0, ErrLoopClosed
	}
	l.arenaNext = 0
	l.reuseSlots()
	l.applyRequests()
	if l.acceptPaused {
		l.resumeAcceptingIfDue(time.Now())
	}

	n := l.takePending(events)
	room := len(events) - n
	if room == 0 {
		// The rest of the pending events, and any I/O, wait for the next Poll.
		return n, nil
	}
	if n > 0 {
		timeout = 0 // there is something to hand back already
	}
	ready, err := l.wait(l.ready[:min(room, len(l.ready))], timeout)
	if err != nil {
		return n, err
	}
	l.stats.observeBatch(ready)
	for i := range ready {
		n = l.handleReady(&l.ready[i], events, n)
	}
	n += l.takePending(events[n:])
	return n, nil
}

// wait is epoll_wait with the timeout rules of Poll: never longer than the
// accept pause, sub-millisecond timeouts rounded up so that a short wait
// does not turn into a busy loop, and EINTR retried with what is left.
func (l *epollLoop) wait(ready []unix.EpollEvent, timeout time.Duration) (int, error) {
	var deadline time.Time
	if l.acceptPaused {
		untilRetry := max(time.Until(l.acceptRetryAt), 0)
		if timeout < 0 || untilRetry < timeout {
			timeout = untilRetry
		}
	}
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		n, err := unix.EpollWait(l.epfd, ready, waitMillis(timeout))
		if err == nil {
			return n, nil
		}
		if err != unix.EINTR {
			return 0, fmt.Errorf("epoll_wait: %w", err)
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

// handleReady deals with one ready descriptor. Received events go into
// events at n; it returns the new count.
func (l *epollLoop) handleReady(ev *unix.EpollEvent, events []Event, n int) int {
	switch ev.Fd {
	case epollListenerSlot:
		// Opened events travel through the pending queue; keep what is queued
		// for the caller within one slice's worth.
		if budget := min(epollAcceptMax, len(events)-n-len(l.pending)); budget > 0 {
			l.acceptBatch(budget)
		}
		return n
	case epollWakeSlot:
		// Draining resets the eventfd counter: any number of Wake calls
		// since the last drain fold into one Woken event.
		l.waker.drain()
		l.pending = append(l.pending, Event{Kind: Woken})
		return n
	}

	c := l.lookup(ev.Fd, uint32(ev.Pad))
	if c == nil || c.flags&flagOpen == 0 {
		// A report for a connection that is gone (the slot moved on to a new
		// generation): nothing to do.
		return n
	}
	gen := c.gen

	if ev.Events&unix.EPOLLOUT != 0 && c.Pending() > 0 {
		l.writeOut(c)
		if c.gen != gen {
			return n // the write failed and closed it
		}
		l.settle(c)
		if c.gen != gen {
			return n // drained after EOF: closed
		}
	}

	const readable = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLERR | unix.EPOLLHUP
	if ev.Events&readable == 0 {
		return n
	}
	if c.flags&(flagReadPaused|flagEOF) != 0 {
		// Not reading, yet the kernel reports an error or hang-up (those come
		// whatever the interest set says). The socket is dead: reading more
		// is not wanted and writing would fail, so close it now rather than
		// be told again on every wait.
		if ev.Events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			l.closeConn(c, socketError(c.fd))
		}
		return n
	}
	return l.readOnce(c, events, n)
}

// readOnce does one read(2) for c into the next arena chunk. When the arena
// or the caller's slice is full it does nothing: level-triggered epoll
// reports c again next time.
func (l *epollLoop) readOnce(c *Conn, events []Event, n int) int {
	size := l.cfg.BufferSize
	if n == len(events) || (l.arenaNext+1)*size > len(l.arena) {
		return n
	}
	start := l.arenaNext * size
	// The capacity is cut to the chunk, so an owner appending to Data
	// copies instead of writing into the neighbouring chunk.
	chunk := l.arena[start : start+size : start+size]

	r, err := unix.Read(c.fd, chunk)
	switch {
	case r > 0:
		l.arenaNext++
		events[n] = Event{Kind: Received, Conn: c, Data: chunk[:r]}
		return n + 1
	case err == nil: // r == 0: the peer closed its sending side
		c.flags |= flagEOF
		l.settle(c)
		l.markDirty(c)
	case err == unix.EAGAIN || err == unix.EINTR:
		// Nothing after all, or interrupted; still ready if there is data.
	default:
		l.closeConn(c, err)
	}
	return n
}

// acceptBatch accepts up to limit connections, stopping at EAGAIN.
func (l *epollLoop) acceptBatch(limit int) {
	for range limit {
		fd, err := acceptNoAddr(l.listenFd)
		switch {
		case err == nil:
			l.opened(fd)
		case err == unix.EAGAIN:
			return
		case isFdExhaustion(err):
			l.stats.AcceptFails.Add(1)
			l.pauseAccepting(err)
			return
		default:
			// ECONNABORTED, EPERM (firewall), network errors: the failure
			// belongs to that one connection; the listener is fine.
		}
	}
}

// opened registers an accepted socket and announces it.
func (l *epollLoop) opened(fd int) {
	tuneAccepted(fd, l.cfg.NoDelay)
	c := l.newConn(fd)
	l.pending = append(l.pending, Event{Kind: Opened, Conn: c})
	if err := l.control(unix.EPOLL_CTL_ADD, fd, epollReadInterest, c.slot, c.gen); err != nil {
		// Out of epoll watches or memory. The owner already has its Opened
		// (queued above), so it gets the matching Closed.
		l.closeConn(c, fmt.Errorf("epoll_ctl add: %w", err))
		return
	}
	c.interest = epollReadInterest
}

// pauseAccepting takes the listener out of the epoll set for AcceptRetry.
// Connections keep queuing in the kernel's backlog meanwhile.
func (l *epollLoop) pauseAccepting(err error) {
	now := time.Now()
	if !l.acceptPaused {
		_ = l.control(unix.EPOLL_CTL_DEL, l.listenFd, 0, 0, 0)
		l.acceptPaused = true
	}
	l.acceptRetryAt = now.Add(l.cfg.AcceptRetry)
	if now.Sub(l.lastAcceptLog) >= time.Second {
		l.lastAcceptLog = now
		l.cfg.Logger.Warn("accept failed for lack of descriptors or memory; accepting pauses",
			"backend", "epoll", "err", err, "pause", l.cfg.AcceptRetry)
	}
}

func (l *epollLoop) resumeAcceptingIfDue(now time.Time) {
	if l.listenFd < 0 || now.Before(l.acceptRetryAt) {
		return
	}
	if err := l.control(unix.EPOLL_CTL_ADD, l.listenFd, unix.EPOLLIN, epollListenerSlot, 0); err != nil {
		l.acceptRetryAt = now.Add(l.cfg.AcceptRetry)
		l.cfg.Logger.Warn("re-adding the listener to epoll failed", "backend", "epoll", "err", err)
		return
	}
	l.acceptPaused = false
}

// applyRequests carries out what the owner asked for through Conn methods
// since the last Poll.
func (l *epollLoop) applyRequests() {
	for i := 0; i < len(l.dirty); i++ {
		c := l.dirty[i]
		c.flags &^= flagDirty
		if c.flags&flagOpen == 0 {
			continue // closed before the owner heard of it; nothing to do
		}
		if c.flags&flagWantClose != 0 {
			l.closeConn(c, ErrClosedLocally)
			continue
		}
		// With EPOLLOUT registered the socket buffer was full at the last
		// try; epoll says when it has room, so do not ask the kernel now.
		if c.Pending() > 0 && c.interest&unix.EPOLLOUT == 0 {
			gen := c.gen
			l.writeOut(c)
			if c.gen != gen {
				continue
			}
		}
		if c.flags&flagEOF != 0 && c.Pending() == 0 {
			l.closeConn(c, nil) // the peer is done and so are we
			continue
		}
		if c.flags&flagWantPause != 0 {
			c.flags |= flagReadPaused
		} else {
			c.flags &^= flagReadPaused
		}
		l.settle(c)
	}
	clear(l.dirty)
	l.dirty = l.dirty[:0]
}

// writeOut writes c's queued output straight from its chunks, up to
// maxSegments of them per system call, until the queue is empty or the
// socket buffer is full (a short write or EAGAIN; settle then registers
// EPOLLOUT). A failed write closes c.
func (l *epollLoop) writeOut(c *Conn) {
	for c.out.n > 0 {
		k := c.out.peek(l.segs[:])
		want := 0
		for _, s := range l.segs[:k] {
			want += len(s)
		}
		n, err := l.sendSegments(c.fd, l.segs[:k])
		clear(l.segs[:k])
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
			l.closeConn(c, err)
			return
		}
	}
}

// sendSegments writes segs in one system call: send(2) for one segment,
// sendmsg(2) with an iovec per segment otherwise, both with MSG_NOSIGNAL.
func (l *epollLoop) sendSegments(fd int, segs [][]byte) (int, error) {
	if len(segs) == 1 {
		return sendNoSignal(fd, segs[0])
	}
	for i, s := range segs {
		l.iov[i] = unix.Iovec{Base: &s[0], Len: uint64(len(s))}
	}
	l.msg = unix.Msghdr{Iov: &l.iov[0], Iovlen: uint64(len(segs))}
	n, _, errno := unix.Syscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&l.msg)), unix.MSG_NOSIGNAL)
	clear(l.iov[:len(segs)])
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// settle brings c's epoll registration in line with its state after any
// change, emits Drained when its mark is reached, and closes it once the
// peer has finished sending and the last queued byte is written.
func (l *epollLoop) settle(c *Conn) {
	l.checkDrained(c)
	if c.flags&flagEOF != 0 && c.Pending() == 0 {
		// Close at the next Poll, not now: the owner has yet to handle this
		// batch, which may queue more output for c (even from c itself).
		l.markDirty(c)
	}
	var want uint32
	if c.flags&(flagReadPaused|flagEOF) == 0 {
		want |= epollReadInterest
	}
	if c.Pending() > 0 {
		want |= unix.EPOLLOUT
	}
	if want == c.interest {
		return
	}
	// A mask of 0 is valid: the socket stays registered and still reports
	// errors and hang-ups.
	if err := l.control(unix.EPOLL_CTL_MOD, c.fd, want, c.slot, c.gen); err != nil {
		l.closeConn(c, fmt.Errorf("epoll_ctl mod: %w", err))
		return
	}
	c.interest = want
}

// closeConn tears c down at once and queues its Closed event. Nothing is in
// flight on epoll, so the slot is free for the next accept right away.
func (l *epollLoop) closeConn(c *Conn, err error) {
	// Deregister explicitly instead of relying on close: the registration
	// belongs to the open file, and a child process forked in this instant
	// would hold a copy of the descriptor and keep it alive.
	_ = l.control(unix.EPOLL_CTL_DEL, c.fd, 0, 0, 0)
	_ = unix.Close(c.fd)
	l.closed(c, err)
	l.release(c)
}

// control is epoll_ctl with the slot and generation packed into the event.
func (l *epollLoop) control(op, fd int, mask uint32, slot int32, gen uint32) error {
	l.ctl = unix.EpollEvent{Events: mask, Fd: slot, Pad: int32(gen)}
	return unix.EpollCtl(l.epfd, op, fd, &l.ctl)
}

// StopAccepting closes the listener; open connections stay. Idempotent.
func (l *epollLoop) StopAccepting() {
	if l.listenFd < 0 {
		return
	}
	if !l.acceptPaused {
		_ = l.control(unix.EPOLL_CTL_DEL, l.listenFd, 0, 0, 0)
	}
	_ = unix.Close(l.listenFd)
	l.listenFd = -1
	l.acceptPaused = false
}

// Close closes every connection, the listener, the eventfd and the epoll
// instance, without emitting events. Idempotent.
func (l *epollLoop) Close() error {
	if l.isClosed {
		return nil
	}
	l.isClosed = true
	for _, c := range l.conns {
		if c.fd >= 0 && c.flags&flagOpen != 0 {
			_ = unix.Close(c.fd)
		}
		c.fd = -1
		c.flags = 0
	}
	l.open = 0
	l.stats.Open.Store(0)
	clear(l.dirty)
	l.dirty = l.dirty[:0]
	clear(l.pending)
	l.pending = l.pending[:0]

	l.StopAccepting()
	if l.waker != nil {
		// Wake stays safe after this: writes to a closed os.File just fail.
		l.waker.close()
	}
	var err error
	if l.epfd >= 0 {
		err = unix.Close(l.epfd)
		l.epfd = -1
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

var _ Loop = (*epollLoop)(nil)
