package bench

import (
	"bytes"
	"fmt"
	"io"
)

// Splitter reads a stream of NUL-terminated frames in large chunks and hands
// out each complete frame as a slice of its own buffer. A frame that straddles
// two reads is kept and completed by the next one; the buffer grows only when
// a single frame is longer than it, up to a limit.
type Splitter struct {
	buf   []byte
	start int // first byte of the frame being assembled
	scan  int // buf[start:scan] is known to hold no 0x00
	end   int // buf[:end] holds data
	limit int
}

// NewSplitter returns a Splitter that reads size bytes at a time and refuses
// frames longer than limit bytes.
func NewSplitter(size, limit int) *Splitter {
	return &Splitter{buf: make([]byte, size), limit: max(size, limit)}
}

// Fill makes room and does one Read from r. Frames returned by Next before
// this call are no longer valid afterwards. Bytes read together with an error
// are kept, so a caller should drain Next before acting on the error.
func (s *Splitter) Fill(r io.Reader) error {
	if s.start == s.end {
		s.start, s.scan, s.end = 0, 0, 0
	} else if s.start > 0 && len(s.buf)-s.end < len(s.buf)/2 {
		// Move the partial frame to the front only when the free tail got
		// small: copying a large partial frame on every read would cost more
		// than reading into a smaller space.
		n := copy(s.buf, s.buf[s.start:s.end])
		s.scan -= s.start
		s.start, s.end = 0, n
	}
	if s.end == len(s.buf) {
		if len(s.buf) >= s.limit {
			return fmt.Errorf("frame longer than %d bytes without a 0x00", s.limit)
		}
		grown := make([]byte, min(2*len(s.buf), s.limit))
		s.end = copy(grown, s.buf[s.start:s.end])
		s.scan -= s.start
		s.start = 0
		s.buf = grown
	}
	n, err := r.Read(s.buf[s.end:])
	s.end += n
	return err
}

// Next returns the next complete frame without its 0x00, or false when the
// buffered bytes hold no complete frame.
func (s *Splitter) Next() ([]byte, bool) {
	i := bytes.IndexByte(s.buf[s.scan:s.end], 0)
	if i < 0 {
		s.scan = s.end
		return nil, false
	}
	frame := s.buf[s.start : s.scan+i]
	s.start = s.scan + i + 1
	s.scan = s.start
	return frame, true
}

// Pending is the number of bytes of an incomplete frame held back.
func (s *Splitter) Pending() int { return s.end - s.start }
