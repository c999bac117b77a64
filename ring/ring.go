package ring

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/pawelgaczynski/giouring"
	"golang.org/x/sys/unix"
)

// Ring is one io_uring instance: a submission queue, a completion queue and
// the helpers that fill and drain them.
type Ring struct {
	r        *giouring.Ring
	mode     string
	features uint32
	f        fast             // the hot path (fast.go)
	spinner  spinner          // spin before blocking (spin.go)
	ts       syscall.Timespec // wait timeout; lives here so the kernel reads stable memory
}

// params mirrors giouring.Params field for field. giouring keeps the fields
// unexported, and the completion queue size can only be asked for through
// them.
type params struct {
	sqEntries    uint32
	cqEntries    uint32
	flags        uint32
	sqThreadCPU  uint32
	sqThreadIdle uint32
	features     uint32
	wqFd         uint32
	resv         [3]uint32
	sqOff        [10]uint32
	cqOff        [10]uint32
}

var _ [unsafe.Sizeof(giouring.Params{}) - unsafe.Sizeof(params{})]struct{}
var _ [unsafe.Sizeof(params{}) - unsafe.Sizeof(giouring.Params{})]struct{}

// modeDeferTaskrun is the Mode of a ring set up with
// SINGLE_ISSUER|DEFER_TASKRUN.
const modeDeferTaskrun = "single-issuer,defer-taskrun"

// New sets up a ring with entries submission slots and 4*entries
// completion slots. It asks for SINGLE_ISSUER|DEFER_TASKRUN (Linux 6.1+),
// then COOP_TASKRUN, then no task-running hint; with either hint also for
// TASKRUN_FLAG, which lets Submit skip entering when it has nothing to do.
// The caller must lock its goroutine to the OS thread before calling New
// and keep it locked.
func New(entries uint32) (*Ring, error) {
	modes := []struct {
		name  string
		flags uint32
	}{
		{modeDeferTaskrun, giouring.SetupSingleIssuer | giouring.SetupDeferTaskrun | setupTaskrunFlag},
		{"coop-taskrun", giouring.SetupCoopTaskrun | setupTaskrunFlag},
		{"plain", 0},
	}
	var firstErr error
	for _, m := range modes {
		r := giouring.NewRing()
		var p giouring.Params
		pp := (*params)(unsafe.Pointer(&p))
		pp.flags = m.flags | giouring.SetupCQSize | giouring.SetupSubmitAll
		pp.cqEntries = entries * 4
		err := r.QueueInitParams(entries, &p)
		if err == nil {
			ring := &Ring{r: r, mode: m.name, features: pp.features}
			ring.f.init(r, m.flags&setupTaskrunFlag != 0)
			ring.spinner.max = DefaultSpin
			return ring, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		// EINVAL means an unknown flag: try the next, weaker mode. Anything
		// else (EPERM, ENOSYS, ENOMEM) will not get better.
		if !errors.Is(err, syscall.EINVAL) {
			return nil, fmt.Errorf("io_uring_setup: %w", err)
		}
	}
	return nil, fmt.Errorf("io_uring_setup: %w", firstErr)
}

// Bundles reports whether recvs may fill several provided buffers at once
// (IORING_FEAT_RECVSEND_BUNDLE): the kernel has them, and is 6.15 or later.
// Bundles came with 6.10, but stable releases of 6.12 to 6.14 (6.13.11 to
// 6.14.8, and the 6.12 releases that took the same change) can complete a
// bundle's buffers out of order, which scatters the stream (liburing issue
// 1409, fixed in 6.14.9 and 6.15). Uname cannot tell a fixed 6.12 from a
// broken one, so nothing before 6.15 uses them.
func (r *Ring) Bundles() bool {
	return r.features&featRecvSendBundle != 0 && bundlesSafe()
}

var bundlesSafe = sync.OnceValue(func() bool {
	var uts unix.Utsname
	return unix.Uname(&uts) == nil && bundlesSafeIn(unix.ByteSliceToString(uts.Release[:]))
})

// bundlesSafeIn reports whether a kernel of this uname release completes
// recv bundles in order (6.15 or later).
func bundlesSafeIn(release string) bool {
	major, minor := parseRelease(release)
	return major > 6 || major == 6 && minor >= 15
}

// Mode names the task-running mode the ring was set up with.
func (r *Ring) Mode() string { return r.mode }

// Fd is the ring's file descriptor.
func (r *Ring) Fd() int { return r.r.RingFd() }

// Close tears the ring down. In-flight operations are cancelled by the kernel.
func (r *Ring) Close() { r.r.QueueExit() }

// ErrQueueFull is returned when no submission slot can be had even after
// flushing the queue to the kernel.
var ErrQueueFull = errors.New("io_uring submission queue full")

// sqe returns a zeroed submission entry, submitting what is queued first
// when the queue is full. Zeroing matters: giouring's prepare helpers leave
// some fields (op flags among them) as the slot's previous user set them,
// and the kernel rejects a close whose rw_flags are not zero with EINVAL.
func (r *Ring) sqe() (*giouring.SubmissionQueueEntry, error) {
	e := r.r.GetSQE()
	if e == nil {
		if _, err := r.submit(); err != nil {
			return nil, err
		}
		if e = r.r.GetSQE(); e == nil {
			return nil, ErrQueueFull
		}
	}
	*e = giouring.SubmissionQueueEntry{}
	return e, nil
}

func (r *Ring) submit() (uint, error) {
	for {
		n, err := r.f.enter(r.f.flush(), 0, 0, nil, 0)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

// Accept queues a multishot accept on the listening socket fd. Accepted
// sockets are close-on-exec and blocking: io_uring never blocks the ring
// on them (it tries without waiting, then waits for readiness), but it
// honours O_NONBLOCK where its own wait gives up early. Once the peer has
// shut its sending side, that wait ends at once (EPOLLRDHUP counts as
// ready), and on a non-blocking socket a send to a full socket buffer then
// fails with EAGAIN instead of waiting for room.
func (r *Ring) Accept(fd int, ud UserData) error {
	e, err := r.sqe()
	if err != nil {
		return err
	}
	e.PrepareMultishotAccept(fd, 0, 0, syscall.SOCK_CLOEXEC)
	e.UserData = uint64(ud)
	return nil
}

// Recv queues a multishot receive on fd that picks its buffers from the
// provided buffer ring br: one buffer per completion, or with bundles as
// many as the data waiting needs, up to br's bundle limit, or its wide
// limit (a quarter of the ring) if wide is set.
func (r *Ring) Recv(fd int, br *BufferRing, wide bool, ud UserData) error {
	e, err := r.sqe()
	if err != nil {
		return err
	}
	limit := br.bundle
	if wide {
		limit = br.wide
	}
	e.PrepareRecvMultishot(fd, 0, limit, 0)
	if br.bundle > 0 {
		e.IoPrio |= recvsendBundle
	}
	e.Flags |= giouring.SqeBufferSelect
	e.BufIG = br.group
	e.UserData = uint64(ud)
	return nil
}

// Send queues one send of b on fd. b must stay untouched and referenced
// until the completion arrives.
func (r *Ring) Send(fd int, b []byte, ud UserData) error {
	e, err := r.sqe()
	if err != nil {
		return err
	}
	e.PrepareSend(fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uint32(len(b)), syscall.MSG_NOSIGNAL)
	e.UserData = uint64(ud)
	return nil
}

// SendMsg queues one sendmsg on fd. msg, its iovecs and the memory they
// point to must stay untouched and referenced until the completion arrives.
func (r *Ring) SendMsg(fd int, msg *syscall.Msghdr, ud UserData) error {
	e, err := r.sqe()
	if err != nil {
		return err
	}
	e.PrepareSendMsg(fd, msg, syscall.MSG_NOSIGNAL)
	e.UserData = uint64(ud)
	return nil
}

// Read queues one read of up to len(b) bytes from fd (used for the wake-up
// eventfd). b must stay referenced until the completion arrives.
func (r *Ring) Read(fd int, b []byte, ud UserData) error {
	e, err := r.sqe()
	if err != nil {
		return err
	}
	e.PrepareRead(fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uint32(len(b)), 0)
	e.UserData = uint64(ud)
	return nil
}

// CloseFd queues close(fd).
func (r *Ring) CloseFd(fd int, ud UserData) error {
	e, err := r.sqe()
	if err != nil {
		return err
	}
	e.PrepareClose(fd)
	e.UserData = uint64(ud)
	return nil
}

// CancelFd queues the cancellation of every operation in flight on fd.
func (r *Ring) CancelFd(fd int, ud UserData) error {
	e, err := r.sqe()
	if err != nil {
		return err
	}
	e.PrepareCancelFd(fd, giouring.AsyncCancelAll)
	e.UserData = uint64(ud)
	return nil
}

// Cancel queues the cancellation of the operation tagged target.
func (r *Ring) Cancel(target UserData, ud UserData) error {
	e, err := r.sqe()
	if err != nil {
		return err
	}
	e.PrepareCancel64(uint64(target), 0)
	e.UserData = uint64(ud)
	return nil
}

// Submit hands every queued entry to the kernel and waits for at least one
// completion, or until timeout has passed (timeout < 0 waits for ever,
// timeout == 0 does not wait), in one io_uring_enter, or two when it spins
// first (spin.go). It does not wait either when completions are ready
// already. A timeout or an interrupted wait is not an error: the caller
// simply reaps what is there.
func (r *Ring) Submit(timeout time.Duration) error {
	f := &r.f
	submit := f.flush()
	var err error
	switch {
	case timeout == 0 || f.ready() > 0:
		if submit == 0 && !f.mustEnter() {
			return nil // nothing to hand over, nothing the kernel holds back
		}
		_, err = f.enter(submit, 0, enterGetEvents, nil, 0)
	case r.spin(&submit, timeout):
		return nil
	case timeout < 0:
		_, err = f.enter(submit, 1, enterGetEvents, nil, 0)
	default:
		r.ts = syscall.NsecToTimespec(int64(timeout))
		f.arg = getEventsArg{ts: uint64(uintptr(unsafe.Pointer(&r.ts)))}
		_, err = f.enter(submit, 1, enterGetEvents|enterExtArg, unsafe.Pointer(&f.arg), unsafe.Sizeof(f.arg))
	}
	switch err {
	case nil, syscall.ETIME, syscall.EINTR, syscall.EAGAIN:
		return nil
	case syscall.EBUSY:
		// The completion queue overflowed into the kernel's backlog; reaping
		// makes room, and the next call submits what is left.
		return nil
	}
	return fmt.Errorf("io_uring_enter: %w", err)
}

// Completion is one reaped completion queue entry.
type Completion struct {
	UserData UserData
	Res      int32
	Flags    uint32
}

// More reports whether a multishot operation stays armed after this
// completion (IORING_CQE_F_MORE).
func (c *Completion) More() bool { return c.Flags&giouring.CQEFMore != 0 }

// Buffer returns the provided-buffer id this completion consumed, if any:
// with a bundle, the first of the buffers it filled (BufferRing.Take).
func (c *Completion) Buffer() (uint16, bool) {
	if c.Flags&giouring.CQEFBuffer == 0 {
		return 0, false
	}
	return uint16(c.Flags >> giouring.CQEBufferShift), true
}

// Reap copies up to len(out) ready completions into out, marks them seen
// and returns how many it copied. Completions that overflowed into the
// kernel's backlog are fetched when the queue itself is empty.
func (r *Ring) Reap(out []Completion) int {
	n := r.f.reap(out)
	if n == 0 && len(out) > 0 && atomic.LoadUint32(r.f.sqFlags)&sqCQOverflow != 0 {
		_, _ = r.f.enter(0, 0, enterGetEvents, nil, 0)
		n = r.f.reap(out)
	}
	r.spinner.reaped += n
	return n
}
