package relay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/ringrelay/ringrelay/internal/frame"
)

// parsed is one frame as the tests compare it: copied out of the parser,
// because the slice Next returns is only valid until the next call.
type parsed struct {
	dest  uint32
	frame string // payload + NUL
}

func (f parsed) String() string { return fmt.Sprintf("%08x:%q", f.dest, f.frame) }

// outcome is everything observable after feeding a stream to a parser.
type outcome struct {
	frames   []parsed
	err      error
	partial  bool
	buffered int
}

// feed runs chunks through p the way a server would, checking the contract
// of every single call on the way.
func feed(t testing.TB, p *Parser, chunks [][]byte) outcome {
	t.Helper()
	var out outcome
	for _, chunk := range chunks {
		for len(chunk) > 0 {
			n, dest, frame, ok, err := p.Next(chunk)
			if err != nil {
				out.err = err
				out.partial, out.buffered = p.Partial(), p.Buffered()
				return out
			}
			if n <= 0 || n > len(chunk) {
				t.Fatalf("Next consumed %d of %d bytes", n, len(chunk))
			}
			if ok {
				out.frames = append(out.frames, parsed{dest, string(frame)})
			} else if n != len(chunk) {
				t.Fatalf("Next returned no frame but consumed only %d of %d bytes", n, len(chunk))
			}
			chunk = chunk[n:]
		}
	}
	out.partial, out.buffered = p.Partial(), p.Buffered()
	return out
}

// splitAt cuts data at the given ascending offsets.
func splitAt(data []byte, cuts ...int) [][]byte {
	var chunks [][]byte
	prev := 0
	for _, c := range cuts {
		chunks = append(chunks, data[prev:c])
		prev = c
	}
	return append(chunks, data[prev:])
}

// singleBytes cuts data into one-byte chunks.
func singleBytes(data []byte) [][]byte {
	chunks := make([][]byte, len(data))
	for i := range data {
		chunks[i] = data[i : i+1]
	}
	return chunks
}

// frameBytes encodes one frame as a client sends it.
func frameBytes(dest uint32, payload string) []byte {
	b := binary.BigEndian.AppendUint32(nil, dest)
	b = append(b, payload...)
	return append(b, 0)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func sameOutcome(a, b outcome) bool {
	return slices.Equal(a.frames, b.frames) && errors.Is(a.err, b.err) && errors.Is(b.err, a.err) &&
		a.partial == b.partial && a.buffered == b.buffered
}

type parserCase struct {
	name     string
	max      int
	stream   []byte
	want     []parsed
	wantErr  error
	buffered int // bytes left in the parser at the end (when no error)
}

func parserCases() []parserCase {
	var many []byte
	var manyWant []parsed
	for i := range 100 {
		payload := fmt.Sprintf("frame %d", i)
		many = append(many, frameBytes(uint32(i+1), payload)...)
		manyWant = append(manyWant, parsed{uint32(i + 1), payload + "\x00"})
	}
	return []parserCase{
		{
			name:   "one frame",
			max:    64,
			stream: frameBytes(0x01020304, "hello"),
			want:   []parsed{{0x01020304, "hello\x00"}},
		},
		{
			name:   "empty payload",
			max:    64,
			stream: frameBytes(7, ""),
			want:   []parsed{{7, "\x00"}},
		},
		{
			name:   "header of zeros is still a header",
			max:    64,
			stream: frameBytes(0, "x"),
			want:   []parsed{{0, "x\x00"}},
		},
		{
			name:   "header with zero bytes inside",
			max:    64,
			stream: cat(frameBytes(0x00ab0000, "a"), frameBytes(0x0000000c, ""), frameBytes(0x10000001, "bc")),
			want:   []parsed{{0x00ab0000, "a\x00"}, {0x0c, "\x00"}, {0x10000001, "bc\x00"}},
		},
		{
			name:   "many frames in one chunk",
			max:    64,
			stream: many,
			want:   manyWant,
		},
		{
			name:   "payload of exactly max",
			max:    8,
			stream: cat(frameBytes(1, "12345678"), frameBytes(2, "ok")),
			want:   []parsed{{1, "12345678\x00"}, {2, "ok\x00"}},
		},
		{
			name:    "payload of max+1 with its NUL",
			max:     8,
			stream:  cat(frameBytes(1, "ok"), frameBytes(2, "123456789")),
			want:    []parsed{{1, "ok\x00"}},
			wantErr: ErrFrameTooLong,
		},
		{
			name:    "payload of max+1 and no NUL yet",
			max:     8,
			stream:  cat(frameBytes(1, "ok"), []byte{0, 0, 0, 2}, []byte("123456789")),
			want:    []parsed{{1, "ok\x00"}},
			wantErr: ErrFrameTooLong,
		},
		{
			name:    "max zero rejects any payload byte",
			max:     0,
			stream:  cat(frameBytes(3, ""), frameBytes(4, "a")),
			want:    []parsed{{3, "\x00"}},
			wantErr: ErrFrameTooLong,
		},
		{
			name:     "payload of exactly max still waiting for its NUL",
			max:      8,
			stream:   cat(frameBytes(1, "ok"), []byte{0, 0, 0, 2}, []byte("12345678")),
			want:     []parsed{{1, "ok\x00"}},
			buffered: 12,
		},
		{
			name:     "trailing partial header",
			max:      64,
			stream:   cat(frameBytes(9, "nine"), []byte{0, 0}),
			want:     []parsed{{9, "nine\x00"}},
			buffered: 2,
		},
		{
			name:     "trailing header without payload",
			max:      64,
			stream:   []byte{0, 0, 0, 0},
			buffered: 4,
		},
		{
			name:     "trailing partial payload",
			max:      64,
			stream:   cat(frameBytes(9, "nine"), []byte{0xff, 0, 0xff, 0}, []byte("ten")),
			want:     []parsed{{9, "nine\x00"}},
			buffered: 7,
		},
		{
			name:   "high bytes in payload",
			max:    64,
			stream: frameBytes(0xffffffff, "\xff\x01\x80\xfe"),
			want:   []parsed{{0xffffffff, "\xff\x01\x80\xfe\x00"}},
		},
	}
}

func TestParserCases(t *testing.T) {
	for _, tc := range parserCases() {
		t.Run(tc.name, func(t *testing.T) {
			want := outcome{frames: tc.want, err: tc.wantErr, partial: tc.buffered > 0, buffered: tc.buffered}
			if tc.wantErr != nil {
				want.partial, want.buffered = false, 0
			}
			check := func(how string, chunks [][]byte) {
				t.Helper()
				p := NewParser(tc.max)
				got := feed(t, &p, chunks)
				if !sameOutcome(got, want) {
					t.Fatalf("%s:\n got  %v err=%v partial=%v buffered=%d\n want %v err=%v partial=%v buffered=%d",
						how, got.frames, got.err, got.partial, got.buffered,
						want.frames, want.err, want.partial, want.buffered)
				}
			}
			check("whole", [][]byte{tc.stream})
			check("single bytes", singleBytes(tc.stream))
			for i := 0; i <= len(tc.stream); i++ {
				check(fmt.Sprintf("split at %d", i), splitAt(tc.stream, i))
			}
			if len(tc.stream) <= 64 {
				for i := 0; i <= len(tc.stream); i++ {
					for j := i; j <= len(tc.stream); j++ {
						check(fmt.Sprintf("split at %d,%d", i, j), splitAt(tc.stream, i, j))
					}
				}
			}
		})
	}
}

func TestParserZeroCopyOnlyForWholeFrames(t *testing.T) {
	p := NewParser(64)
	data := cat(frameBytes(1, "abc"), frameBytes(2, "de"))

	n, _, frame, ok, err := p.Next(data)
	if err != nil || !ok || n != 8 {
		t.Fatalf("Next = %d, %q, %v, %v", n, frame, ok, err)
	}
	if &frame[0] != &data[4] {
		t.Error("a frame lying whole in data was copied")
	}

	// Split the second frame: its bytes must end up in the parser's own
	// buffer, since the caller is free to reuse data after Next returns.
	rest := bytes.Clone(data[n:])
	n, _, _, ok, _ = p.Next(rest[:5])
	if ok || n != 5 {
		t.Fatalf("first half: n=%d ok=%v", n, ok)
	}
	clear(rest[:5])
	_, dest, frame, ok, err := p.Next(rest[5:])
	if err != nil || !ok || dest != 2 || string(frame) != "de\x00" {
		t.Fatalf("second half: dest=%d frame=%q ok=%v err=%v", dest, frame, ok, err)
	}
}

func TestParserStopsAtFrameEnd(t *testing.T) {
	// A split frame completes without eating into the frame after it.
	p := NewParser(64)
	if n, _, _, ok, _ := p.Next([]byte{0, 0, 0, 5, 'a'}); ok || n != 5 {
		t.Fatalf("n=%d ok=%v", n, ok)
	}
	data := cat([]byte("b\x00"), frameBytes(6, "c"))
	n, dest, frame, ok, err := p.Next(data)
	if err != nil || !ok || n != 2 || dest != 5 || string(frame) != "ab\x00" {
		t.Fatalf("n=%d dest=%d frame=%q ok=%v err=%v", n, dest, frame, ok, err)
	}
	if p.Partial() || p.Buffered() != 0 {
		t.Fatalf("after a complete frame: partial=%v buffered=%d", p.Partial(), p.Buffered())
	}
}

func TestParserPartialAndBuffered(t *testing.T) {
	p := NewParser(64)
	steps := []struct {
		in       string
		partial  bool
		buffered int
	}{
		{"\x00", true, 1},
		{"\x00\x00", true, 3},
		{"\x01", true, 4},
		{"xy", true, 6},
		{"z\x00", false, 0},
	}
	for i, s := range steps {
		feed(t, &p, [][]byte{[]byte(s.in)})
		if p.Partial() != s.partial || p.Buffered() != s.buffered {
			t.Fatalf("step %d: partial=%v buffered=%d, want %v %d", i, p.Partial(), p.Buffered(), s.partial, s.buffered)
		}
	}
}

func TestParserErrorIsSticky(t *testing.T) {
	p := NewParser(4)
	if _, _, _, _, err := p.Next([]byte("\x00\x00\x00\x01toolong")); !errors.Is(err, ErrFrameTooLong) {
		t.Fatalf("err = %v, want ErrFrameTooLong", err)
	}
	n, _, _, ok, err := p.Next(frameBytes(1, "ok"))
	if !errors.Is(err, ErrFrameTooLong) || ok || n != 0 {
		t.Fatalf("after the error: n=%d ok=%v err=%v, want 0 false ErrFrameTooLong", n, ok, err)
	}
	p.Reset()
	n, dest, frame, ok, err := p.Next(frameBytes(1, "ok"))
	if err != nil || !ok || n != 7 || dest != 1 || string(frame) != "ok\x00" {
		t.Fatalf("after Reset: n=%d dest=%d frame=%q ok=%v err=%v", n, dest, frame, ok, err)
	}
}

func TestParserResetDiscardsPartialFrame(t *testing.T) {
	for _, held := range []string{"\x00\x00", "\x00\x00\x00\x02", "\x00\x00\x00\x02abc"} {
		p := NewParser(64)
		feed(t, &p, [][]byte{[]byte(held)})
		if !p.Partial() {
			t.Fatalf("%q: not partial before Reset", held)
		}
		p.Reset()
		if p.Partial() || p.Buffered() != 0 {
			t.Fatalf("%q: after Reset partial=%v buffered=%d", held, p.Partial(), p.Buffered())
		}
		// Nothing of the discarded bytes leaks into the next frame.
		got := feed(t, &p, [][]byte{frameBytes(3, "new")})
		if want := []parsed{{3, "new\x00"}}; !slices.Equal(got.frames, want) {
			t.Fatalf("%q: after Reset got %v, want %v", held, got.frames, want)
		}
	}
}

func TestParserResetReleasesLargeBuffer(t *testing.T) {
	p := NewParser(1 << 20)
	big := cat([]byte{0, 0, 0, 1}, bytes.Repeat([]byte{'x'}, 100<<10))
	feed(t, &p, [][]byte{big[:10], big[10:]})
	if cap(p.accum) <= idleAccumCap {
		t.Fatalf("accumulation buffer cap %d; the test needs one above %d", cap(p.accum), idleAccumCap)
	}
	p.Reset()
	if cap(p.accum) != 0 {
		t.Errorf("Reset kept a %d-byte buffer", cap(p.accum))
	}

	// A small buffer is worth keeping.
	feed(t, &p, [][]byte{[]byte("\x00\x00\x00\x01abc")})
	small := cap(p.accum)
	if small == 0 {
		t.Fatal("no accumulation buffer after a partial frame")
	}
	p.Reset()
	if cap(p.accum) != small {
		t.Errorf("Reset changed a small buffer's cap from %d to %d", small, cap(p.accum))
	}
}

func TestParserBufferNeverExceedsLimit(t *testing.T) {
	const limit = 1000
	p := NewParser(limit)
	stream := frameBytes(1, string(bytes.Repeat([]byte{'y'}, limit)))
	got := feed(t, &p, singleBytes(stream))
	if len(got.frames) != 1 || len(got.frames[0].frame) != limit+1 {
		t.Fatalf("got %d frames", len(got.frames))
	}
	if cap(p.accum) > limit+1 {
		t.Errorf("accumulation buffer grew to %d bytes for a %d-byte limit", cap(p.accum), limit)
	}
}

func TestParserSteadyStateAllocatesNothing(t *testing.T) {
	p := NewParser(4096)
	stream := bytes.Repeat(frameBytes(0x01000001, string(bytes.Repeat([]byte{'z'}, 700))), 8)
	chunks := splitAt(stream, 1000, 1001, 2500, 4000, 5000)
	run := func() {
		for _, c := range chunks {
			for len(c) > 0 {
				n, _, _, _, err := p.Next(c)
				if err != nil {
					t.Fatal(err)
				}
				c = c[n:]
			}
		}
	}
	run() // grow the accumulation buffer once
	if allocs := testing.AllocsPerRun(100, run); allocs != 0 {
		t.Errorf("%v allocations per pass, want 0", allocs)
	}
}

func TestNewParserRejectsNegativeLimit(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewParser(-1) did not panic")
		}
	}()
	NewParser(-1)
}

// referenceParse is a deliberately naive, whole-buffer reading of the
// protocol, used to check the incremental parser.
func referenceParse(data []byte, maxFrame int) outcome {
	var out outcome
	for len(data) > 0 {
		if len(data) < frame.HeaderLen {
			return outcome{frames: out.frames, partial: true, buffered: len(data)}
		}
		end := -1
		for i := frame.HeaderLen; i < len(data); i++ {
			if data[i] == 0 {
				end = i
				break
			}
		}
		payload := end - frame.HeaderLen
		if end < 0 {
			payload = len(data) - frame.HeaderLen
		}
		if payload > maxFrame {
			return outcome{frames: out.frames, err: ErrFrameTooLong}
		}
		if end < 0 {
			return outcome{frames: out.frames, partial: true, buffered: len(data)}
		}
		dest := uint32(data[0])<<24 | uint32(data[1])<<16 | uint32(data[2])<<8 | uint32(data[3])
		out.frames = append(out.frames, parsed{dest, string(data[frame.HeaderLen : end+1])})
		data = data[end+1:]
	}
	return out
}

func FuzzParser(f *testing.F) {
	for _, tc := range parserCases() {
		f.Add(tc.stream, []byte{3, 1, 7}, uint16(tc.max))
	}
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x00\x00"), []byte{1}, uint16(0))
	f.Add(bytes.Repeat([]byte{0xff}, 300), []byte{250}, uint16(255))
	f.Add(bytes.Repeat(frameBytes(0x00010000, "abcdefgh"), 20), []byte{13, 0, 2, 90}, uint16(8))

	f.Fuzz(func(t *testing.T, stream, cuts []byte, limit uint16) {
		maxFrame := int(limit % 1024)
		whole := NewParser(maxFrame)
		want := feed(t, &whole, [][]byte{stream})

		if ref := referenceParse(stream, maxFrame); !sameOutcome(want, ref) {
			t.Fatalf("whole stream disagrees with the reference:\n got  %+v\n want %+v", want, ref)
		}
		for _, fr := range want.frames {
			if i := bytes.IndexByte([]byte(fr.frame), 0); i != len(fr.frame)-1 {
				t.Fatalf("frame %q: first NUL at %d, want only a trailing one", fr.frame, i)
			}
			if len(fr.frame)-1 > maxFrame {
				t.Fatalf("frame %q longer than the %d-byte limit", fr.frame, maxFrame)
			}
		}

		// Cut the stream where the fuzzer says: each byte of cuts is the
		// length of the next chunk, and what is left forms the last one.
		var chunks [][]byte
		rest := stream
		for _, c := range cuts {
			k := min(int(c), len(rest))
			chunks = append(chunks, rest[:k])
			rest = rest[k:]
		}
		chunks = append(chunks, rest)

		split := NewParser(maxFrame)
		if got := feed(t, &split, chunks); !sameOutcome(got, want) {
			t.Fatalf("split stream differs from whole:\n got  %+v\n want %+v", got, want)
		}
	})
}

func BenchmarkParser(b *testing.B) {
	cases := []struct {
		name    string
		payload int // payload bytes per frame
		chunk   int // bytes per read
	}{
		{"64B-frames/16KiB-chunks", 64 - frame.HeaderLen - 1, 16 << 10},
		{"1KiB-frames/split-1500B-chunks", 1024 - frame.HeaderLen - 1, 1500},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			frame := frameBytes(0x00c0ffee, string(bytes.Repeat([]byte{'m'}, bc.payload)))
			stream := bytes.Repeat(frame, (1<<20)/len(frame))
			var chunks [][]byte
			for rest := stream; len(rest) > 0; {
				k := min(bc.chunk, len(rest))
				chunks = append(chunks, rest[:k])
				rest = rest[k:]
			}
			p := NewParser(1 << 20)
			b.SetBytes(int64(len(stream)))
			b.ReportAllocs()
			frames := 0
			for b.Loop() {
				for _, c := range chunks {
					for len(c) > 0 {
						n, _, _, ok, err := p.Next(c)
						if err != nil {
							b.Fatal(err)
						}
						if ok {
							frames++
						}
						c = c[n:]
					}
				}
			}
			if frames != b.N*(len(stream)/len(frame)) {
				b.Fatalf("parsed %d frames, want %d", frames, b.N*(len(stream)/len(frame)))
			}
		})
	}
}
