package bench

import (
	"errors"
	"fmt"

	"github.com/ringrelay/ringrelay/internal/payload"
)

// A workload sends payloads of one size, built and verified by the shared
// codec (internal/payload): each says who sent it and where it stands in
// that sender's stream, never contains 0x00, and fails verification if a
// byte of it is changed, cut off, spliced or replayed.

// MinPayload is the smallest payload a Codec can build: the header alone.
const MinPayload = payload.MinSize

// Errors a receiver can report about one payload. Compare with errors.Is.
var (
	ErrLength = payload.ErrLength
	ErrSender = errors.New("frame from an unexpected sender")
	ErrOrder  = errors.New("frame out of order")
)

// codecSeed fixes the filler bytes, so that every run sends the same ones.
const codecSeed = 0x72696e6772656c61

// Codec is the shared payload codec bound to the one size a workload uses.
type Codec struct {
	c    *payload.Codec
	size int
}

// NewCodec returns a Codec for payloads of exactly size bytes.
func NewCodec(size int) (*Codec, error) {
	if size < MinPayload {
		return nil, fmt.Errorf("payload size %d is below the minimum of %d bytes", size, MinPayload)
	}
	c, err := payload.NewCodec(codecSeed, size)
	if err != nil {
		return nil, err
	}
	return &Codec{c: c, size: size}, nil
}

// Size is the payload length in bytes, without the frame's trailing 0x00.
func (c *Codec) Size() int { return c.size }

// Append appends the payload for (sender, seq) to dst.
func (c *Codec) Append(dst []byte, sender uint32, seq uint64) []byte {
	return c.c.Append(dst, sender, seq, c.size)
}

// Decode verifies p and returns the sender index and sequence number it
// carries. A payload of another size than the workload's is refused even
// when it is intact.
func (c *Codec) Decode(p []byte) (sender uint32, seq uint64, err error) {
	if len(p) != c.size {
		return 0, 0, fmt.Errorf("%w: %d bytes, want %d", ErrLength, len(p), c.size)
	}
	return c.c.Decode(p)
}

// Order checks that each sender's frames arrive numbered 0, 1, 2, ... with
// nothing missing, repeated or swapped. It accepts the senders
// [first, first+count).
type Order struct {
	first uint32
	next  []uint64
}

// NewOrder returns an Order for count senders starting at index first.
func NewOrder(first uint32, count int) *Order {
	return &Order{first: first, next: make([]uint64, count)}
}

// Check records that sender's frame seq arrived.
func (o *Order) Check(sender uint32, seq uint64) error {
	i := int(sender) - int(o.first)
	if i < 0 || i >= len(o.next) {
		return fmt.Errorf("%w: index %d, want %d..%d", ErrSender, sender, o.first, int(o.first)+len(o.next)-1)
	}
	if seq != o.next[i] {
		return fmt.Errorf("%w: sender %d sent seq %d, want %d", ErrOrder, sender, seq, o.next[i])
	}
	o.next[i]++
	return nil
}
