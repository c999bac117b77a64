// Package payload builds payloads that prove their own integrity, for the
// load generator (bench) and the relay's tests: each one says who sent it,
// where it stands in that sender's stream and how long it is, and every
// byte of it can be checked by a receiver that knows nothing else. None of
// its bytes is 0x00, so it fits in one frame as it is.
//
// Layout, all of it printable up to the filler:
//
//	[0]      'R'
//	[1:9]    sender, 8 lowercase hex digits
//	[9:25]   sequence number, 16 hex digits
//	[25:33]  size of the whole payload in bytes, 8 hex digits
//	[33:41]  checksum of bytes [0:33], 8 hex digits
//	[41:]    filler: a window of the codec's template, at an offset
//	         that depends on the sender and the sequence number
//
// The checksum (FNV-1a, which any single changed byte changes) guards the
// header; the filler is compared byte for byte with the window the header
// names. Encoding and verifying a 64 KiB payload thus costs one memcpy or
// one memcmp, not a hash over 64 KiB. The window moves by one byte from one
// sequence number to the next, so a payload spliced from two others, or
// replayed under another number, fails the comparison.
package payload

import (
	"bytes"
	"errors"
	"fmt"
)

const (
	magic = 'R'
	// HeaderLen is the length of the header in front of the filler.
	HeaderLen = 41
	// MinSize is the smallest payload: the header alone.
	MinSize = HeaderLen
	// MaxSize is the largest payload the size field can describe.
	MaxSize = 1<<31 - 1
	// period is the number of distinct filler windows. Prime, so the
	// window's offset cycles independently of sizes and of senders.
	period = 4093
)

// Errors Decode reports. Compare with errors.Is.
var (
	ErrLength   = errors.New("payload has the wrong length")
	ErrHeader   = errors.New("payload header is malformed")
	ErrChecksum = errors.New("payload header checksum mismatch")
	ErrFiller   = errors.New("payload filler corrupted")
)

const (
	fnvOffset = 2166136261
	fnvPrime  = 16777619
)

// Codec builds and verifies payloads of up to a fixed largest size. Its
// filler depends on a seed, so that a test can vary the bytes from run to
// run and replay a run's bytes exactly. A Codec is read-only once made and
// safe for concurrent use.
type Codec struct {
	max      int
	template []byte // max-HeaderLen+period bytes, none of them 0x00
}

// NewCodec returns a Codec for payloads of MinSize to maxSize bytes, whose
// filler is derived from seed.
func NewCodec(seed uint64, maxSize int) (*Codec, error) {
	if maxSize < MinSize || maxSize > MaxSize {
		return nil, fmt.Errorf("payload size %d is outside %d..%d bytes", maxSize, MinSize, MaxSize)
	}
	c := &Codec{max: maxSize, template: make([]byte, maxSize-HeaderLen+period)}
	x := mix(seed) | 1 // xorshift64 must not start at 0
	for i := range c.template {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		c.template[i] = 1 + byte(x%255)
	}
	return c, nil
}

// MaxSize is the largest payload this Codec builds, in bytes.
func (c *Codec) MaxSize() int { return c.max }

// Append appends to dst the payload of size bytes for (sender, seq). It
// panics if size is outside MinSize..c.MaxSize(): that is a bug in the
// caller, which chose the size.
func (c *Codec) Append(dst []byte, sender uint32, seq uint64, size int) []byte {
	if size < MinSize || size > c.max {
		panic(fmt.Sprintf("payload: size %d outside %d..%d", size, MinSize, c.max))
	}
	start := len(dst)
	dst = append(dst, magic)
	dst = appendHex(dst, uint64(sender), 8)
	dst = appendHex(dst, seq, 16)
	dst = appendHex(dst, uint64(size), 8)
	dst = appendHex(dst, uint64(checksum(dst[start:])), 8)
	off := offset(sender, seq)
	return append(dst, c.template[off:off+size-HeaderLen]...)
}

// Decode verifies p, the whole payload, and returns the sender and the
// sequence number it carries. Its length is len(p).
func (c *Codec) Decode(p []byte) (sender uint32, seq uint64, err error) {
	if len(p) < HeaderLen {
		return 0, 0, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrLength, len(p), HeaderLen)
	}
	if p[0] != magic {
		return 0, 0, fmt.Errorf("%w: first byte %#x", ErrHeader, p[0])
	}
	s, ok1 := parseHex(p[1:9])
	seq, ok2 := parseHex(p[9:25])
	size, ok3 := parseHex(p[25:33])
	sum, ok4 := parseHex(p[33:41])
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return 0, 0, fmt.Errorf("%w: %q", ErrHeader, p[:HeaderLen])
	}
	if want := checksum(p[:33]); uint32(sum) != want {
		return 0, 0, fmt.Errorf("%w: %q carries %08x, computed %08x", ErrChecksum, p[:33], sum, want)
	}
	sender = uint32(s)
	if size != uint64(len(p)) {
		return 0, 0, fmt.Errorf("%w: sender %d seq %d arrived with %d bytes, its header says %d", ErrLength, sender, seq, len(p), size)
	}
	if size > uint64(c.max) {
		return 0, 0, fmt.Errorf("%w: sender %d seq %d is %d bytes, this codec builds at most %d", ErrLength, sender, seq, size, c.max)
	}
	off := offset(sender, seq)
	if !bytes.Equal(p[HeaderLen:], c.template[off:off+len(p)-HeaderLen]) {
		return 0, 0, fmt.Errorf("%w: sender %d seq %d (%d bytes)", ErrFiller, sender, seq, len(p))
	}
	return sender, seq, nil
}

// offset is where the filler window of (sender, seq) starts in the
// template: consecutive sequence numbers of one sender get consecutive
// offsets, and each sender starts somewhere else.
func offset(sender uint32, seq uint64) int {
	return int((seq%period + mix(uint64(sender))%period) % period)
}

// mix is splitmix64's finaliser: it spreads any difference in its input
// over every bit of its output.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

func checksum(head []byte) uint32 {
	h := uint32(fnvOffset)
	for _, x := range head {
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
