package reactor

// Hand-off between loops: a loop with Config.HandOff reports accepted
// sockets as Accepted events instead of opening them, Adopt opens such a
// socket on any loop, and RingLoop is the doorbell one loop rings to wake
// another. What is specific to a backend is behind engine.adopt and
// engine.ringLoop (uring_handoff.go, epoll.go).

import "golang.org/x/sys/unix"

// Adopt opens fd as a connection of this loop; see Loop.Adopt.
func (l *eventLoop) Adopt(fd int) {
	if l.isClosed {
		_ = unix.Close(fd)
		return
	}
	l.io.adopt(l.openConn(fd))
}

// Reject closes fd, which no loop adopts; see Loop.Reject.
func (l *eventLoop) Reject(fd int) {
	_ = unix.Close(fd)
}

// openConn takes a slot for fd, a connected socket, and queues its Opened
// event. The engine then registers it (engine.adopt, or its accept path).
func (l *eventLoop) openConn(fd int) *Conn {
	tuneAccepted(fd, l.cfg.NoDelay)
	c := l.newConn(fd)
	l.pending = append(l.pending, Event{Kind: Opened, Conn: c})
	return c
}

// handOff queues an Accepted event: fd is the owner's to place.
func (l *eventLoop) handOff(fd int) {
	l.stats.HandedOff.Add(1)
	l.pending = append(l.pending, Event{Kind: Accepted, Fd: fd})
}

// RingLoop wakes dst; see Loop.RingLoop. The kernel route (MSG_RING) is
// taken when both loops can; any other case, including a Loop that is not
// one of this package's, falls back to dst's eventfd.
func (l *eventLoop) RingLoop(dst Loop) {
	if d, ok := dst.(*eventLoop); ok && !l.isClosed && l.io.ringLoop(d) {
		l.stats.RingsMsgRing.Add(1)
		return
	}
	l.stats.RingsEventfd.Add(1)
	dst.Wake()
}
