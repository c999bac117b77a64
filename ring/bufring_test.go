package ring

import (
	"bytes"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestBufferRingStream streams 1 MiB through a multishot recv, taking and
// giving back buffers a batch at a time as the reactor does, and checks
// that the bytes come out whole and in order: on a ring of sixteen 1 KiB
// buffers, one buffer per recv and with bundles, and on a ring of 8192
// buffers, past the 4096th entry. With bundles it also checks that recvs
// did fill several buffers at once and that bytes wrapping from the last
// buffer to the first came out as two slices, in order.
func TestBufferRingStream(t *testing.T) {
	for _, tc := range []struct {
		name        string
		count, size int
		bundle      bool
	}{
		{"single", 16, 1024, false},
		{"bundle", 16, 1024, true},
		{"8192-buffers", 8192, 64, false},
	} {
		count, size, bundle := tc.count, tc.size, tc.bundle
		t.Run(tc.name, func(t *testing.T) {
			r := lockedRing(t, 64)
			if bundle && !r.Bundles() {
				t.Skip("this kernel has no recv bundles (Linux 6.10+)")
			}
			br, err := r.NewBufferRing(4, count, size, bundle)
			if err != nil {
				t.Fatalf("NewBufferRing: %v", err)
			}
			defer br.Close()
			if br.Bundling() != bundle {
				t.Fatalf("Bundling() = %v, asked for %v", br.Bundling(), bundle)
			}
			fd, peer := tcpPair(t)
			defer syscall.Close(fd)

			want := make([]byte, 1<<20)
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range want {
				want[i] = byte(rng.Uint32())
			}
			// The first 1,500 bytes are received alone, so that the ring's
			// next buffer is not a multiple of a full bundle's size later:
			// bundles then wrap past the last buffer at some point.
			const lead = 1500
			if _, err := peer.Write(want[:lead]); err != nil {
				t.Fatal(err)
			}
			started := false
			start := func() {
				started = true
				go func() {
					for rest := want[lead:]; len(rest) > 0; {
						n := min(len(rest), 1+rng.IntN(6000))
						if _, err := peer.Write(rest[:n]); err != nil {
							return
						}
						rest = rest[n:]
					}
				}()
			}

			tag := Pack(2, 1, 1)
			if err := r.Recv(fd, br, false, tag); err != nil {
				t.Fatal(err)
			}
			var got []byte
			var cqes [64]Completion
			largest, wraps := 0, 0
			deadline := time.Now().Add(10 * time.Second)
			for len(got) < len(want) && time.Now().Before(deadline) {
				if err := r.Submit(100 * time.Millisecond); err != nil {
					t.Fatal(err)
				}
				rearm := false
				for _, c := range cqes[:r.Reap(cqes[:])] {
					if c.UserData != tag {
						t.Fatalf("completion tag %#x", uint64(c.UserData))
					}
					if !c.More() {
						rearm = true // ENOBUFS ends the multishot recv; so may other results
					}
					id, ok := c.Buffer()
					if c.Res <= 0 {
						if ok || c.Res != -int32(syscall.ENOBUFS) {
							t.Fatalf("recv completed with %d, buffer %v", c.Res, ok)
						}
						continue
					}
					if !ok {
						t.Fatalf("recv of %d bytes carries no buffer", c.Res)
					}
					first, second, err := br.Take(id, int(c.Res))
					if err != nil {
						t.Fatal(err)
					}
					if len(first)+len(second) != int(c.Res) {
						t.Fatalf("Take(%d, %d) returned %d+%d bytes", id, c.Res, len(first), len(second))
					}
					if second != nil {
						wraps++
					}
					largest = max(largest, int(c.Res))
					got = append(append(got, first...), second...)
				}
				br.GiveBack()
				if len(got) >= lead && !started {
					start()
				}
				if rearm {
					if err := r.Recv(fd, br, false, tag); err != nil {
						t.Fatal(err)
					}
				}
			}
			if !bytes.Equal(got, want) {
				i := 0
				for i < len(got) && i < len(want) && got[i] == want[i] {
					i++
				}
				t.Fatalf("received %d of %d bytes; first difference at %d", len(got), len(want), i)
			}
			if bundle && (largest <= size || wraps == 0) {
				t.Fatalf("bundles: largest recv %d bytes (buffer %d), %d wrapped; want several buffers per recv and some wraps", largest, size, wraps)
			}
			if !bundle && largest > size {
				t.Fatalf("without bundles a recv returned %d bytes, more than one %d-byte buffer", largest, size)
			}
		})
	}
}

// TestBufferRingOutOfStep: a completion that names a buffer other than the
// ring's next one is refused, rather than handing out the wrong bytes.
func TestBufferRingOutOfStep(t *testing.T) {
	r := lockedRing(t, 8)
	br, err := r.NewBufferRing(5, 4, 64, false)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	if _, _, err := br.Take(1, 10); err == nil {
		t.Fatal("Take(1) on a fresh ring: want an out-of-step error")
	}
	if _, _, err := br.Take(0, 100); err == nil {
		t.Fatal("Take of 100 bytes from one 64-byte buffer without bundles: want an error")
	}
	if b, _, err := br.Take(0, 10); err != nil || len(b) != 10 {
		t.Fatalf("Take(0, 10) = %d bytes, %v", len(b), err)
	}
}

// TestRecvWideBundle: with 160 KiB waiting, the first bundle of a recv
// armed wide takes more than 64 KiB (up to a quarter of the ring, 128 KiB
// here), and one armed narrow takes 64 KiB at most.
func TestRecvWideBundle(t *testing.T) {
	for _, wide := range []bool{false, true} {
		r := lockedRing(t, 64)
		if !r.Bundles() {
			t.Skip("this kernel has no recv bundles (Linux 6.15+)")
		}
		br, err := r.NewBufferRing(6, 512, 1024, true)
		if err != nil {
			t.Fatalf("NewBufferRing: %v", err)
		}
		fd, peer := tcpPair(t)
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20); err != nil {
			t.Fatal(err)
		}
		const waiting = 160 << 10
		go peer.Write(make([]byte, waiting))
		deadline := time.Now().Add(5 * time.Second)
		for {
			n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
			if err != nil {
				t.Fatal(err)
			}
			if n >= waiting {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("only %d of %d bytes arrived", n, waiting)
			}
			time.Sleep(time.Millisecond)
		}
		tag := Pack(2, 1, 1)
		if err := r.Recv(fd, br, wide, tag); err != nil {
			t.Fatal(err)
		}
		var cqes [8]Completion
		n := 0
		for n == 0 && time.Now().Before(deadline) {
			if err := r.Submit(100 * time.Millisecond); err != nil {
				t.Fatal(err)
			}
			n = r.Reap(cqes[:])
		}
		if n == 0 {
			t.Fatalf("wide=%v: no completion", wide)
		}
		got := int(cqes[0].Res)
		switch {
		case wide && got <= 64<<10:
			t.Errorf("wide: the first recv took %d bytes with %d waiting; want more than 64 KiB", got, waiting)
		case !wide && (got <= 0 || got > 64<<10):
			t.Errorf("narrow: the first recv took %d bytes; want 1 to 64 KiB", got)
		}
		br.Close()
		syscall.Close(fd)
	}
}
