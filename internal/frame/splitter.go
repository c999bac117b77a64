package frame

import (
	"errors"
	"fmt"
	"io"
)

// ErrTooLong reports a delivered frame whose payload grew past the
// Splitter's limit without its End byte. The stream cannot be resynced
// after it: there is no telling where the next frame starts.
var ErrTooLong = errors.New("frame: payload longer than the limit")

// Splitter cuts the stream a relay delivers to one client ([payload][0x00]
// per frame, after the ID) into payloads. It reads in large chunks and hands
// out each complete payload as a slice of its own buffer, so it copies
// nothing and, once its buffer has grown to the longest frame seen,
// allocates nothing. A frame that straddles two reads is kept and completed
// by the next one.
//
// The zero Splitter is not usable; create one with NewSplitter. A Splitter
// is not safe for concurrent use.
type Splitter struct {
	buf     []byte
	start   int  // first byte of the frame being assembled
	scan    int  // buf[start:scan] is known to hold no End byte
	end     int  // buf[:end] holds data
	limit   int  // longest payload accepted, End excluded
	tooLong bool // a frame broke the limit; the stream is over
}

// NewSplitter returns a Splitter that reads up to size bytes at a time and
// refuses payloads longer than limit bytes. Its buffer starts at size bytes
// and grows, by doubling, only while one frame does not fit, up to limit+1
// bytes.
func NewSplitter(size, limit int) *Splitter {
	return &Splitter{buf: make([]byte, max(size, 1)), limit: max(limit, 0)}
}

// Next returns the next complete payload without its End byte, or false
// when the buffered bytes hold no complete frame. The payload stays valid
// until the next call to Fill or ReadFrame.
func (s *Splitter) Next() ([]byte, bool) {
	if s.tooLong {
		return nil, false
	}
	// A terminator more than limit bytes after the frame's start would end
	// an over-long payload: there is no need to look that far.
	i := Index(s.buf[s.scan:s.end], s.limit+1-(s.scan-s.start))
	if i < 0 {
		s.scan = s.end
		s.tooLong = s.end-s.start > s.limit
		return nil, false
	}
	p := s.buf[s.start : s.scan+i]
	s.start = s.scan + i + 1
	s.scan = s.start
	return p, true
}

// Fill makes room and does one Read from r. Call it once Next has reported
// false. Payloads returned before this call are no longer valid
// afterwards. Bytes read together with an error are kept, so a caller
// should drain Next before acting on the error. Once a payload has broken
// the limit, Fill reads nothing and returns an error that wraps
// ErrTooLong.
func (s *Splitter) Fill(r io.Reader) error {
	switch {
	case s.tooLong:
		return s.errTooLong()
	case s.start == s.end:
		s.start, s.scan, s.end = 0, 0, 0
	case s.start > 0 && len(s.buf)-s.end < len(s.buf)/2:
		// Move the partial frame to the front only when the free tail
		// got small: copying a large partial frame on every read would
		// cost more than reading into a smaller space.
		n := copy(s.buf, s.buf[s.start:s.end])
		s.scan -= s.start
		s.start, s.end = 0, n
	}
	if s.end == len(s.buf) {
		// One frame fills the whole buffer. Next has already refused it
		// if it holds more than limit bytes, so it may still grow.
		if s.end-s.start > s.limit {
			s.tooLong = true
			return s.errTooLong()
		}
		grown := make([]byte, min(2*len(s.buf), s.limit+1))
		s.end = copy(grown, s.buf[s.start:s.end])
		s.scan -= s.start
		s.start = 0
		s.buf = grown
	}
	n, err := r.Read(s.buf[s.end:])
	s.end += n
	return err
}

// ReadFrame returns the next payload, reading from r as often as it takes.
// The payload stays valid until the next call to Fill or ReadFrame. When r
// ends between frames ReadFrame returns io.EOF; inside a frame,
// io.ErrUnexpectedEOF. Any other error from r is returned as it is, and
// the bytes of a frame read so far are kept for the next call: after a
// read deadline passes, a new deadline lets the same frame complete.
func (s *Splitter) ReadFrame(r io.Reader) ([]byte, error) {
	for {
		if p, ok := s.Next(); ok {
			return p, nil
		}
		err := s.Fill(r)
		if err == nil {
			continue
		}
		// Bytes that came with the error may complete a frame; the error
		// comes back on the next read.
		if p, ok := s.Next(); ok {
			return p, nil
		}
		if err == io.EOF && s.Pending() > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
}

// Pending is the number of bytes of an incomplete frame held back.
func (s *Splitter) Pending() int { return s.end - s.start }

func (s *Splitter) errTooLong() error {
	return fmt.Errorf("%w: more than %d bytes without a 0x00", ErrTooLong, s.limit)
}
