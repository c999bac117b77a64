package bench

import (
	"errors"
	"testing"

	"github.com/ringrelay/ringrelay/internal/payload"
)

// A pingpong end accepts only the payload A sent for the sequence number it
// expects next, and says what is wrong with anything else.
func TestPairCheck(t *testing.T) {
	codec, err := NewCodec(64)
	if err != nil {
		t.Fatal(err)
	}
	p := newPair(codec, 7, 4, 100, 200)
	a := (*pingA)(p)
	c := &gconn{}
	a.opening(c, 1)
	if p.seq != 4 || len(c.out) != 4*(64+frameOverhead) {
		t.Fatalf("opening sent %d frames, %d bytes", p.seq, len(c.out))
	}
	built := func(sender uint32, seq uint64) []byte { return codec.Append(nil, sender, seq) }
	if err := p.check(built(7, 2), 2); err != nil {
		t.Errorf("the frame sent: %v", err)
	}
	for _, tc := range []struct {
		what string
		f    []byte
		seq  uint64
		want error
	}{
		{"next one early", built(7, 3), 2, ErrOrder},
		{"another pair's", built(8, 2), 2, ErrSender},
		{"flipped filler bit", flip(built(7, 2), 60), 2, payload.ErrFiller},
		{"flipped header bit", flip(built(7, 2), 12), 2, payload.ErrChecksum},
		{"truncated", built(7, 2)[:63], 2, payload.ErrLength},
		// Well formed and numbered as expected, but never sent: seq 9 is
		// not in flight, its slot holds seq 1.
		{"not in flight", built(7, 9), 9, payload.ErrFiller},
	} {
		err := p.check(tc.f, tc.seq)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.what, err, tc.want)
		}
	}
}

func flip(b []byte, i int) []byte {
	b[i] ^= 0x01
	return b
}
