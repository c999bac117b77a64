package shard

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The loops of a real process wake through their reactor (reactor.Loop's
// Wake and RingLoop); the tests of the mesh run loops that have nothing
// else to wait for, so they sleep on this eventfd doorbell.

// EventFD is a Doorbell on a Linux eventfd, for loops that wait in
// epoll_wait, in io_uring (a pending read on the descriptor), or in poll.
//
// Rings coalesce: the first Ring after the owner's last Ack writes the
// eventfd, later ones only see the flag and return, so a thousand rings
// cost one write(2).
//
// Ring and Close may be called from any goroutine; Ring on a closed EventFD
// does nothing. Fd, Ack, Rearm and Wait belong to the owner (the loop that
// sleeps on it), which is also the one to Close it.
type EventFD struct {
	f       *os.File // writes go through it: safe against a concurrent Close
	fd      int
	pending atomic.Bool    // a write is done or under way and not yet acknowledged
	pfd     [1]unix.PollFd // Wait's argument, kept here so Wait allocates nothing
}

// NewEventFD opens a non-blocking eventfd.
func NewEventFD() (*EventFD, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("shard: eventfd: %w", err)
	}
	return &EventFD{f: os.NewFile(uintptr(fd), "shard-doorbell"), fd: fd}, nil
}

// Fd is the descriptor to wait on (readable while rung).
func (e *EventFD) Fd() int { return e.fd }

// Ring wakes the owner, unless a ring is already pending.
func (e *EventFD) Ring() {
	if !e.pending.CompareAndSwap(false, true) {
		return
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = e.f.Write(one[:])
}

// Ack resets the eventfd after a wake-up and lets the next Ring write
// again. The read comes before the reset of the flag: a Ring racing with
// Ack then either wrote before the read (consumed here, and the owner is
// awake anyway) or writes after it (the next wait returns at once). The
// other order could leave the flag set with the counter empty, and every
// later Ring would skip its write. After Ack the owner must look at all its
// sources of work before it waits again.
func (e *EventFD) Ack() {
	var buf [8]byte
	_, _ = unix.Read(e.fd, buf[:])
	e.pending.Store(false)
}

// Rearm is Ack for an owner whose ring already read the counter (a
// completed read on io_uring): it only lets the next Ring write again.
func (e *EventFD) Rearm() { e.pending.Store(false) }

// Wait blocks the calling thread in poll(2) until the eventfd is rung or
// timeout passes (negative: no limit), then acknowledges a ring. It reports
// whether it was rung. It is the whole wait of a loop that has nothing else
// to watch, and what the tests use.
func (e *EventFD) Wait(timeout time.Duration) (bool, error) {
	ms := -1
	if timeout >= 0 {
		ms = int((timeout + time.Millisecond - 1) / time.Millisecond) // never round a wait down to a spin
	}
	for {
		e.pfd[0] = unix.PollFd{Fd: int32(e.fd), Events: unix.POLLIN}
		n, err := unix.Poll(e.pfd[:], ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("shard: poll doorbell: %w", err)
		}
		if n == 0 {
			return false, nil
		}
		e.Ack()
		return true, nil
	}
}

// Close closes the eventfd. A Ring that races with it writes nothing.
func (e *EventFD) Close() error { return e.f.Close() }
