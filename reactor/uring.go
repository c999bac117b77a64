package reactor

// The io_uring engine. Requests recorded on connections become submissions
// while Poll applies them, and all of them reach the kernel in the same
// io_uring_enter that waits for completions. Each completion goes to the
// handler of its operation (onAccept, onRecv, onSend, onClose, onWake).
//
// What the engine keeps in flight: one multishot accept on the listener,
// one read of the wake-up eventfd, and per connection at most one
// multishot recv (buffers picked from the provided buffer ring), one send,
// and during teardown a cancel and then a close. Every user_data carries
// the slot and its generation, and a slot is released only after the
// completion of its close, so no completion can reach a recycled slot.

import (
	"fmt"
	"runtime"
	"syscall"
	"time"

	"github.com/ringrelay/ringrelay/internal/bytesize"
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

type uringEngine struct {
	*eventLoop
	ring  *ring.Ring
	bufs  *ring.BufferRing
	cqes  []ring.Completion
	vecs  []*sendVec  // free sendmsg vectors
	slots []uringSlot // per connection slot, as eventLoop.conns

	wakeBuf []byte
	ho      uringHandOff // adopting and doorbells (uring_handoff.go)

	lastYield time.Time // see wait

	// The current activity window (see wait): its number, when it began,
	// and how many connections received data in it so far.
	window      uint32
	windowStart time.Time
	activeNow   int
}

// yieldEvery is how often the loop goroutine passes through the Go
// scheduler (see wait); well under the runtime's 10 ms preemption limit.
const yieldEvery = 5 * time.Millisecond

// uringSlot is what the kernel holds of one connection.
type uringSlot struct {
	inflight      int32    // operations submitted and not yet completed for good
	window        uint32   // the last activity window in which it received data
	recvArmed     bool     // multishot recv in flight
	recvCancelled bool     // its cancel is submitted (the owner paused reading)
	sendArmed     bool     // send in flight
	closing       bool     // Closed reported; waiting for inflight to reach 0
	closeSent     bool     // close(2) of the descriptor submitted
	vec           *sendVec // sendmsg arguments, lent while a multi-chunk send is in flight
}

func newUring(addr string, cfg Config) (_ *eventLoop, err error) {
	// SINGLE_ISSUER ties the ring to the thread that created it; the
	// goroutine that opens the loop must stay on it and run Poll.
	runtime.LockOSThread()
	if cfg.BufferSize == 0 {
		cfg.BufferSize = uringBufferSize
	}
	l := &eventLoop{cfg: cfg, listenFd: -1}
	u := &uringEngine{eventLoop: l, wakeBuf: make([]byte, 8)}
	l.io = u
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	u.ring, err = ring.New(cfg.RingEntries)
	if err != nil {
		return nil, &setupError{err}
	}
	u.ring.SetSpin(cfg.Spin)
	u.initHandOff()
	u.bufs, err = u.ring.NewBufferRing(bufferGroup, cfg.Buffers, cfg.BufferSize, !cfg.NoRecvBundle)
	if err != nil {
		return nil, &setupError{err}
	}
	u.cqes = make([]ring.Completion, 4*cfg.RingEntries)
	if l.waker, err = newWaker(); err != nil {
		return nil, err
	}
	if u.armWake(); l.err != nil {
		return nil, l.err
	}
	if err = l.listenOn(addr); err != nil {
		return nil, err
	}
	return l, nil
}

func (u *uringEngine) backend() Backend { return Uring }

func (u *uringEngine) features() string {
	recv := "multishot recv"
	if u.bufs.Bundling() {
		recv += " with bundles"
	}
	return fmt.Sprintf("io_uring %s, multishot accept, %s, buffer ring %dx%s, sq %d cq %d",
		u.ring.Mode(), recv, u.cfg.Buffers, bytesize.Format(int64(u.cfg.BufferSize)), u.cfg.RingEntries, 4*u.cfg.RingEntries)
}

// submitErr keeps the first submission failure; Poll reports it.
func (u *uringEngine) submitErr(err error) {
	if err != nil && u.err == nil {
		u.err = err
	}
}

// giveBack returns the buffers of the previous Poll's Received events to
// the buffer ring, in one store.
func (u *uringEngine) giveBack() { u.bufs.GiveBack() }

func (u *uringEngine) startSend(c *Conn) {
	if s := &u.slots[c.slot]; !s.sendArmed {
		u.send(c, s)
	}
}

// send submits one send of everything queued (up to maxSegments chunks).
// The chunks stay in the queue, untouched, until the completion says how
// much the kernel took; Send meanwhile appends after them.
func (u *uringEngine) send(c *Conn, s *uringSlot) {
	ud := ring.Pack(opSend, c.slot, c.gen)
	if c.flags&flagTLS != 0 {
		// The kernel reads the sealed batch, never the chunks, so they
		// are not pinned: Send may keep moving them.
		b := u.tlsOutput(c)
		if len(b) == 0 {
			return
		}
		u.submitErr(u.ring.Send(int(c.fd), b, ud))
		s.sendArmed = true
		s.inflight++
		return
	}
	k := c.out.peek(u.segs[:])
	if k == 1 {
		u.submitErr(u.ring.Send(int(c.fd), u.segs[0], ud))
	} else {
		s.vec = u.takeVec()
		u.submitErr(u.ring.SendMsg(int(c.fd), s.vec.set(u.segs[:k]), ud))
	}
	clear(u.segs[:k])
	c.flags |= flagPinned
	s.sendArmed = true
	s.inflight++
}

// takeVec returns a sendVec from the free list. A vector (2 KiB) is lent
// to a connection only while its multi-chunk send is in flight, so memory
// for them follows the sends in flight, not the connections.
func (u *uringEngine) takeVec() *sendVec {
	if n := len(u.vecs); n > 0 {
		v := u.vecs[n-1]
		u.vecs = u.vecs[:n-1]
		return v
	}
	return new(sendVec)
}

// trim drops the free sendmsg vectors and hands the buffer ring's pages
// back to the kernel where that is safe (ring.BufferRing.Release: with
// DEFER_TASKRUN and nothing left to reap; otherwise the ring stays
// resident).
func (u *uringEngine) trim() {
	clear(u.vecs)
	u.vecs = nil
	u.bufs.Release()
}

// wideClients is the most open connections for which armConn asks for the
// wide bundle limit (see ring.wideBundleBytes): a few bulk streams each
// drain up to a quarter of the buffers per wait, while a loop with many
// connections, where many senders may be paused at once, keeps each recv
// to 64 KiB and so bounds what they read ahead.
const wideClients = 16

// armConn keeps a multishot recv armed while reading is wanted and cancels
// it while paused. The cancelled recv completes with ECANCELED.
func (u *uringEngine) armConn(c *Conn) {
	s := &u.slots[c.slot]
	want := c.flags&(flagWantPause|flagEOF) == 0
	switch {
	case want && !s.recvArmed:
		// With few connections, each recv may bundle a quarter of the
		// buffers (see ring.wideBundleBytes); with many, 64 KiB, which
		// bounds what paused senders read ahead. A recv keeps its limit
		// until it is armed again (after a pause, for one).
		wide := u.open <= wideClients
		u.submitErr(u.ring.Recv(int(c.fd), u.bufs, wide, ring.Pack(opRecv, c.slot, c.gen)))
		s.recvArmed, s.recvCancelled = true, false
		s.inflight++
	case !want && s.recvArmed && !s.recvCancelled:
		u.submitErr(u.ring.Cancel(ring.Pack(opRecv, c.slot, c.gen), ring.Pack(opCancel, c.slot, c.gen)))
		s.recvCancelled = true
	}
}

// reading: a recv is armed, or cancelled with its last completion still
// to come (data may precede it).
func (u *uringEngine) reading(c *Conn) bool { return u.slots[c.slot].recvArmed }

// closeConn reports c closed and starts tearing it down: in-flight
// operations are cancelled, and the descriptor is closed once the last of
// them has completed, so no completion can outlive it.
func (u *uringEngine) closeConn(c *Conn, err error) {
	s := &u.slots[c.slot]
	if s.closing {
		return
	}
	s.closing = true
	u.closed(c, err)
	if s.inflight > 0 {
		u.submitErr(u.ring.CancelFd(int(c.fd), ring.Pack(opCancel, c.slot, c.gen)))
		return
	}
	u.closeFd(c, s)
}

// closeWhenIdle closes the descriptor of a connection being torn down once
// its last operation has completed.
func (u *uringEngine) closeWhenIdle(c *Conn, s *uringSlot) {
	if s.closing && s.inflight == 0 {
		u.closeFd(c, s)
	}
}

func (u *uringEngine) closeFd(c *Conn, s *uringSlot) {
	u.submitErr(u.ring.CloseFd(int(c.fd), ring.Pack(opClose, c.slot, c.gen)))
	s.closeSent = true
	s.inflight++
}

func (u *uringEngine) armAccept() error {
	// A submission failure is the loop's error, reported by Poll, not a
	// reason to retry.
	u.submitErr(u.ring.Accept(u.listenFd, ring.Pack(opAccept, 0, 0)))
	return nil
}

// disarmAccept cancels the multishot accept; acceptArmed stays set until
// its last completion arrives.
func (u *uringEngine) disarmAccept() {
	u.submitErr(u.ring.Cancel(ring.Pack(opAccept, 0, 0), ring.Pack(opCancel, 0, 0)))
}

// armWake queues a read of the wake-up eventfd.
func (u *uringEngine) armWake() {
	u.submitErr(u.ring.Read(u.waker.fd, u.wakeBuf, ring.Pack(opWake, 0, 0)))
}

// Spinning before a wait (ring.SetSpin) pays when one client's next
// message is a few microseconds away and a wake-up from a blocking wait
// would cost more than watching the queue: few clients, each waiting on
// its round trip. With many clients active, each wake-up serves several of
// them and the spin only turns idle time into CPU time (at 100 and 1,000
// connections, 12-15% more CPU per frame for the same frames per second).
// So the loop counts the connections that received data in each window of
// activeWindow and holds the spin off while more than spinClients did.
const (
	activeWindow = time.Millisecond
	spinClients  = 16
)

// wait submits and waits in one io_uring_enter.
//
// Every yieldEvery it first yields to the Go scheduler. The loop goroutine
// is locked to its thread and otherwise never passes through the
// scheduler (a system call does not count), so after 10 ms the runtime's
// sysmon thread takes it for a goroutine hogging its P: it preempts it and
// takes its P away at every one of its ticks, which makes sysmon tick
// every 20 µs and wakes threads on futexes (3,500 nanosleeps and 5,000
// futex calls a second at one pair). A yield every 5 ms costs a few
// futex calls; it cut the server's CPU per frame at one pair, window 1,
// from 21.9 to 15.9 µs (C: 15.1).
func (u *uringEngine) wait(timeout time.Duration, _ int) error {
	now := time.Now()
	if now.Sub(u.windowStart) >= activeWindow {
		u.ring.HoldSpin(u.activeNow > spinClients)
		u.window++
		u.windowStart, u.activeNow = now, 0
	}
	if now.Sub(u.lastYield) > yieldEvery {
		u.lastYield = now
		runtime.Gosched()
	}
	return u.ring.Submit(timeout)
}

// complete reaps completions while the caller's slice has room, and hands
// each to the handler of its operation. A completion may need two events
// (a recv whose bytes wrap around the buffer ring), so each round reaps
// no more completions than half the room left: a slice with room for one
// event gets none (Poll's slice holds at least two, so the next has room).
func (u *uringEngine) complete(events []Event, n int) (int, int) {
	reaped := 0
	for len(events)-n >= 2 {
		k := u.ring.Reap(u.cqes[:min((len(events)-n)/2, len(u.cqes))])
		if k == 0 {
			break
		}
		reaped += k
		for i := range u.cqes[:k] {
			n += u.dispatch(&u.cqes[i], events[n:])
		}
	}
	return n, reaped
}

// dispatch hands one completion to its handler. A handler writes at most
// two events at the start of evs (only onRecv writes two) and returns how
// many.
func (u *uringEngine) dispatch(cqe *ring.Completion, evs []Event) int {
	ud := cqe.UserData
	switch ud.Op() {
	case opAccept:
		return one(u.onAccept(cqe, &evs[0]))
	case opWake:
		return one(u.onWake(&evs[0]))
	case opDoorbell:
		return one(u.onDoorbell(&evs[0]))
	case opRing:
		u.onRingFailed(cqe)
		return 0
	case opCancel:
		return 0 // the cancelled operation completes on its own
	}
	c := u.lookup(ud.Slot(), ud.Gen())
	if c == nil {
		// A completion for a recycled slot cannot happen while slots are
		// released only after their last completion; drop it defensively,
		// but take the buffers it carries, or the ring falls out of step.
		u.takeBuffers(cqe)
		return 0
	}
	s := &u.slots[c.slot]
	switch ud.Op() {
	case opRecv:
		return u.onRecv(c, s, cqe, evs)
	case opSend:
		u.onSend(c, s, cqe)
	case opClose:
		u.onClose(c, s)
	}
	return 0
}

func one(b bool) int {
	if b {
		return 1
	}
	return 0
}

// takeBuffers accounts for the receive buffers cqe filled and returns
// their bytes (see ring.BufferRing.Take). The ring falling out of step is
// a bug that would hand out the wrong bytes; it stops the loop instead.
func (u *uringEngine) takeBuffers(cqe *ring.Completion) (first, second []byte) {
	id, ok := cqe.Buffer()
	if !ok {
		return nil, nil
	}
	first, second, err := u.bufs.Take(id, max(int(cqe.Res), 0))
	if err != nil {
		if u.bufs.Bundling() {
			err = fmt.Errorf("%w (if this kernel reorders recv bundles, run with -recv-bundle=false)", err)
		}
		u.submitErr(err)
		return nil, nil
	}
	return first, second
}

// onAccept: a new connection, or an accept error. Without F_MORE the
// multishot accept is over and Poll arms another.
func (u *uringEngine) onAccept(cqe *ring.Completion, ev *Event) bool {
	if !cqe.More() {
		u.acceptArmed = false
	}
	if cqe.Res < 0 {
		if err := syscall.Errno(-cqe.Res); isFdExhaustion(err) {
			u.pauseAccepting(err)
		}
		// Anything else (ECONNABORTED, ECANCELED after StopAccepting)
		// belongs to one connection or to the cancel; the listener is fine.
		return false
	}
	fd := int(cqe.Res)
	if u.listenFd < 0 {
		unix.Close(fd) // accepted while StopAccepting's cancel was on its way
		return false
	}
	if u.cfg.HandOff {
		// The owner places it (Adopt on some loop); it is not ours.
		u.stats.HandedOff.Add(1)
		*ev = Event{Kind: Accepted, Fd: fd}
		return true
	}
	tuneAccepted(fd, u.cfg.NoDelay)
	c := u.newConn(fd)
	*slotState(&u.slots, c.slot) = uringSlot{}
	u.armConn(c)
	*ev = Event{Kind: Opened, Conn: c}
	return true
}

// onWake: another goroutine called Wake. The read folds every Wake since
// the last one into this event; the next read is queued at once.
func (u *uringEngine) onWake(ev *Event) bool {
	u.waker.consumed()
	u.armWake()
	*ev = Event{Kind: Woken}
	return true
}

// onRecv: one result of c's multishot recv.
func (u *uringEngine) onRecv(c *Conn, s *uringSlot, cqe *ring.Completion, evs []Event) int {
	if !cqe.More() {
		// The multishot recv is over.
		s.recvArmed, s.recvCancelled = false, false
		s.inflight--
	}
	delivered := 0
	first, second := u.takeBuffers(cqe)
	switch res := cqe.Res; {
	case res > 0:
		// Data, in buffers from the ring: lent to the owner until the next
		// Poll, in one event, or two when they wrap around the ring. None
		// is delivered once the owner asked to close.
		if s.window != u.window {
			s.window = u.window
			u.activeNow++
		}
		if c.flags&flagTLS != 0 && c.flags&(flagOpen|flagWantClose) == flagOpen {
			first, second = u.tlsReceive(c, first, second), nil
		}
		if len(first) > 0 && c.flags&(flagOpen|flagWantClose) == flagOpen {
			evs[0] = Event{Kind: Received, Conn: c, Data: first}
			delivered = 1
			if len(second) > 0 {
				evs[1] = Event{Kind: Received, Conn: c, Data: second}
				delivered = 2
			}
		}
	case res == 0:
		// EOF. Close at the next Poll rather than now: the owner has yet to
		// handle this batch, whose frames may be for this very connection.
		c.flags |= flagEOF
		u.markDirty(c)
	case res == -int32(syscall.ENOBUFS):
		// Every buffer is lent out; the owner returns them at the next
		// Poll. Re-arm rather than drop the connection.
		u.stats.NoBuffers.Add(1)
	case res == -int32(syscall.ECANCELED):
		// Paused by the owner, or torn down.
	default:
		u.closeConn(c, syscall.Errno(-res))
	}
	if s.closing {
		u.closeWhenIdle(c, s)
	} else if !s.recvArmed {
		// Re-arm at the next Poll, not now: the owner may pause this
		// connection while handling this very batch, and a recv submitted
		// now would start receiving (inline, at submission) before the
		// cancel that follows it.
		u.markDirty(c)
	}
	return delivered
}

// onSend: the kernel took res bytes of c's output, or the send failed.
func (u *uringEngine) onSend(c *Conn, s *uringSlot, cqe *ring.Completion) {
	s.sendArmed = false
	c.flags &^= flagPinned
	s.inflight--
	if v := s.vec; v != nil {
		v.reset()
		u.vecs = append(u.vecs, v)
		s.vec = nil
	}
	switch {
	case s.closing:
		u.closeWhenIdle(c, s)
	case cqe.Res < 0:
		u.closeConn(c, syscall.Errno(-cqe.Res))
	default:
		// A short send leaves the rest at the head of the queue, so it goes
		// first in the next send and order is kept.
		if c.flags&flagTLS != 0 {
			u.tlsSent(c, int(cqe.Res))
		} else {
			c.consumed(int(cqe.Res))
		}
		if u.hasOutput(c) {
			u.send(c, s)
		}
		u.wrote(c)
	}
}

// onClose: the descriptor is closed and nothing of c is left in the
// kernel; the slot can be reused.
func (u *uringEngine) onClose(c *Conn, s *uringSlot) {
	*s = uringSlot{}
	u.release(c)
}

// close hands queued closes to the kernel, then tears the ring down, which
// cancels whatever is still in flight.
func (u *uringEngine) close() error {
	if u.ring != nil {
		_ = u.ring.Submit(0)
		u.ring.Close()
	}
	if u.bufs != nil {
		u.bufs.Close()
	}
	for i := range u.slots {
		// A descriptor whose close went through the ring may already carry
		// another file's number: never close it twice.
		if s, c := &u.slots[i], u.conns[i]; s.closing && !s.closeSent && c.fd >= 0 {
			unix.Close(int(c.fd))
			c.fd = -1
		}
	}
	runtime.UnlockOSThread()
	return nil
}
