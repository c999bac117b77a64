package reactor

import (
	"testing"
	"time"
)

// Tests of what only the epoll engine does; the shared suite is loop_test.go.

// A paused connection whose peer resets must still be closed, not left
// reporting the error to epoll on every wait.
//
// On io_uring a paused connection has nothing in flight, so nothing reports
// the reset until reading resumes or the owner closes it; that engine has
// no such spin to guard against.
func TestEpollPausedPeerReset(t *testing.T) {
	o := startLoopOwner(t, Epoll, Config{}, true)
	c, op := o.dial()
	echoRoundTrip(t, c, []byte("x"))
	o.do(func(conns map[int]*Conn) { conns[op.slot].PauseRead() })
	c.SetLinger(0)
	c.Close()
	if cl := o.expect(Closed); cl.err == nil {
		t.Fatal("Closed with nil error after a reset")
	}
	before := o.loop.Stats().Iterations.Load()
	time.Sleep(100 * time.Millisecond)
	if spins := o.loop.Stats().Iterations.Load() - before; spins > 5 {
		t.Fatalf("%d waits in 100ms with nothing to do", spins)
	}
}
