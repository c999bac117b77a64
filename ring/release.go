package ring

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Release hands the pages of every buffer back to the kernel (MADV_DONTNEED:
// they read as zeros when next touched, and cost no memory until then),
// and reports whether it did. Data taken from the ring must no longer be
// used.
//
// Dropping pages the kernel may be writing into at that moment, or that
// hold bytes a completion not yet reaped reports, would lose data. So it
// releases only when neither can be: the ring was set up with
// DEFER_TASKRUN, under which the kernel copies received data into the
// buffers only while this thread is inside io_uring_enter (the work a
// socket wake-up queues waits for the thread's next wait), and no
// completion waits in the queue or its overflow backlog. Under the other
// modes the kernel may fill a buffer on any return to user space, and
// Release does nothing.
func (b *BufferRing) Release() bool {
	r := b.ring
	if r.mode != modeDeferTaskrun || r.f.ready() != 0 || atomic.LoadUint32(r.f.sqFlags)&sqCQOverflow != 0 {
		return false
	}
	return unix.Madvise(b.mem, unix.MADV_DONTNEED) == nil
}
