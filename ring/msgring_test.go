package ring

import (
	"runtime"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// A data message from one ring arrives on another as a completion carrying
// the data and res chosen by the sender, and the sender sees no completion
// of its own on success; a message to a descriptor that is not a ring
// fails with a completion on the sender.
func TestMsgRing(t *testing.T) {
	if !Probe().MsgRing {
		t.Skip("IORING_OP_MSG_RING not supported here")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	src, err := New(8)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := New(8)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()

	if err := src.MsgRing(dst.Fd(), 7, Pack(3, 11, 5), Pack(4, 0, 0)); err != nil {
		t.Fatal(err)
	}
	if err := src.Submit(0); err != nil {
		t.Fatal(err)
	}
	got := waitOne(t, dst)
	if got.UserData != Pack(3, 11, 5) || got.Res != 7 {
		t.Fatalf("target got user_data %#x res %d, want %#x res 7", got.UserData, got.Res, Pack(3, 11, 5))
	}
	var out [1]Completion
	if err := src.Submit(0); err != nil {
		t.Fatal(err)
	}
	if n := src.Reap(out[:]); n != 0 {
		t.Fatalf("sender got a completion for a delivered message: %+v", out[0])
	}

	// Not a ring: the failure is reported to the sender under ud.
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	if err := src.MsgRing(efd, 0, Pack(3, 0, 0), Pack(4, 1, 0)); err != nil {
		t.Fatal(err)
	}
	fail := waitOne(t, src)
	if fail.UserData != Pack(4, 1, 0) || fail.Res != -int32(syscall.EBADFD) {
		t.Fatalf("sender got user_data %#x res %d, want %#x res %d", fail.UserData, fail.Res, Pack(4, 1, 0), -int32(syscall.EBADFD))
	}
}
