package reactor

import (
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/ring"
	"golang.org/x/sys/unix"
)

// TestUringWideRecvWithFewConnections: with at most wideClients
// connections open, a recv may bundle more than 64 KiB (a stream drains a
// quarter of the buffers per wait); with more, 64 KiB at most. 256 KiB
// wait in the socket of a paused connection, and its resumed recv brings
// them in events as large as its limit allows.
func TestUringWideRecvWithFewConnections(t *testing.T) {
	if err := ring.Probe().Usable(); err != nil {
		t.Skipf("io_uring unusable on this host: %v", err)
	}
	for _, tc := range []struct {
		name string
		idle int // other connections held open
		wide bool
	}{
		{"alone", 0, true},
		{"beside 16 others", wideClients, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := startLoopOwner(t, Uring, Config{}, false)
			if !o.loop.(*eventLoop).io.(*uringEngine).bufs.Bundling() {
				t.Skip("no recv bundles on this kernel (Linux 6.15+)")
			}
			for range tc.idle {
				o.dial()
			}
			c, op := o.dial()
			o.do(func(conns map[int]*Conn) {
				// Room for everything the client writes while paused.
				if err := unix.SetsockoptInt(int(conns[op.slot].fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20); err != nil {
					t.Errorf("SO_RCVBUF: %v", err)
				}
				conns[op.slot].PauseRead()
			})
			o.settle()
			o.drain()
			msg := testPattern(256<<10, 3)
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			o.quiet(Received, 200*time.Millisecond)

			o.do(func(conns map[int]*Conn) { conns[op.slot].ResumeRead() })
			got, largest := 0, 0
			for got < len(msg) {
				nt := o.expect(Received)
				if nt.slot != op.slot {
					t.Fatalf("Received on slot %d; only slot %d sends", nt.slot, op.slot)
				}
				got += nt.n
				largest = max(largest, nt.n)
			}
			switch {
			case tc.wide && largest <= 64<<10:
				t.Fatalf("largest Received %d bytes with %d waiting; want more than 64 KiB", largest, len(msg))
			case !tc.wide && largest > 64<<10:
				t.Fatalf("largest Received %d bytes beside %d connections; want 64 KiB at most", largest, tc.idle)
			}
		})
	}
}
