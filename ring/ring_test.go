package ring

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tcpPair returns a connected pair: a raw descriptor for the ring's side and
// a net.Conn for the test's side.
func tcpPair(t *testing.T) (int, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.(*net.TCPConn).File()
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	return fd, peer
}

// lockedRing locks the test's goroutine to its thread, as a Ring's user
// must be, and returns a ring of entries slots that is closed (and the
// thread unlocked) when the test ends.
func lockedRing(t *testing.T, entries uint32) *Ring {
	t.Helper()
	runtime.LockOSThread()
	r, err := New(entries)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("New(%d): %v", entries, err)
	}
	t.Cleanup(func() {
		r.Close()
		runtime.UnlockOSThread()
	})
	return r
}

// waitOne submits and reaps until one completion arrives or time is up.
func waitOne(t *testing.T, r *Ring) Completion {
	t.Helper()
	var out [1]Completion
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := r.Submit(100 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if r.Reap(out[:]) == 1 {
			return out[0]
		}
	}
	t.Fatal("no completion within 5s")
	return Completion{}
}

// TestRecvSendClose drives one socket through the ring: a multishot recv
// fills provided buffers, a send goes out, a close SQE releases the
// descriptor, and every completion carries back the user_data it was given.
func TestRecvSendClose(t *testing.T) {
	r := lockedRing(t, 64)
	br, err := r.NewBufferRing(3, 4, 256, false)
	if err != nil {
		t.Fatalf("NewBufferRing: %v", err)
	}
	defer br.Close()
	fd, peer := tcpPair(t)

	recvTag := Pack(2, 7, 99)
	if err := r.Recv(fd, br, false, recvTag); err != nil {
		t.Fatal(err)
	}
	// Five writes against four buffers: the ring must be recycled to
	// keep up, exactly as the reactor does.
	for i := range 5 {
		msg := bytes.Repeat([]byte{byte('a' + i)}, 100)
		if _, err := peer.Write(msg); err != nil {
			t.Fatal(err)
		}
		c := waitOne(t, r)
		if c.UserData != recvTag {
			t.Fatalf("completion tag %#x, want %#x", uint64(c.UserData), uint64(recvTag))
		}
		id, ok := c.Buffer()
		if !ok || c.Res != 100 || !c.More() {
			t.Fatalf("recv %d: res %d buffer %v more %v", i, c.Res, ok, c.More())
		}
		got, rest, err := br.Take(id, int(c.Res))
		if err != nil || rest != nil || !bytes.Equal(got, msg) {
			t.Fatalf("recv %d: buffer %d holds %q then %q (%v)", i, id, got, rest, err)
		}
		br.GiveBack()
	}

	out := []byte("through the ring")
	if err := r.Send(fd, out, Pack(3, 7, 99)); err != nil {
		t.Fatal(err)
	}
	if c := waitOne(t, r); c.UserData.Op() != 3 || c.Res != int32(len(out)) {
		t.Fatalf("send completion op %d res %d", c.UserData.Op(), c.Res)
	}
	got := make([]byte, len(out))
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := peer.Read(got); err != nil || !bytes.Equal(got, out) {
		t.Fatalf("peer read %q, %v", got, err)
	}

	// Cancel the multishot recv, then close through the ring.
	if err := r.CancelFd(fd, Pack(5, 7, 99)); err != nil {
		t.Fatal(err)
	}
	seen := map[uint8]int32{}
	for len(seen) < 2 {
		c := waitOne(t, r)
		seen[c.UserData.Op()] = c.Res
	}
	if seen[2] != -int32(syscall.ECANCELED) {
		t.Fatalf("cancelled recv completed with %d", seen[2])
	}
	if err := r.CloseFd(fd, Pack(4, 7, 99)); err != nil {
		t.Fatal(err)
	}
	if c := waitOne(t, r); c.UserData.Op() != 4 || c.Res != 0 {
		t.Fatalf("close completion op %d res %d", c.UserData.Op(), c.Res)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != unix.EBADF {
		t.Fatalf("descriptor still open after ring close: %v", err)
	}
}

// TestSQEReuseIsClean guards the zeroing in sqe(): a close prepared in a
// slot last used by a send (whose msg flags the helper leaves behind) must
// still succeed.
func TestSQEReuseIsClean(t *testing.T) {
	r := lockedRing(t, 8)
	// Three entries per round against an 8-slot queue: every slot is
	// used by sends and by closes in turn.
	for i := range 16 {
		fd, _ := tcpPair(t)
		for range 2 {
			if err := r.Send(fd, []byte("x"), Pack(3, int32(i), 0)); err != nil {
				t.Fatal(err)
			}
			if c := waitOne(t, r); c.Res != 1 {
				t.Fatalf("send %d: res %d", i, c.Res)
			}
		}
		if err := r.CloseFd(fd, Pack(4, int32(i), 0)); err != nil {
			t.Fatal(err)
		}
		if c := waitOne(t, r); c.Res != 0 {
			t.Fatalf("close %d after a send in the same slot: %v", i, syscall.Errno(-c.Res))
		}
	}
}

// TestNonBlockingSubmitSeesDeferredWork guards the shortcut in Submit(0):
// with nothing to submit it may skip io_uring_enter, but not while the
// kernel holds completions back as deferred task work (DEFER_TASKRUN), or
// a poll-only loop would never see its data. It also checks that many
// completions, more than one Reap takes, come out in order and whole.
func TestNonBlockingSubmitSeesDeferredWork(t *testing.T) {
	r := lockedRing(t, 8)
	fd, peer := tcpPair(t)
	defer unix.Close(fd)

	// Arm a read and hand it over, then let data arrive while nobody is in
	// the kernel for the ring.
	buf := make([]byte, 16)
	if err := r.Read(fd, buf, Pack(6, 1, 1)); err != nil {
		t.Fatal(err)
	}
	if err := r.Submit(0); err != nil {
		t.Fatal(err)
	}
	if _, err := peer.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	var out [1]Completion
	deadline := time.Now().Add(5 * time.Second)
	for r.Reap(out[:]) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("Submit(0) never surfaced the read's completion (mode %s)", r.Mode())
		}
		time.Sleep(time.Millisecond)
		if err := r.Submit(0); err != nil {
			t.Fatal(err)
		}
	}
	if out[0].UserData != Pack(6, 1, 1) || out[0].Res != 4 || string(buf[:4]) != "late" {
		t.Fatalf("read completion %#x res %d data %q", uint64(out[0].UserData), out[0].Res, buf[:4])
	}

	// 20 sends against an 8-entry submission queue (sqe flushes when it
	// is full), reaped three at a time.
	for i := range 20 {
		if err := r.Send(fd, []byte{byte(i)}, Pack(3, int32(i), 0)); err != nil {
			t.Fatal(err)
		}
	}
	var got []int32
	var batch [3]Completion
	for len(got) < 20 && time.Now().Before(deadline) {
		if err := r.Submit(100 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		n := r.Reap(batch[:])
		for _, c := range batch[:n] {
			if c.Res != 1 {
				t.Fatalf("send %d: res %d", c.UserData.Slot(), c.Res)
			}
			got = append(got, c.UserData.Slot())
		}
	}
	for i, slot := range got {
		if slot != int32(i) {
			t.Fatalf("completions out of order: %v", got)
		}
	}
	if len(got) != 20 {
		t.Fatalf("%d of 20 send completions", len(got))
	}
}

// TestSpinPath drives Submit through its spin (spin.go) with the score
// forced up: what is queued must still reach the kernel before the spin,
// and completions that show up while spinning, directly or as deferred
// task work, must be reaped whole.
func TestSpinPath(t *testing.T) {
	r := lockedRing(t, 8)
	fd, peer := tcpPair(t)
	defer unix.Close(fd)

	// A send queued before a spinning wait: the spin hands it over first.
	r.spinner.score = spinCap
	if err := r.Send(fd, []byte("spun"), Pack(3, 1, 1)); err != nil {
		t.Fatal(err)
	}
	c := waitOne(t, r)
	if c.UserData != Pack(3, 1, 1) || c.Res != 4 {
		t.Fatalf("send completion %#x res %d", uint64(c.UserData), c.Res)
	}
	got := make([]byte, 4)
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(peer, got); err != nil || string(got) != "spun" {
		t.Fatalf("peer read %q, %v", got, err)
	}

	// Data that arrives while the loop spins (or, if the spin runs out
	// first, while it blocks).
	buf := make([]byte, 16)
	for i := range 20 {
		r.spinner.score = spinCap
		if err := r.Read(fd, buf, Pack(6, int32(i), 1)); err != nil {
			t.Fatal(err)
		}
		go func() {
			time.Sleep(time.Duration(i%4) * 10 * time.Microsecond)
			peer.Write([]byte{byte('a' + i)})
		}()
		c := waitOne(t, r)
		if c.UserData != Pack(6, int32(i), 1) || c.Res != 1 || buf[0] != byte('a'+i) {
			t.Fatalf("read %d: completion %#x res %d data %q", i, uint64(c.UserData), c.Res, buf[:1])
		}
	}
}

// TestSpinOff: with SetSpin(0) a wait never spins, whatever its score:
// spin hands nothing over and reports nothing ready, so the caller blocks
// in the kernel, and a read completes through that blocking wait.
func TestSpinOff(t *testing.T) {
	r := lockedRing(t, 8)
	if r.spinner.max != DefaultSpin {
		t.Fatalf("a new ring spins up to %v, want DefaultSpin (%v)", r.spinner.max, DefaultSpin)
	}
	r.SetSpin(0)
	fd, peer := tcpPair(t)
	defer unix.Close(fd)
	r.spinner.score = spinCap
	pending := uint32(1)
	if r.spin(&pending, time.Second) || pending != 1 || r.spinner.score != spinCap {
		t.Fatalf("spin with SetSpin(0): pending %d, score %d; want no spin at all", pending, r.spinner.score)
	}
	buf := make([]byte, 4)
	if err := r.Read(fd, buf, Pack(6, 1, 1)); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		peer.Write([]byte("late"))
	}()
	if c := waitOne(t, r); c.UserData != Pack(6, 1, 1) || c.Res != 4 || string(buf) != "late" {
		t.Fatalf("read: completion %#x res %d data %q", uint64(c.UserData), c.Res, buf)
	}
}
