package bench

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/ringrelay/ringrelay/internal/frame"
	"github.com/ringrelay/ringrelay/internal/payload"
)

// The codec itself is tested in internal/payload; here, its binding to one
// size per workload.
func TestCodecFixedSize(t *testing.T) {
	for _, size := range []int{MinPayload, 64, 256, 1024, 64 << 10} {
		c, err := NewCodec(size)
		if err != nil {
			t.Fatal(err)
		}
		p := c.Append(nil, 7, 123456789)
		if len(p) != size || c.Size() != size {
			t.Fatalf("size %d: payload is %d bytes, Size %d", size, len(p), c.Size())
		}
		if i := bytes.IndexByte(p, 0); i >= 0 {
			t.Fatalf("size %d: 0x00 at byte %d", size, i)
		}
		if sender, seq, err := c.Decode(p); err != nil || sender != 7 || seq != 123456789 {
			t.Fatalf("size %d: Decode = (%d, %d, %v), want (7, 123456789, nil)", size, sender, seq, err)
		}
		p[len(p)-1] ^= 0x80 // the checksum's last digit when there is no filler
		want := payload.ErrFiller
		if size == MinPayload {
			want = payload.ErrHeader
		}
		if _, _, err := c.Decode(p); !errors.Is(err, want) {
			t.Fatalf("size %d: corrupted last byte: err = %v, want %v", size, err, want)
		}
	}
}

func TestCodecRejectsSizeBelowHeader(t *testing.T) {
	if _, err := NewCodec(MinPayload - 1); err == nil {
		t.Fatal("NewCodec accepted a payload smaller than its header")
	}
}

// An intact payload of another size is not this workload's.
func TestCodecRefusesOtherSize(t *testing.T) {
	small, _ := NewCodec(64)
	large, _ := NewCodec(100)
	if _, _, err := small.Decode(large.Append(nil, 1, 1)); !errors.Is(err, ErrLength) {
		t.Fatalf("100-byte payload at a 64-byte codec: err = %v, want ErrLength", err)
	}
	if _, _, err := large.Decode(small.Append(nil, 1, 1)); !errors.Is(err, ErrLength) {
		t.Fatalf("64-byte payload at a 100-byte codec: err = %v, want ErrLength", err)
	}
}

func TestOrder(t *testing.T) {
	o := NewOrder(10, 2)
	for _, step := range []struct {
		sender uint32
		seq    uint64
		want   error
	}{
		{10, 0, nil},
		{11, 0, nil},
		{10, 1, nil},
		{10, 3, ErrOrder}, // a gap: frame 2 lost
		{10, 2, nil},      // the tracker did not move on the bad one
		{11, 0, ErrOrder}, // a duplicate
		{11, 1, nil},
		{9, 0, ErrSender},
		{12, 0, ErrSender},
		{10, 4, ErrOrder}, // 3 never came
	} {
		if err := o.Check(step.sender, step.seq); !errors.Is(err, step.want) {
			t.Fatalf("Check(%d, %d) = %v, want %v", step.sender, step.seq, err, step.want)
		}
	}
}

// What appendFrame writes, less the header the relay strips, splits back
// into the payloads that were sent, in order, even a byte at a time.
func TestFramesSplitBack(t *testing.T) {
	c, _ := NewCodec(64)
	var stream, fr []byte
	for seq := range uint64(50) {
		fr = appendFrame(fr[:0], 0, c, 1, seq)
		stream = append(stream, fr[frame.HeaderLen:]...)
	}
	s := frame.NewSplitter(64, 1<<10)
	r := iotest.OneByteReader(bytes.NewReader(stream))
	o := NewOrder(1, 1)
	n := 0
	for {
		f, err := s.ReadFrame(r)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		sender, seq, err := c.Decode(f)
		if err == nil {
			err = o.Check(sender, seq)
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 50 {
		t.Fatalf("got %d frames, want 50", n)
	}
}
