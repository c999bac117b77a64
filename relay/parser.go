package relay

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ringrelay/ringrelay/internal/frame"
)

// ErrFrameTooLong reports a payload that grew past the parser's limit before
// its terminating NUL arrived. The connection that sent it cannot be resynced:
// there is no way to know where the next frame starts.
var ErrFrameTooLong = errors.New("relay: frame payload exceeds the limit without a NUL")

const (
	// minAccum is the first capacity of the accumulation buffer; it spares
	// small frames split across reads a string of tiny reallocations.
	minAccum = 512
	// idleAccumCap is the largest accumulation buffer Reset keeps. Beyond
	// it the buffer is dropped, so a connection that once carried one huge
	// frame does not pin that memory while idle.
	idleAccumCap = 64 << 10
)

// Parser splits a client's byte stream ([dest][payload][0x00] per frame)
// into frames. It does no I/O: the caller feeds it whatever each read
// returned, in order. It finds each frame's end with frame.Index, the scan
// the readers of delivered streams (frame.Splitter) use too; what it adds
// is the header, the limit and the zero-copy hand-out.
//
// A frame that lies whole inside one chunk is returned as a slice of that
// chunk, without copying. Only a frame that straddles chunks is copied, into
// an accumulation buffer that is reused from frame to frame, so a parser in
// steady state allocates nothing.
//
// The zero Parser is not usable; create one with NewParser. A Parser is not
// safe for concurrent use.
type Parser struct {
	// Every open connection carries one, so the fields are as narrow as
	// their ranges allow: 40 bytes in all.
	accum  []byte                // payload (and finally the NUL) of the incomplete frame
	max    int32                 // payload limit, excluding header and NUL (31 bits)
	hdr    [frame.HeaderLen]byte // header of the incomplete frame
	nhdr   uint8                 // bytes of hdr filled; 0 when between frames
	failed bool                  // a frame broke the limit; only Reset recovers
}

// NewParser returns a parser that accepts payloads of up to maxFrame bytes,
// not counting the 4-byte header or the terminating NUL. It panics if
// maxFrame is negative or does not fit in 31 bits, which would be a
// configuration bug rather than a runtime condition.
func NewParser(maxFrame int) Parser {
	if maxFrame < 0 || maxFrame > frame.MaxPayload {
		panic(fmt.Sprintf("relay: NewParser: maxFrame %d out of range", maxFrame))
	}
	return Parser{max: int32(maxFrame)}
}

// Next consumes a prefix of data and reports how many bytes it used in n.
// The caller advances data by n and calls again while data is not empty.
//
// When a frame completed, ok is true, dest is its destination and fr is
// its payload followed by the single 0x00, which is exactly what the relay
// forwards. fr aliases either data or the parser's accumulation buffer and
// stays valid only until the next call to Next or Reset.
//
// When data ends inside a frame, the partial frame is kept inside the parser,
// n == len(data) and ok is false.
//
// err is ErrFrameTooLong as soon as the payload seen so far is longer than the
// limit and holds no NUL. From then on Next returns the same error without
// consuming anything, until Reset.
func (p *Parser) Next(data []byte) (n int, dest uint32, fr []byte, ok bool, err error) {
	if p.failed {
		return 0, 0, nil, false, ErrFrameTooLong
	}

	// Fast path: a frame starts here and its header is in data, so the
	// frame can be handed out in place if its NUL is in data too.
	if p.nhdr == 0 && len(data) >= frame.HeaderLen {
		body := data[frame.HeaderLen:]
		// Looking further than max+1 bytes is pointless: a NUL beyond
		// that point would end an over-long payload anyway.
		if i := frame.Index(body, int(p.max)+1); i >= 0 {
			return frame.HeaderLen + i + 1, binary.BigEndian.Uint32(data), body[:i+1], true, nil
		}
		if len(body) > int(p.max) {
			return p.fail()
		}
		copy(p.hdr[:], data)
		p.nhdr = frame.HeaderLen
		p.accumulate(body)
		return len(data), 0, nil, false, nil
	}

	// Slow path: finish a header that was split across chunks.
	if p.nhdr < frame.HeaderLen {
		c := copy(p.hdr[p.nhdr:], data)
		p.nhdr += uint8(c)
		n = c
		if p.nhdr < frame.HeaderLen {
			return n, 0, nil, false, nil
		}
		data = data[c:]
	}

	// Continue a payload. room counts the bytes the frame may still take,
	// its NUL included.
	room := int(p.max) + 1 - len(p.accum)
	i := frame.Index(data, room)
	if i < 0 {
		if len(data) >= room {
			return p.fail()
		}
		p.accumulate(data)
		return n + len(data), 0, nil, false, nil
	}
	p.accumulate(data[:i+1])
	fr = p.accum
	dest = binary.BigEndian.Uint32(p.hdr[:])
	p.nhdr = 0
	p.accum = p.accum[:0]
	return n + i + 1, dest, fr, true, nil
}

// Partial reports whether the parser holds part of a frame: some header
// bytes, or a header and some payload.
func (p *Parser) Partial() bool { return p.nhdr > 0 }

// Buffered returns how many bytes of the incomplete frame the parser holds.
func (p *Parser) Buffered() int { return int(p.nhdr) + len(p.accum) }

// Reset discards any partial frame and clears a previous ErrFrameTooLong.
// An accumulation buffer larger than 64 KiB is released, so that idle
// connections hold little memory.
func (p *Parser) Reset() {
	p.nhdr = 0
	p.failed = false
	if cap(p.accum) > idleAccumCap {
		p.accum = nil
	} else {
		p.accum = p.accum[:0]
	}
}

// fail drops the partial frame and latches the parser in the failed state.
func (p *Parser) fail() (int, uint32, []byte, bool, error) {
	p.failed = true
	p.nhdr = 0
	p.accum = p.accum[:0]
	return 0, 0, nil, false, ErrFrameTooLong
}

// accumulate appends b to the partial frame. Callers have already checked
// that the result fits in max+1 bytes, so the buffer grows geometrically
// but never past the largest frame the parser can accept.
func (p *Parser) accumulate(b []byte) {
	need := len(p.accum) + len(b)
	if need > cap(p.accum) {
		size := min(max(2*cap(p.accum), need, minAccum), int(p.max)+1)
		grown := make([]byte, len(p.accum), size)
		copy(grown, p.accum)
		p.accum = grown
	}
	p.accum = append(p.accum, b...)
}

// Trim drops the accumulation buffer when no frame is in progress, so a
// connection that once carried large frames holds none while it is quiet.
// A frame Next handed out from the buffer stays valid: Trim only lets go.
func (p *Parser) Trim() {
	if p.nhdr == 0 {
		p.accum = nil
	}
}
