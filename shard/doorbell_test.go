package shard

import (
	"encoding/binary"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

func TestEventFDRingsCoalesce(t *testing.T) {
	e, err := NewEventFD()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				e.Ring()
			}
		})
	}
	wg.Wait()
	var buf [8]byte
	if n, err := unix.Read(e.Fd(), buf[:]); err != nil || n != 8 {
		t.Fatalf("read eventfd: %d, %v", n, err)
	}
	if got := binary.NativeEndian.Uint64(buf[:]); got != 1 {
		t.Fatalf("800 rings wrote %d times, want 1", got)
	}
	e.Rearm()
	e.Ring()
	if woken, err := e.Wait(0); err != nil || !woken {
		t.Fatalf("Wait after a ring: woken %v, err %v", woken, err)
	}
	if woken, err := e.Wait(0); err != nil || woken {
		t.Fatalf("Wait after the ring was acknowledged: woken %v, err %v", woken, err)
	}
	e.Ring()
	if woken, _ := e.Wait(0); !woken {
		t.Fatal("a ring after Ack was not written")
	}
}

func TestEventFDWaitTimesOut(t *testing.T) {
	e, err := NewEventFD()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if woken, err := e.Wait(5e6); err != nil || woken {
		t.Fatalf("Wait with no ring: woken %v, err %v", woken, err)
	}
}

func TestEventFDRingAfterClose(t *testing.T) {
	e, err := NewEventFD()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e.Ring() // must neither panic nor write to a reused descriptor
}
