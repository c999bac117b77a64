package bench

import (
	"bytes"
	"errors"
	"fmt"
)

// A payload is printable where it has to be parsed and pseudo-random where it
// only has to be checked, and never contains 0x00:
//
//	[0]      'R'
//	[1:9]    sender index, 8 lowercase hex digits
//	[9:25]   sequence number, 16 hex digits
//	[25:33]  checksum, 8 hex digits
//	[33:]    filler: template[off:off+n] with off = seq % fillerPeriod
//
// The checksum is FNV-1a over bytes [0:25] folded with the FNV-1a of the
// filler window. Filler hashes are computed once per offset when the Codec is
// made, so encoding and verifying a 64 KiB payload costs one memcpy or one
// memcmp instead of hashing 64 KiB per frame. Shifting the filler window with
// the sequence number makes a frame that is spliced from two others, or
// replayed under another number, fail the filler comparison.
const (
	payloadMagic = 'R'
	headerLen    = 33
	fillerPeriod = 251 // prime, so the window offset cycles independently of sizes
	// MinPayload is the smallest payload a Codec can build: the header alone.
	MinPayload = headerLen
)

// Errors a receiver can report about one payload. Compare with errors.Is.
var (
	ErrLength   = errors.New("payload has the wrong length")
	ErrHeader   = errors.New("payload header is malformed")
	ErrChecksum = errors.New("payload checksum mismatch")
	ErrFiller   = errors.New("payload filler corrupted")
	ErrSender   = errors.New("frame from an unexpected sender")
	ErrOrder    = errors.New("frame out of order")
)

const (
	fnvOffset = 2166136261
	fnvPrime  = 16777619
)

// Codec builds and verifies payloads of one fixed size.
type Codec struct {
	size     int
	template []byte // size-headerLen+fillerPeriod bytes, none of them 0x00
	sums     [fillerPeriod]uint32
}

// NewCodec returns a Codec for payloads of exactly size bytes.
func NewCodec(size int) (*Codec, error) {
	if size < MinPayload {
		return nil, fmt.Errorf("payload size %d is below the minimum of %d bytes", size, MinPayload)
	}
	c := &Codec{size: size, template: make([]byte, size-headerLen+fillerPeriod)}
	x := uint32(0x9e3779b9)
	for i := range c.template {
		x ^= x << 13 // xorshift32: cheap, deterministic, no dependency
		x ^= x >> 17
		x ^= x << 5
		c.template[i] = 1 + byte(x%255)
	}
	n := size - headerLen
	for off := range c.sums {
		c.sums[off] = fnv1a(fnvOffset, c.template[off:off+n])
	}
	return c, nil
}

// Size is the payload length in bytes, without the frame's trailing 0x00.
func (c *Codec) Size() int { return c.size }

// Append appends the payload for (sender, seq) to dst.
func (c *Codec) Append(dst []byte, sender uint32, seq uint64) []byte {
	start := len(dst)
	dst = append(dst, payloadMagic)
	dst = appendHex(dst, uint64(sender), 8)
	dst = appendHex(dst, seq, 16)
	sum := c.checksum(dst[start:start+25], seq)
	dst = appendHex(dst, uint64(sum), 8)
	off := int(seq % fillerPeriod)
	return append(dst, c.template[off:off+c.size-headerLen]...)
}

// Decode verifies p and returns the sender index and sequence number it
// carries.
func (c *Codec) Decode(p []byte) (sender uint32, seq uint64, err error) {
	if len(p) != c.size {
		return 0, 0, fmt.Errorf("%w: %d bytes, want %d", ErrLength, len(p), c.size)
	}
	if p[0] != payloadMagic {
		return 0, 0, fmt.Errorf("%w: first byte %#x", ErrHeader, p[0])
	}
	s, ok1 := parseHex(p[1:9])
	seq, ok2 := parseHex(p[9:25])
	sum, ok3 := parseHex(p[25:33])
	if !ok1 || !ok2 || !ok3 {
		return 0, 0, fmt.Errorf("%w: %q", ErrHeader, p[:headerLen])
	}
	if want := c.checksum(p[:25], seq); uint32(sum) != want {
		return 0, 0, fmt.Errorf("%w: sender %d seq %d carries %08x, computed %08x", ErrChecksum, s, seq, sum, want)
	}
	off := int(seq % fillerPeriod)
	if !bytes.Equal(p[headerLen:], c.template[off:off+c.size-headerLen]) {
		return 0, 0, fmt.Errorf("%w: sender %d seq %d", ErrFiller, s, seq)
	}
	return uint32(s), seq, nil
}

func (c *Codec) checksum(head []byte, seq uint64) uint32 {
	h := fnv1a(fnvOffset, head)
	h ^= c.sums[seq%fillerPeriod]
	return h * fnvPrime
}

func fnv1a(h uint32, b []byte) uint32 {
	for _, x := range b {
		h ^= uint32(x)
		h *= fnvPrime
	}
	return h
}

const hexDigits = "0123456789abcdef"

func appendHex(dst []byte, v uint64, digits int) []byte {
	for i := digits - 1; i >= 0; i-- {
		dst = append(dst, hexDigits[(v>>(4*uint(i)))&0xf])
	}
	return dst
}

func parseHex(b []byte) (uint64, bool) {
	var v uint64
	for _, x := range b {
		var d byte
		switch {
		case x >= '0' && x <= '9':
			d = x - '0'
		case x >= 'a' && x <= 'f':
			d = x - 'a' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
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
