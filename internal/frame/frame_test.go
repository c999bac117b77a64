package frame

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestIndex(t *testing.T) {
	for _, tc := range []struct {
		b    string
		room int
		want int
	}{
		{"", 10, -1},
		{"\x00", 0, -1}, // no room: nothing is looked at
		{"\x00", 1, 0},
		{"abc\x00def\x00", 100, 3},
		{"abc\x00", 3, -1}, // the terminator lies just past the window
		{"abc\x00", 4, 3},
		{"abcdef", 3, -1},
	} {
		if got := Index([]byte(tc.b), tc.room); got != tc.want {
			t.Errorf("Index(%q, %d) = %d, want %d", tc.b, tc.room, got, tc.want)
		}
	}
}

func TestAppend(t *testing.T) {
	got := Append([]byte("prefix"), 0x01020300, []byte("hi"))
	if want := "prefix\x01\x02\x03\x00hi\x00"; string(got) != want {
		t.Fatalf("Append = %q, want %q", got, want)
	}
	if got := Append(nil, 7, nil); string(got) != "\x00\x00\x00\x07\x00" {
		t.Fatalf("empty payload: %q", got)
	}
}

func TestReadID(t *testing.T) {
	r := strings.NewReader("\x00\xab\x00\xcdone\x00")
	id, err := ReadID(r)
	if err != nil || id != 0x00ab00cd {
		t.Fatalf("ReadID = %#x, %v; want 0xab00cd", id, err)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "one\x00" {
		t.Fatalf("ReadID consumed past the ID: %q left", rest)
	}
	if _, err := ReadID(strings.NewReader("\x00\x00\x00\x00")); !errors.Is(err, ErrZeroID) {
		t.Fatalf("ID 0: err = %v, want ErrZeroID", err)
	}
	if _, err := ReadID(strings.NewReader("\x01\x02")); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("ID cut short: err = %v, want io.ErrUnexpectedEOF", err)
	}
}

// chunkReader returns its data in reads of at most n bytes.
type chunkReader struct {
	data []byte
	n    int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.n)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// splitAll reads r to the end with Fill and Next and returns every
// complete payload, copied.
func splitAll(s *Splitter, r io.Reader) ([]string, error) {
	var frames []string
	for {
		err := s.Fill(r)
		for f, ok := s.Next(); ok; f, ok = s.Next() {
			frames = append(frames, string(f))
		}
		if err == io.EOF {
			return frames, nil
		}
		if err != nil {
			return frames, err
		}
	}
}

func TestSplitterAcrossChunkBoundaries(t *testing.T) {
	// Payloads of many lengths, including empty ones and ones longer than
	// the splitter's initial buffer, so they straddle reads and force
	// growth.
	var want []string
	var stream []byte
	for i, n := range []int{0, 1, 5, 31, 32, 33, 0, 100, 1000, 4095, 4096, 4097, 10000, 2, 0} {
		f := strings.Repeat(string(rune('a'+i%26)), n)
		want = append(want, f)
		stream = append(stream, f...)
		stream = append(stream, End)
	}
	stream = append(stream, "partial tail"...) // no terminator: never returned

	for _, chunk := range []int{1, 2, 3, 7, 31, 32, 33, 64, 1000, 4096, 1 << 20} {
		for _, bufSize := range []int{32, 4096} {
			t.Run(fmt.Sprintf("chunk%d/buf%d", chunk, bufSize), func(t *testing.T) {
				s := NewSplitter(bufSize, 1<<20)
				got, err := splitAll(s, &chunkReader{data: stream, n: chunk})
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(want) {
					t.Fatalf("got %d frames, want %d", len(got), len(want))
				}
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("frame %d: got %d bytes %.20q, want %d bytes %.20q", i, len(got[i]), got[i], len(want[i]), want[i])
					}
				}
				if s.Pending() != len("partial tail") {
					t.Fatalf("Pending = %d, want %d", s.Pending(), len("partial tail"))
				}
			})
		}
	}
}

// The limit is exact, whether the frame arrives in one read that is
// larger than it or a byte at a time.
func TestSplitterLimitIsExact(t *testing.T) {
	const limit = 64
	for _, bufSize := range []int{16, 1024} {
		for _, oneByte := range []bool{false, true} {
			t.Run(fmt.Sprintf("buf%d/onebyte=%v", bufSize, oneByte), func(t *testing.T) {
				reader := func(b []byte) io.Reader {
					if oneByte {
						return iotest.OneByteReader(bytes.NewReader(b))
					}
					return bytes.NewReader(b)
				}
				fits := append(bytes.Repeat([]byte{'x'}, limit), End)
				got, err := splitAll(NewSplitter(bufSize, limit), reader(append(fits, "ok\x00"...)))
				if err != nil || len(got) != 2 || len(got[0]) != limit || got[1] != "ok" {
					t.Fatalf("payload of exactly the limit: got %d frames, %v", len(got), err)
				}
				over := append(bytes.Repeat([]byte{'x'}, limit+1), End)
				got, err = splitAll(NewSplitter(bufSize, limit), reader(append(over, "ok\x00"...)))
				if !errors.Is(err, ErrTooLong) || len(got) != 0 {
					t.Fatalf("payload one byte over the limit: got %d frames, err %v; want ErrTooLong", len(got), err)
				}
			})
		}
	}
}

func TestSplitterRefusesEndlessFrame(t *testing.T) {
	s := NewSplitter(16, 64)
	_, err := splitAll(s, bytes.NewReader(bytes.Repeat([]byte{'x'}, 200)))
	if !errors.Is(err, ErrTooLong) || !strings.Contains(err.Error(), "more than 64 bytes") {
		t.Fatalf("err = %v, want ErrTooLong naming the limit", err)
	}
	// The error sticks: nothing more is read or handed out.
	if err := s.Fill(strings.NewReader("a\x00")); !errors.Is(err, ErrTooLong) {
		t.Fatalf("Fill after the limit broke = %v, want ErrTooLong", err)
	}
	if p, ok := s.Next(); ok {
		t.Fatalf("Next after the limit broke returned %q", p)
	}
}

func TestReadFrame(t *testing.T) {
	s := NewSplitter(8, 1<<10)
	r := &chunkReader{data: []byte("one\x00\x00a longer payload than the buffer\x00cut"), n: 5}
	for _, want := range []string{"one", "", "a longer payload than the buffer"} {
		p, err := s.ReadFrame(r)
		if err != nil || string(p) != want {
			t.Fatalf("ReadFrame = %q, %v; want %q", p, err, want)
		}
	}
	if _, err := s.ReadFrame(r); err != io.ErrUnexpectedEOF {
		t.Fatalf("stream ending mid-frame: err = %v, want io.ErrUnexpectedEOF", err)
	}

	s = NewSplitter(8, 1<<10)
	p, err := s.ReadFrame(strings.NewReader("last\x00"))
	if err != nil || string(p) != "last" {
		t.Fatalf("ReadFrame = %q, %v", p, err)
	}
	if _, err := s.ReadFrame(strings.NewReader("")); err != io.EOF {
		t.Fatalf("stream ending between frames: err = %v, want io.EOF", err)
	}
}

// errAfter returns its data, then err, then more data: as a connection
// does across a read deadline that is moved.
type errAfter struct {
	parts []string
	err   error
}

func (r *errAfter) Read(p []byte) (int, error) {
	if len(r.parts) == 0 {
		return 0, io.EOF
	}
	part := r.parts[0]
	r.parts = r.parts[1:]
	if part == "" {
		return 0, r.err
	}
	return copy(p, part), nil
}

func TestReadFrameKeepsPartialAcrossErrors(t *testing.T) {
	timeout := errors.New("deadline")
	r := &errAfter{parts: []string{"hal", "", "f\x00"}, err: timeout}
	s := NewSplitter(64, 1<<10)
	if _, err := s.ReadFrame(r); err != timeout {
		t.Fatalf("first ReadFrame = %v, want the reader's error", err)
	}
	if s.Pending() != 3 {
		t.Fatalf("Pending = %d after the error, want the 3 bytes read", s.Pending())
	}
	if p, err := s.ReadFrame(r); err != nil || string(p) != "half" {
		t.Fatalf("second ReadFrame = %q, %v; want the completed %q", p, err, "half")
	}
}

// A frame that arrives together with an error is handed out first.
type dataAndEOF struct{ done bool }

func (r *dataAndEOF) Read(p []byte) (int, error) {
	if r.done {
		return 0, io.EOF
	}
	r.done = true
	return copy(p, "a\x00b\x00"), io.EOF
}

func TestReadFrameDataWithError(t *testing.T) {
	s := NewSplitter(64, 1<<10)
	r := &dataAndEOF{}
	for _, want := range []string{"a", "b"} {
		if p, err := s.ReadFrame(r); err != nil || string(p) != want {
			t.Fatalf("ReadFrame = %q, %v; want %q", p, err, want)
		}
	}
	if _, err := s.ReadFrame(r); err != io.EOF {
		t.Fatalf("after the last frame: err = %v, want io.EOF", err)
	}
}

func TestSplitterAllocatesNothingOnceGrown(t *testing.T) {
	stream := bytes.Repeat([]byte("payload of a frame\x00"), 100)
	s := NewSplitter(256, 1<<10)
	r := bytes.NewReader(stream)
	run := func() {
		r.Reset(stream)
		for {
			if _, err := s.ReadFrame(r); err != nil {
				return
			}
		}
	}
	run()
	if allocs := testing.AllocsPerRun(50, run); allocs != 0 {
		t.Errorf("%v allocations per pass over 100 frames, want 0", allocs)
	}
}
