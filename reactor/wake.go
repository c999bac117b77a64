package reactor

import (
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// waker is the eventfd through which other goroutines wake the loop. The
// loop reads it by descriptor (a pending read on io_uring, an epoll
// registration); other goroutines write it through an *os.File, whose
// reference counting makes a Wake racing with Close safe: the write either
// lands or fails with os.ErrClosed, and never hits a recycled descriptor.
type waker struct {
	f  *os.File
	fd int
}

func newWaker() (*waker, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	return &waker{f: os.NewFile(uintptr(fd), "ringrelay-wake"), fd: fd}, nil
}

// wake adds one to the eventfd counter. Safe from any goroutine.
func (w *waker) wake() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = w.f.Write(one[:])
}

// drain resets the counter (epoll backend; io_uring reads it instead).
func (w *waker) drain() {
	var buf [8]byte
	_, _ = unix.Read(w.fd, buf[:])
}

func (w *waker) close() { _ = w.f.Close() }
