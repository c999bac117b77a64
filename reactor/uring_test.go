package reactor

import (
	"bytes"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/ring"
)

// Tests of what only the io_uring engine does; the shared suite is
// loop_test.go.

// A stream of large writes moves its connection to the ring of large
// buffers, and back, with every byte delivered in order; a connection the
// owner paused a moment ago stays on the small ring.
func TestUringBulkStreamMovesToLargeBuffers(t *testing.T) {
	if err := ring.Probe().Usable(); err != nil {
		t.Skipf("io_uring unusable on this host: %v", err)
	}
	o := startLoopOwner(t, Uring, Config{}, true)
	var moves func() int
	o.do(func(map[int]*Conn) {
		u := o.loop.(*eventLoop).io.(*uringEngine)
		if u.big == nil {
			return
		}
		moves = func() (n int) {
			o.do(func(map[int]*Conn) { n = u.moves })
			return n
		}
	})
	if moves == nil {
		t.Skip("no recv bundles on this kernel (Linux 6.15+), so no ring of large buffers")
	}

	c, _ := o.dial()
	echoRoundTrip(t, c, []byte("small first"))
	if n := moves(); n != 0 {
		t.Fatalf("%d moves after one small message", n)
	}
	if err := echoRoundTripErr(c, testPattern(8<<20, 3)); err != nil {
		t.Fatal(err)
	}
	if n := moves(); n == 0 {
		t.Fatal("an 8 MiB stream never moved to the large buffers")
	}
	// And back: small messages still arrive whole.
	for i := range 10 {
		echoRoundTrip(t, c, bytes.Repeat([]byte{byte('a' + i)}, 100))
	}

	// A connection paused within the last second stays on the small ring.
	c2, op2 := o.dial()
	o.do(func(conns map[int]*Conn) { conns[op2.slot].PauseRead() })
	o.settle()
	o.do(func(conns map[int]*Conn) { conns[op2.slot].ResumeRead() })
	before := moves()
	start := time.Now()
	if err := echoRoundTripErr(c2, testPattern(1<<20, 5)); err != nil {
		t.Fatal(err)
	}
	if n := moves(); n != before {
		t.Fatalf("a connection paused %v before its stream moved to the large buffers", time.Since(start))
	}
}
