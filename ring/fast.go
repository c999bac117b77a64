package ring

// The hot path, done here rather than through giouring: publishing the
// submission queue, io_uring_enter and reading the completion queue.
// giouring's versions copy every completion through an array of pointers,
// re-derive what to do on each call through several layers, and always
// enter through the blocking-syscall path. Here:
//   - completions are read straight from the ring's shared memory;
//   - an enter that cannot block (submit only, or collect what is ready)
//     uses RawSyscall, skipping the runtime's syscall entry and exit;
//     one that may block goes through Syscall, so the goroutine's P is
//     released and a stop-the-world never waits for an I/O event;
//   - with DEFER_TASKRUN|TASKRUN_FLAG, a non-blocking call with nothing
//     to submit and no task work flagged makes no system call at all;
//   - the ring's descriptor is registered (IORING_REGISTER_RING_FDS), so
//     each enter skips the file table lookup.
//
// giouring still sets the ring up (and tears it down, unregistering the
// descriptor), fills submission entries and registers buffer rings. Its
// ring state is unexported; gRing, gSQ and gCQ mirror it field for field
// (the module version is pinned in go.sum; the size checks below fail the
// build if it changes shape).

import (
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/pawelgaczynski/giouring"
	"golang.org/x/sys/unix"
)

// gSQ and gCQ keep every field of giouring's, in its order, so the size
// checks below hold and the pointers land where giouring put them. The
// fields this file never reads are blank (named in the comment beside
// them) rather than unused names.
type gSQ struct {
	head, tail       *uint32
	_, _             *uint32 // ringMask, ringEntries
	flags            *uint32
	_, _             *uint32                        // dropped, array
	_                *giouring.SubmissionQueueEntry // sqes
	_                uint                           // ringSize
	_                unsafe.Pointer                 // ringPtr
	sqeHead, sqeTail uint32
	_                [2]uint32
}

type gCQ struct {
	head, tail, ringMask, ringEntries *uint32
	_, _                              *uint32 // flags, overflow
	cqes                              *giouring.CompletionQueueEvent
	_                                 uint           // ringSize
	_                                 unsafe.Pointer // ringPtr
	_                                 [2]uint32
}

type gRing struct {
	sq          *gSQ
	cq          *gCQ
	flags       uint32
	ringFd      int
	features    uint32
	enterRingFd int
	intFlags    uint8
	_           [3]uint8
	_           uint32
}

var (
	_ [unsafe.Sizeof(giouring.SubmissionQueue{}) - unsafe.Sizeof(gSQ{})]struct{}
	_ [unsafe.Sizeof(gSQ{}) - unsafe.Sizeof(giouring.SubmissionQueue{})]struct{}
	_ [unsafe.Sizeof(giouring.CompletionQueue{}) - unsafe.Sizeof(gCQ{})]struct{}
	_ [unsafe.Sizeof(gCQ{}) - unsafe.Sizeof(giouring.CompletionQueue{})]struct{}
	_ [unsafe.Sizeof(giouring.Ring{}) - unsafe.Sizeof(gRing{})]struct{}
	_ [unsafe.Sizeof(gRing{}) - unsafe.Sizeof(giouring.Ring{})]struct{}
)

// Kernel interface constants (include/uapi/linux/io_uring.h).
const (
	enterGetEvents      = 1 << 0
	enterExtArg         = 1 << 3
	enterRegisteredRing = 1 << 4

	sqCQOverflow = 1 << 1
	sqTaskrun    = 1 << 2

	setupTaskrunFlag = 1 << 9

	featRecvSendBundle = 1 << 14 // IORING_FEAT_RECVSEND_BUNDLE
	recvsendBundle     = 1 << 4  // IORING_RECVSEND_BUNDLE, in sqe.ioprio
)

// cqe is one completion queue entry as the kernel lays it out.
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// getEventsArg is struct io_uring_getevents_arg.
type getEventsArg struct {
	sigmask   uint64
	sigmaskSz uint32
	minWaitUs uint32
	ts        uint64
}

// fast is the ring state the hot path reads, resolved once at setup.
type fast struct {
	sq        *gSQ
	sqFlags   *uint32
	cqHead    *uint32
	cqTail    *uint32
	cqes      []cqe
	cqMask    uint32
	enterFd   uintptr
	enterFlag uint32 // enterRegisteredRing once the descriptor is registered
	taskrun   bool   // the kernel flags pending task work (TASKRUN_FLAG)
	arg       getEventsArg
}

func (f *fast) init(r *giouring.Ring, taskrunFlag bool) {
	g := (*gRing)(unsafe.Pointer(r))
	f.sq = g.sq
	f.sqFlags = g.sq.flags
	f.cqHead, f.cqTail = g.cq.head, g.cq.tail
	f.cqMask = *g.cq.ringMask
	f.cqes = unsafe.Slice((*cqe)(unsafe.Pointer(g.cq.cqes)), *g.cq.ringEntries)
	f.enterFd = uintptr(g.ringFd)
	f.taskrun = taskrunFlag
	// Registering the descriptor is an optimisation (Linux 5.18+): without
	// it every enter goes by the plain descriptor.
	if _, err := r.RegisterRingFd(); err == nil {
		f.enterFd = uintptr(g.enterRingFd)
		f.enterFlag = enterRegisteredRing
	}
}

// flush publishes the entries queued since the last call and returns how
// many the kernel has not consumed yet.
func (f *fast) flush() uint32 {
	sq := f.sq
	tail := sq.sqeTail
	if sq.sqeHead != tail {
		sq.sqeHead = tail
		atomic.StoreUint32(sq.tail, tail)
	}
	return tail - atomic.LoadUint32(sq.head)
}

// ready is how many completions wait in the completion queue.
func (f *fast) ready() uint32 {
	return atomic.LoadUint32(f.cqTail) - *f.cqHead
}

// enter calls io_uring_enter. Only a call that may block goes through the
// runtime's blocking-syscall path.
func (f *fast) enter(submit, wait, flags uint32, arg unsafe.Pointer, argSize uintptr) (uint, error) {
	var n uintptr
	var errno syscall.Errno
	flags |= f.enterFlag
	if wait == 0 {
		n, _, errno = syscall.RawSyscall6(unix.SYS_IO_URING_ENTER, f.enterFd, uintptr(submit), 0, uintptr(flags), uintptr(arg), argSize)
	} else {
		n, _, errno = syscall.Syscall6(unix.SYS_IO_URING_ENTER, f.enterFd, uintptr(submit), uintptr(wait), uintptr(flags), uintptr(arg), argSize)
	}
	if errno != 0 {
		return 0, errno
	}
	return uint(n), nil
}

// mustEnter reports whether a call that submits nothing and does not wait
// still has to enter: completions overflowed into the kernel's backlog, or
// (with DEFER_TASKRUN) work the kernel defers to this thread is pending.
// Without TASKRUN_FLAG the kernel does not say, so the answer is yes.
func (f *fast) mustEnter() bool {
	if !f.taskrun {
		return true
	}
	return atomic.LoadUint32(f.sqFlags)&(sqCQOverflow|sqTaskrun) != 0
}

// reap copies up to len(out) ready completions into out straight from the
// completion queue, marks them seen and returns how many.
func (f *fast) reap(out []Completion) int {
	head := *f.cqHead
	n := min(int(atomic.LoadUint32(f.cqTail)-head), len(out))
	for i := range out[:n] {
		e := &f.cqes[(head+uint32(i))&f.cqMask]
		out[i] = Completion{UserData: UserData(e.userData), Res: e.res, Flags: e.flags}
	}
	if n > 0 {
		atomic.StoreUint32(f.cqHead, head+uint32(n))
	}
	return n
}
