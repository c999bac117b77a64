package payload

import (
	"bytes"
	"errors"
	"testing"
)

func mustCodec(t *testing.T, seed uint64, maxSize int) *Codec {
	t.Helper()
	c, err := NewCodec(seed, maxSize)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRoundTrip(t *testing.T) {
	c := mustCodec(t, 1, 64<<10)
	for _, size := range []int{MinSize, MinSize + 1, 64, 256, 1000, 1024, 64 << 10} {
		for _, tc := range []struct {
			sender uint32
			seq    uint64
		}{{0, 0}, {1, 1}, {99, period - 1}, {99, period}, {1<<32 - 1, 1<<64 - 1}, {7, 123456789}} {
			p := c.Append([]byte("kept"), tc.sender, tc.seq, size)
			if string(p[:4]) != "kept" {
				t.Fatalf("Append overwrote dst: %q", p[:4])
			}
			p = p[4:]
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

func TestSizeRange(t *testing.T) {
	for _, max := range []int{MinSize - 1, 0, -1, MaxSize + 1} {
		if _, err := NewCodec(0, max); err == nil {
			t.Errorf("NewCodec accepted a largest size of %d", max)
		}
	}
	c := mustCodec(t, 0, 100)
	for _, size := range []int{MinSize - 1, 101} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Append built a payload of %d bytes with a codec for %d..100", size, MinSize)
				}
			}()
			c.Append(nil, 0, 0, size)
		}()
	}
	// A well-formed payload longer than this codec builds is refused, not
	// read past the template.
	big := mustCodec(t, 0, 200).Append(nil, 0, 0, 150)
	if _, _, err := c.Decode(big); !errors.Is(err, ErrLength) {
		t.Fatalf("payload over the codec's size: err = %v, want ErrLength", err)
	}
}

// Every single-byte change anywhere in a payload must be caught, whatever
// the byte becomes.
func TestDetectsEveryCorruptedByte(t *testing.T) {
	c := mustCodec(t, 2, 128)
	orig := c.Append(nil, 3, 1000, 100)
	for i := range orig {
		for _, delta := range []byte{1, 0x20, 0x80, 0xff} {
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

func TestDetectsTruncationAndMerging(t *testing.T) {
	c := mustCodec(t, 3, 1000)
	p := c.Append(nil, 1, 5, 100)
	for n := range len(p) {
		if _, _, err := c.Decode(p[:n]); !errors.Is(err, ErrLength) {
			t.Fatalf("payload cut to %d bytes: err = %v, want ErrLength", n, err)
		}
	}
	merged := c.Append(bytes.Clone(p), 1, 6, 100) // two payloads whose separator was lost
	if _, _, err := c.Decode(merged); !errors.Is(err, ErrLength) {
		t.Fatalf("two merged payloads: err = %v, want ErrLength", err)
	}
}

// A payload spliced from the header of one frame and the filler of
// another must not pass, whether the other is the same sender's next frame
// or another sender's frame with the same number.
func TestDetectsSplicedPayload(t *testing.T) {
	c := mustCodec(t, 4, 256)
	a := c.Append(nil, 2, 10, 128)
	for _, b := range [][]byte{c.Append(nil, 2, 11, 128), c.Append(nil, 3, 10, 128)} {
		spliced := append(bytes.Clone(a[:HeaderLen]), b[HeaderLen:]...)
		if _, _, err := c.Decode(spliced); !errors.Is(err, ErrFiller) {
			t.Fatalf("spliced payload: err = %v, want ErrFiller", err)
		}
	}
}

// The seed decides the filler: a payload from one seed does not pass a
// codec with another, and the same seed builds the same bytes.
func TestSeed(t *testing.T) {
	a, b := mustCodec(t, 10, 512), mustCodec(t, 11, 512)
	p := a.Append(nil, 1, 1, 512)
	if _, _, err := b.Decode(p); !errors.Is(err, ErrFiller) {
		t.Fatalf("payload from another seed: err = %v, want ErrFiller", err)
	}
	if q := mustCodec(t, 10, 512).Append(nil, 1, 1, 512); !bytes.Equal(p, q) {
		t.Fatal("two codecs with the same seed built different payloads")
	}
}

func TestAppendAllocatesNothing(t *testing.T) {
	c := mustCodec(t, 5, 64<<10)
	buf := make([]byte, 0, 64<<10)
	if allocs := testing.AllocsPerRun(100, func() {
		buf = c.Append(buf[:0], 9, 77, 64<<10)
		if _, _, err := c.Decode(buf); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Errorf("%v allocations per Append+Decode, want 0", allocs)
	}
}
