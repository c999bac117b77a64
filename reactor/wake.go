package reactor

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// waker is the eventfd through which other goroutines wake the loop. The
// loop reads it by descriptor (a pending read on io_uring, an epoll
// registration); other goroutines write it through an *os.File, whose
// reference counting makes a Wake racing with Close safe: the write either
// lands or fails with os.ErrClosed, and never hits a recycled descriptor.
//
// Wakes coalesce, like the runtime's netpollBreak: only the first wake
// after the loop consumed the counter writes; the rest see pending set
// and return, so a thousand wakes between two Polls cost one write(2).
// The loop clears pending only after the counter was read, so a wake that
// found it set either happened before the read (and the loop, which is
// about to report Woken, sees what that waker stored before waking it) or
// finds it clear and writes.
type waker struct {
	f       *os.File
	fd      int
	pending atomic.Bool // written and not yet consumed by the loop
}

func newWaker() (*waker, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	return &waker{f: os.NewFile(uintptr(fd), "ringrelay-wake"), fd: fd}, nil
}

// wake makes the eventfd readable unless a wake is already pending. Safe
// from any goroutine.
func (w *waker) wake() {
	if !w.pending.CompareAndSwap(false, true) {
		return
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = w.f.Write(one[:])
}

// consumed tells the waker the loop has read the counter (io_uring: the
// read completed; epoll: drain) and will report Woken.
func (w *waker) consumed() { w.pending.Store(false) }

// drain resets the counter (epoll backend; io_uring reads it instead).
func (w *waker) drain() {
	var buf [8]byte
	_, _ = unix.Read(w.fd, buf[:])
	w.consumed()
}

func (w *waker) close() { _ = w.f.Close() }
