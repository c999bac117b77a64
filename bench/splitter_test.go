package bench

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

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

// splitAll reads r to the end and returns every complete frame, copied.
func splitAll(t *testing.T, s *Splitter, r io.Reader) ([]string, error) {
	t.Helper()
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
	// Frames of many lengths, including empty ones and ones longer than the
	// splitter's initial buffer, so they straddle reads and force growth.
	var want []string
	var stream []byte
	for i, n := range []int{0, 1, 5, 31, 32, 33, 0, 100, 1000, 4095, 4096, 4097, 10000, 2, 0} {
		f := strings.Repeat(string(rune('a'+i%26)), n)
		want = append(want, f)
		stream = append(stream, f...)
		stream = append(stream, 0)
	}
	stream = append(stream, "partial tail"...) // no terminator: never returned

	for _, chunk := range []int{1, 2, 3, 7, 31, 32, 33, 64, 1000, 4096, 1 << 20} {
		for _, bufSize := range []int{32, 4096} {
			t.Run(fmt.Sprintf("chunk%d/buf%d", chunk, bufSize), func(t *testing.T) {
				s := NewSplitter(bufSize, 1<<20)
				got, err := splitAll(t, s, &chunkReader{data: stream, n: chunk})
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

func TestSplitterOneByteReads(t *testing.T) {
	c, _ := NewCodec(64)
	var stream, frame []byte
	for seq := range uint64(50) {
		frame = appendFrame(frame[:0], 0, c, 1, seq)
		stream = append(stream, frame[4:]...) // what a receiver gets: no header
	}
	s := NewSplitter(64, 1<<10)
	got, err := splitAll(t, s, iotest.OneByteReader(bytes.NewReader(stream)))
	if err != nil {
		t.Fatal(err)
	}
	o := NewOrder(1, 1)
	for _, f := range got {
		sender, seq, err := c.Decode([]byte(f))
		if err == nil {
			err = o.Check(sender, seq)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 50 {
		t.Fatalf("got %d frames, want 50", len(got))
	}
}

func TestSplitterRefusesEndlessFrame(t *testing.T) {
	s := NewSplitter(16, 64)
	_, err := splitAll(t, s, bytes.NewReader(bytes.Repeat([]byte{'x'}, 200)))
	if err == nil || !strings.Contains(err.Error(), "longer than 64 bytes") {
		t.Fatalf("err = %v, want a frame-too-long error", err)
	}
}
