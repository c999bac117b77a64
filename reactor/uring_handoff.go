package reactor

// The io_uring side of hand-off between loops (handoff.go): adopting a
// socket, and doorbells between rings.
//
// A doorbell is an IORING_OP_MSG_RING data message queued on the ringing
// loop's ring with IOSQE_CQE_SKIP_SUCCESS: it reaches the kernel with that
// loop's next Poll, at no system call of its own, and posts a completion
// tagged opDoorbell on the target's ring, which becomes a Woken event there.
// A target set up with DEFER_TASKRUN receives it as task work on its own
// thread, which ends its wait because the wait asks for at least one
// completion (ring.Ring.Submit). On success the ringing loop sees nothing;
// a failed message completes on its ring tagged opRing with the target's
// index in its peers, and the target is woken through its eventfd instead.

import (
	"fmt"
	"sync"

	"github.com/ringrelay/ringrelay/ring"
	"golang.org/x/sys/unix"
)

// Operations of the hand-off, numbered apart from the list in uring.go so
// that either can grow without renumbering the other.
const (
	opDoorbell uint8 = 0xd0 + iota // a doorbell from another loop (target side)
	opRing                         // this loop's MSG_RING, seen only when it failed
)

// msgRingSupported reports, once per process, whether the kernel has
// IORING_OP_MSG_RING (Linux 5.18).
var msgRingSupported = sync.OnceValue(func() bool { return ring.Probe().MsgRing })

// uringHandOff is the io_uring engine's hand-off state.
type uringHandOff struct {
	// ringFd is this loop's ring descriptor, the target of other loops'
	// messages. It is set before the loop is shared and never changes, so
	// other loops' goroutines read it freely.
	ringFd  int
	msgRing bool
	// peers are the loops this one has rung by MSG_RING; a failed message
	// names its target by index here.
	peers []*eventLoop
}

// initHandOff records what other loops need to ring this one. It runs in
// newUring, on the owner's thread, before the loop is shared.
func (u *uringEngine) initHandOff() {
	u.ho.ringFd = u.ring.Fd()
	u.ho.msgRing = msgRingSupported()
}

// adopt makes c's socket blocking, as ring.Ring.Accept makes accepted ones
// (an epoll loop may have accepted it non-blocking), and arms its recv.
func (u *uringEngine) adopt(c *Conn) {
	*slotState(&u.slots, c.slot) = uringSlot{}
	if err := unix.SetNonblock(int(c.fd), false); err != nil {
		u.closeConn(c, fmt.Errorf("adopt: set blocking: %w", err))
		return
	}
	u.armConn(c)
}

// ringLoop queues a MSG_RING doorbell for dst when both loops are io_uring
// and the kernel has MSG_RING. With the submission queue full (and not
// drainable) it declines, and RingLoop uses the eventfd.
func (u *uringEngine) ringLoop(dst *eventLoop) bool {
	t, ok := dst.io.(*uringEngine)
	if !ok || !u.ho.msgRing || !t.ho.msgRing {
		return false
	}
	idx := int32(-1)
	for i, p := range u.ho.peers {
		if p == dst {
			idx = int32(i)
			break
		}
	}
	if idx < 0 {
		idx = int32(len(u.ho.peers))
		u.ho.peers = append(u.ho.peers, dst)
	}
	return u.ring.MsgRing(t.ho.ringFd, 0, ring.Pack(opDoorbell, 0, 0), ring.Pack(opRing, idx, 0)) == nil
}

// onDoorbell: another loop rang this one. All doorbells of one Poll fold
// into one Woken event.
func (u *uringEngine) onDoorbell(ev *Event) bool {
	u.stats.DoorbellsIn.Add(1)
	if u.doorbellSeen {
		return false
	}
	u.doorbellSeen = true
	*ev = Event{Kind: Woken}
	return true
}

// onRingFailed: the kernel could not post a doorbell (the target ring is
// gone or its completion queue is full); wake the target through its
// eventfd instead, which is safe even if it is closed.
func (u *uringEngine) onRingFailed(cqe *ring.Completion) {
	u.stats.RingFails.Add(1)
	if i := int(cqe.UserData.Slot()); i >= 0 && i < len(u.ho.peers) {
		u.ho.peers[i].Wake()
	}
}
