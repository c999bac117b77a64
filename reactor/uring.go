package reactor

import (
	"fmt"
	"net"
	"runtime"
	"syscall"
	"time"

	"github.com/ringrelay/ringrelay/ring"
	"golang.org/x/sys/unix"
)

// Operations tagged in user_data.
const (
	opAccept uint8 = iota + 1
	opRecv
	opSend
	opClose
	opCancel
	opWake
)

// bufferGroup is the provided-buffer group id of the receive buffer ring.
const bufferGroup = 1

// uringLoop is the io_uring backend. Requests recorded on connections are
// turned into submissions at the start of Poll; all of them reach the
// kernel in the same io_uring_enter that waits for completions.
type uringLoop struct {
	base
	cfg  Config
	ring *ring.Ring
	bufs *ring.BufferRing
	cqes []ring.Completion
	used []uint16   // buffers handed out in Received events, recycled next Poll
	vecs []*sendVec // free sendmsg vectors

	lfd         int // listener; -1 once StopAccepting ran
	addr        net.Addr
	acceptArmed bool
	acceptAfter time.Time // accepting paused until then (descriptor exhaustion)
	lastFdLog   time.Time

	waker     *waker
	wakeBuf   []byte
	wakeArmed bool

	err  error // first submission failure; Poll reports it
	shut bool
}

func newUring(addr string, cfg Config) (_ *uringLoop, err error) {
	// SINGLE_ISSUER ties the ring to the thread that created it; the
	// goroutine that opens the loop must stay on it and run Poll.
	runtime.LockOSThread()
	l := &uringLoop{cfg: cfg, lfd: -1, wakeBuf: make([]byte, 8)}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	if cfg.BufferSize == 0 {
		cfg.BufferSize = uringBufferSize
		l.cfg.BufferSize = uringBufferSize
	}
	l.ring, err = ring.New(cfg.RingEntries)
	if err != nil {
		return nil, &setupError{err}
	}
	l.bufs, err = l.ring.NewBufferRing(bufferGroup, cfg.Buffers, cfg.BufferSize)
	if err != nil {
		return nil, &setupError{err}
	}
	l.cqes = make([]ring.Completion, 4*cfg.RingEntries)
	l.used = make([]uint16, 0, cfg.Buffers)
	if l.waker, err = newWaker(); err != nil {
		return nil, err
	}
	l.lfd, l.addr, err = listen(addr, cfg.Backlog)
	if err != nil {
		return nil, err
	}
	return l, nil
}

func (l *uringLoop) Backend() Backend { return Uring }
func (l *uringLoop) Addr() net.Addr   { return l.addr }
func (l *uringLoop) Stats() *Stats    { return &l.stats }

func (l *uringLoop) Features() string {
	return fmt.Sprintf("io_uring %s, multishot accept, multishot recv, buffer ring %dx%dB, sq %d cq %d",
		l.ring.Mode(), l.cfg.Buffers, l.cfg.BufferSize, l.cfg.RingEntries, 4*l.cfg.RingEntries)
}

// Wake may be called from any goroutine: it only writes the eventfd the
// loop keeps a read pending on.
func (l *uringLoop) Wake() { l.waker.wake() }

func (l *uringLoop) StopAccepting() {
	if l.lfd < 0 {
		return
	}
	if l.acceptArmed {
		l.submitErr(l.ring.Cancel(ring.Pack(opAccept, 0, 0), ring.Pack(opCancel, 0, 0)))
	}
	unix.Close(l.lfd)
	l.lfd = -1
}

func (l *uringLoop) Poll(events []Event, timeout time.Duration) (int, error) {
	if l.shut {
		return 0, ErrLoopClosed
	}
	// Data handed out by the previous Poll is consumed: its buffers go back.
	for _, id := range l.used {
		l.bufs.Recycle(id)
	}
	l.used = l.used[:0]
	l.bufs.Publish()

	l.reuseSlots()
	l.flush()
	if !l.acceptArmed && l.lfd >= 0 {
		if now := time.Now(); now.Before(l.acceptAfter) {
			timeout = shorter(timeout, l.acceptAfter.Sub(now))
		} else {
			l.submitErr(l.ring.Accept(l.lfd, ring.Pack(opAccept, 0, 0)))
			l.acceptArmed = true
		}
	}
	if !l.wakeArmed {
		l.submitErr(l.ring.Read(l.waker.fd, l.wakeBuf, ring.Pack(opWake, 0, 0)))
		l.wakeArmed = true
	}
	if l.err != nil {
		return 0, l.err
	}

	n := l.takePending(events)
	if n > 0 {
		timeout = 0
	}
	if err := l.ring.Submit(timeout); err != nil {
		return n, err
	}
	reaped := 0
	for n < len(events) {
		k := l.ring.Reap(l.cqes[:min(len(events)-n, len(l.cqes))])
		if k == 0 {
			break
		}
		reaped += k
		for i := range l.cqes[:k] {
			if l.complete(&l.cqes[i], &events[n]) {
				n++
			}
		}
	}
	l.stats.observeBatch(reaped)
	n += l.takePending(events[n:])
	return n, l.err
}

// shorter returns the smaller of two timeouts, where negative means none.
func shorter(t, d time.Duration) time.Duration {
	if t < 0 || d < t {
		return d
	}
	return t
}

func (l *uringLoop) submitErr(err error) {
	if err != nil && l.err == nil {
		l.err = err
	}
}

// flush turns the owners' requests into submissions.
func (l *uringLoop) flush() {
	for i := 0; i < len(l.dirty); i++ {
		c := l.dirty[i]
		l.dirty[i] = nil
		c.flags &^= flagDirty
		if c.flags&(flagOpen|flagClosing) != flagOpen {
			continue
		}
		if c.flags&flagWantClose != 0 {
			l.beginClose(c, ErrClosedLocally)
			continue
		}
		l.syncRecv(c)
		if c.flags&flagSendArmed == 0 && c.out.n > 0 {
			l.send(c)
		}
		if c.flags&(flagEOF|flagSendArmed) == flagEOF {
			// The peer finished sending, everything queued for it is out,
			// and the owner has handled every event before this Poll.
			l.beginClose(c, nil)
			continue
		}
		l.checkDrained(c)
	}
	l.dirty = l.dirty[:0]
}

// syncRecv makes the multishot recv match what the owner wants: armed
// while reading is wanted, cancelled while paused.
func (l *uringLoop) syncRecv(c *Conn) {
	want := c.flags&(flagWantPause|flagEOF) == 0
	armed := c.flags&flagRecvArmed != 0
	switch {
	case want && !armed:
		l.submitErr(l.ring.Recv(c.fd, l.bufs, ring.Pack(opRecv, c.slot, c.gen)))
		c.flags = c.flags&^flagReadPaused | flagRecvArmed
		c.inflight++
	case !want && armed && c.flags&flagReadPaused == 0:
		// The cancelled recv completes with ECANCELED and no F_MORE.
		l.submitErr(l.ring.Cancel(ring.Pack(opRecv, c.slot, c.gen), ring.Pack(opCancel, c.slot, c.gen)))
		c.flags |= flagReadPaused
	}
}

// send starts one send of everything queued (up to maxSegments chunks).
// The chunks stay in the queue, untouched, until the completion says how
// much the kernel took; Send meanwhile appends after them.
func (l *uringLoop) send(c *Conn) {
	ud := ring.Pack(opSend, c.slot, c.gen)
	if k := c.out.peek(l.segs[:]); k == 1 {
		l.submitErr(l.ring.Send(c.fd, l.segs[0], ud))
	} else {
		c.vec = l.takeVec()
		l.submitErr(l.ring.SendMsg(c.fd, c.vec.set(l.segs[:k]), ud))
	}
	clear(l.segs[:])
	c.flags |= flagSendArmed
	c.inflight++
}

// takeVec returns a sendVec from the loop's free list. A vector (2 KiB) is
// lent to a connection only while its multi-chunk send is in flight, so
// memory for them follows the sends in flight, not the connections.
func (l *uringLoop) takeVec() *sendVec {
	if n := len(l.vecs); n > 0 {
		v := l.vecs[n-1]
		l.vecs = l.vecs[:n-1]
		return v
	}
	return new(sendVec)
}

// sendVec holds a sendmsg's header and iovecs where the kernel can read
// them until the send completes.
type sendVec struct {
	msg syscall.Msghdr
	iov [maxSegments]syscall.Iovec
}

func (v *sendVec) set(segs [][]byte) *syscall.Msghdr {
	for i, s := range segs {
		v.iov[i] = syscall.Iovec{Base: &s[0], Len: uint64(len(s))}
	}
	v.msg = syscall.Msghdr{Iov: &v.iov[0], Iovlen: uint64(len(segs))}
	return &v.msg
}

// beginClose reports the connection closed to the owner and starts tearing
// it down: in-flight operations are cancelled, and the descriptor is closed
// once the last of them has completed, so no completion can outlive it.
func (l *uringLoop) beginClose(c *Conn, err error) {
	if c.flags&flagClosing != 0 {
		return
	}
	c.flags |= flagClosing
	l.closed(c, err)
	if c.inflight > 0 {
		l.submitErr(l.ring.CancelFd(c.fd, ring.Pack(opCancel, c.slot, c.gen)))
		return
	}
	l.finishClose(c)
}

func (l *uringLoop) finishClose(c *Conn) {
	l.submitErr(l.ring.CloseFd(c.fd, ring.Pack(opClose, c.slot, c.gen)))
	c.flags |= flagCloseSent
	c.inflight++
}

// complete handles one completion. It writes at most one event into ev
// and reports whether it did.
func (l *uringLoop) complete(cqe *ring.Completion, ev *Event) bool {
	ud := cqe.UserData
	switch ud.Op() {
	case opAccept:
		return l.accepted(cqe, ev)
	case opWake:
		l.wakeArmed = false
		*ev = Event{Kind: Woken}
		return true
	case opCancel:
		return false
	}

	c := l.lookup(ud.Slot(), ud.Gen())
	if c == nil {
		// A completion for a recycled slot cannot happen while slots are
		// released only after their last completion; drop it defensively,
		// but never leak the buffer it carries.
		if id, ok := cqe.Buffer(); ok {
			l.used = append(l.used, id)
		}
		return false
	}
	switch ud.Op() {
	case opRecv:
		return l.received(c, cqe, ev)
	case opSend:
		l.sent(c, cqe)
	case opClose:
		l.release(c)
		return false
	}
	if c.flags&flagClosing != 0 && c.inflight == 0 {
		l.finishClose(c)
	}
	return false
}

func (l *uringLoop) accepted(cqe *ring.Completion, ev *Event) bool {
	if !cqe.More() {
		l.acceptArmed = false
	}
	if cqe.Res < 0 {
		err := syscall.Errno(-cqe.Res)
		if isFdExhaustion(err) {
			l.stats.AcceptFails.Add(1)
			now := time.Now()
			l.acceptAfter = now.Add(l.cfg.AcceptRetry)
			if now.Sub(l.lastFdLog) >= time.Second {
				l.lastFdLog = now
				l.cfg.Logger.Warn("accept failed; pausing accepts", "err", err, "retry_in", l.cfg.AcceptRetry)
			}
			if l.acceptArmed {
				// Multishot accept would keep failing on every queued
				// connection; stop it and re-arm after the pause.
				l.submitErr(l.ring.Cancel(ring.Pack(opAccept, 0, 0), ring.Pack(opCancel, 0, 0)))
			}
		}
		return false
	}
	fd := int(cqe.Res)
	if l.lfd < 0 {
		unix.Close(fd)
		return false
	}
	tuneAccepted(fd, l.cfg.NoDelay)
	c := l.newConn(fd)
	l.syncRecv(c)
	*ev = Event{Kind: Opened, Conn: c}
	return true
}

func (l *uringLoop) received(c *Conn, cqe *ring.Completion, ev *Event) bool {
	if !cqe.More() {
		c.flags &^= flagRecvArmed | flagReadPaused
		c.inflight--
	}
	delivered := false
	switch {
	case cqe.Res > 0:
		id, ok := cqe.Buffer()
		if !ok {
			break
		}
		l.used = append(l.used, id)
		if c.flags&(flagOpen|flagClosing|flagWantClose) == flagOpen {
			*ev = Event{Kind: Received, Conn: c, Data: l.bufs.Bytes(id, int(cqe.Res))}
			delivered = true
		}
	case cqe.Res == 0:
		// Close at the next flush rather than now: the owner has yet to
		// handle this batch, whose frames may be for this very connection.
		c.flags |= flagEOF
		l.markDirty(c)
	case cqe.Res == -int32(syscall.ENOBUFS):
		// Every buffer is lent out; the owner returns them at the next
		// Poll. Re-arm rather than drop the connection.
		l.stats.NoBuffers.Add(1)
	case cqe.Res == -int32(syscall.ECANCELED):
	default:
		l.beginClose(c, syscall.Errno(-cqe.Res))
	}
	if c.flags&flagClosing != 0 {
		if c.inflight == 0 {
			l.finishClose(c)
		}
	} else if c.flags&flagRecvArmed == 0 {
		// Re-arm at the next flush, not now: the owner may pause this
		// connection while handling this very batch, and a recv submitted
		// now would start receiving (inline, at submission) before the
		// cancel that follows it.
		l.markDirty(c)
	}
	return delivered
}

func (l *uringLoop) sent(c *Conn, cqe *ring.Completion) {
	c.flags &^= flagSendArmed
	c.inflight--
	if v := c.vec; v != nil {
		*v = sendVec{} // drop the chunk pointers
		l.vecs = append(l.vecs, v)
		c.vec = nil
	}
	if c.flags&flagClosing != 0 {
		return
	}
	if cqe.Res < 0 {
		l.beginClose(c, syscall.Errno(-cqe.Res))
		return
	}
	// A short send leaves the rest at the head of the queue, so it goes
	// first in the next send and order is kept.
	c.consumed(int(cqe.Res))
	if c.out.n > 0 {
		l.send(c)
	}
	l.checkDrained(c)
	if c.flags&flagEOF != 0 {
		l.markDirty(c) // flush closes it once nothing is pending
	}
}

func (l *uringLoop) Close() error {
	if l.shut {
		return nil
	}
	l.shut = true
	if l.ring != nil {
		// Hand queued closes to the kernel first; then tearing the ring down
		// cancels whatever is still in flight.
		_ = l.ring.Submit(0)
		l.ring.Close()
	}
	if l.bufs != nil {
		l.bufs.Close()
	}
	for _, c := range l.conns {
		// A descriptor whose close went through the ring may already carry
		// another file's number: never close it twice.
		if c.fd >= 0 && c.flags != 0 && c.flags&flagCloseSent == 0 {
			unix.Close(c.fd)
		}
		c.fd = -1
	}
	if l.lfd >= 0 {
		unix.Close(l.lfd)
		l.lfd = -1
	}
	if l.waker != nil {
		l.waker.close()
	}
	runtime.UnlockOSThread()
	return nil
}

var _ Loop = (*uringLoop)(nil)
