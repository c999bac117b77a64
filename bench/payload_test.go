package bench

import (
	"bytes"
	"errors"
	"testing"
)

func TestCodecRoundTrip(t *testing.T) {
	for _, size := range []int{MinPayload, 64, 256, 1024, 64 << 10} {
		c, err := NewCodec(size)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			sender uint32
			seq    uint64
		}{{0, 0}, {1, 1}, {99, 250}, {99, 251}, {1<<32 - 1, 1<<64 - 1}, {7, 123456789}} {
			p := c.Append(nil, tc.sender, tc.seq)
			if len(p) != size {
				t.Fatalf("size %d: payload is %d bytes", size, len(p))
			}
			if i := bytes.IndexByte(p, 0); i >= 0 {
				t.Fatalf("size %d sender %d seq %d: 0x00 at byte %d", size, tc.sender, tc.seq, i)
			}
			sender, seq, err := c.Decode(p)
			if err != nil || sender != tc.sender || seq != tc.seq {
				t.Fatalf("size %d: Decode = (%d, %d, %v), want (%d, %d, nil)", size, sender, seq, err, tc.sender, tc.seq)
			}
		}
	}
}

func TestCodecRejectsSizeBelowHeader(t *testing.T) {
	if _, err := NewCodec(MinPayload - 1); err == nil {
		t.Fatal("NewCodec accepted a payload smaller than its header")
	}
}

// Every single-byte change anywhere in a payload must be caught, whatever
// the byte becomes.
func TestCodecDetectsEveryCorruptedByte(t *testing.T) {
	c, _ := NewCodec(64)
	orig := c.Append(nil, 3, 1000)
	for i := range orig {
		for _, delta := range []byte{1, 0x20, 0x80} {
			p := bytes.Clone(orig)
			p[i] ^= delta
			if p[i] == 0 {
				continue // a 0x00 ends the frame early: that is truncation, tested below
			}
			if _, _, err := c.Decode(p); err == nil {
				t.Fatalf("byte %d changed from %#x to %#x went unnoticed", i, orig[i], p[i])
			}
		}
	}
}

func TestCodecDetectsTruncationAndMerging(t *testing.T) {
	c, _ := NewCodec(100)
	p := c.Append(nil, 1, 5)
	for n := range len(p) {
		if _, _, err := c.Decode(p[:n]); !errors.Is(err, ErrLength) {
			t.Fatalf("payload cut to %d bytes: err = %v, want ErrLength", n, err)
		}
	}
	merged := c.Append(bytes.Clone(p), 1, 6) // two payloads whose separator was lost
	if _, _, err := c.Decode(merged); !errors.Is(err, ErrLength) {
		t.Fatalf("two merged payloads: err = %v, want ErrLength", err)
	}
}

// A payload spliced from the header of one frame and the filler of another,
// or with a consistent header but a replayed filler, must not pass.
func TestCodecDetectsSplicedPayload(t *testing.T) {
	c, _ := NewCodec(128)
	a, b := c.Append(nil, 2, 10), c.Append(nil, 2, 11)
	spliced := append(bytes.Clone(a[:headerLen]), b[headerLen:]...)
	if _, _, err := c.Decode(spliced); !errors.Is(err, ErrFiller) {
		t.Fatalf("spliced payload: err = %v, want ErrFiller", err)
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
