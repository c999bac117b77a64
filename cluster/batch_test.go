package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/ringrelay/ringrelay/shard"
)

// testLimits: node 1 of 4 (Bits 2), frames up to 16 bytes, batches up to
// 256 bytes.
var testLimits = Limits{Scheme: shard.Scheme{Bits: 2, Self: 1}, MaxFrame: 16, MaxBatch: 256}

// idOn returns an ID of node n (Bits 2) with the given low bits.
func idOn(n int, low uint32) uint32 { return uint32(n)<<30 | low }

type frame struct {
	dest uint32
	data []byte // payload with trailing NUL
}

func encode(src int, frames ...frame) []byte {
	var bt Batch
	bt.Reset(src)
	for _, f := range frames {
		bt.Add(f.dest, f.data)
	}
	return append([]byte(nil), bt.Bytes()...)
}

func decodeAll(t *testing.T, b []byte, lim Limits) (int, []frame, error) {
	t.Helper()
	d, err := DecodeBatch(b, lim)
	if err != nil {
		return 0, nil, err
	}
	var got []frame
	d.Each(func(dest uint32, f []byte) { got = append(got, frame{dest, append([]byte(nil), f...)}) })
	if len(got) != d.Frames {
		t.Fatalf("Each gave %d frames, Decoded says %d", len(got), d.Frames)
	}
	return d.Source, got, nil
}

func TestBatchRoundTrip(t *testing.T) {
	in := []frame{
		{idOn(1, 7), []byte("hello\x00")},
		{idOn(1, 0x3fffffff), []byte("\x00")}, // empty payload
		{idOn(1, 1), append(bytes.Repeat([]byte{'x'}, 16), 0)},
	}
	b := encode(3, in...)
	if want := BatchHeader + 3*FrameOverhead + 5 + 0 + 16; len(b) != want {
		t.Fatalf("batch is %d bytes, want %d", len(b), want)
	}
	src, got, err := decodeAll(t, b, testLimits)
	if err != nil {
		t.Fatal(err)
	}
	if src != 3 || len(got) != len(in) {
		t.Fatalf("source %d, %d frames; want 3, %d", src, len(got), len(in))
	}
	for i := range in {
		if got[i].dest != in[i].dest || !bytes.Equal(got[i].data, in[i].data) {
			t.Fatalf("frame %d: got %08x %q, want %08x %q", i, got[i].dest, got[i].data, in[i].dest, in[i].data)
		}
	}
}

func TestBatchRejects(t *testing.T) {
	good := encode(0, frame{idOn(1, 5), []byte("ab\x00")}, frame{idOn(1, 6), []byte("cd\x00")})
	patch := func(off int, v ...byte) []byte {
		b := append([]byte(nil), good...)
		copy(b[off:], v)
		return b
	}
	count := func(n uint32) []byte {
		b := append([]byte(nil), good...)
		binary.BigEndian.PutUint32(b[8:], n)
		return b
	}
	cases := []struct {
		name string
		b    []byte
		want Reject
	}{
		{"empty", nil, RejectTruncated},
		{"header cut", good[:BatchHeader-1], RejectTruncated},
		{"bytes too few for the count", good[:BatchHeader+7+2], RejectCount},
		{"last frame cut before its NUL", append(bytes.Clone(good[:BatchHeader+7+2]), 0, 0, 'z'), RejectTruncated},
		{"last frame without NUL", good[:len(good)-1], RejectTruncated},
		{"wrong magic", patch(0, 'X'), RejectMagic},
		{"reserved set", patch(7, 1), RejectMagic},
		{"version 2", patch(3, 2), RejectVersion},
		{"source is self", patch(4, 0, 1), RejectSource},
		{"source out of range", patch(4, 0, 4), RejectSource},
		{"count 0", count(0), RejectCount},
		{"count too high", count(3), RejectCount},
		{"count absurd", count(1 << 31), RejectCount},
		{"count too low", count(1), RejectCount},
		{"zero ID", patch(BatchHeader, 0, 0, 0, 0), RejectZeroID},
		{"ID of node 2", patch(BatchHeader, 0x80), RejectWrongNode},
		{"NUL inside payload", encode(0, frame{idOn(1, 5), []byte("a\x00\x40\x00\x00\x01b\x00")}), RejectCount},
		{"payload over max-frame", encode(0, frame{idOn(1, 5), append(bytes.Repeat([]byte{'y'}, 17), 0)}), RejectFrameSize},
		{"batch over max", encode(0, frame{idOn(1, 5), append(bytes.Repeat([]byte{'y'}, 250), 0)}), RejectBatchSize},
		{"trailing byte", append(append([]byte(nil), good...), 'z'), RejectCount},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, got, err := decodeAll(t, c.b, testLimits)
			var be *BatchError
			if !errors.As(err, &be) {
				t.Fatalf("err %v (frames %d), want a BatchError", err, len(got))
			}
			if be.Reason != c.want {
				t.Fatalf("reason %s (%v), want %s", be.Reason, err, c.want)
			}
		})
	}
}

func TestBatchMaxFrameExactly(t *testing.T) {
	b := encode(2, frame{idOn(1, 9), append(bytes.Repeat([]byte{'m'}, testLimits.MaxFrame), 0)})
	if _, _, err := decodeAll(t, b, testLimits); err != nil {
		t.Fatalf("a payload of exactly max-frame: %v", err)
	}
}

func TestBatchSingleNode(t *testing.T) {
	// Bits 0 has one node: every source is this node, so nothing decodes.
	lim := Limits{Scheme: shard.Scheme{}, MaxFrame: 16, MaxBatch: 256}
	_, _, err := decodeAll(t, encode(0, frame{5, []byte("a\x00")}), lim)
	var be *BatchError
	if !errors.As(err, &be) || be.Reason != RejectSource {
		t.Fatalf("err %v, want a source reject", err)
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(encode(0, frame{idOn(1, 5), []byte("ab\x00")}, frame{idOn(1, 6), []byte("cd\x00")}))
	f.Add(encode(3, frame{idOn(1, 1), []byte("\x00")}))
	f.Add(encode(2, frame{idOn(1, 9), append(bytes.Repeat([]byte{'m'}, 16), 0)}))
	f.Add(encode(0, frame{idOn(2, 5), []byte("x\x00")}))
	f.Add(encode(0, frame{idOn(1, 5), []byte("a\x00\x40\x00\x00\x01b\x00")}))
	f.Add([]byte("RRB\x01\x00\x00\x00\x00\x00\x00\x00\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeBatch(b, testLimits)
		if err != nil {
			var be *BatchError
			if !errors.As(err, &be) || be.Reason >= NumRejects {
				t.Fatalf("error %v is not a BatchError with a known reason", err)
			}
			return
		}
		var bt Batch
		bt.Reset(d.Source)
		n := 0
		d.Each(func(dest uint32, fr []byte) {
			n++
			if testLimits.Scheme.NodeOf(dest) != testLimits.Scheme.Self || dest == 0 {
				t.Fatalf("accepted a frame for %08x", dest)
			}
			if len(fr) == 0 || fr[len(fr)-1] != 0 || bytes.IndexByte(fr, 0) != len(fr)-1 {
				t.Fatalf("accepted frame %q is not one NUL-terminated payload", fr)
			}
			if len(fr)-1 > testLimits.MaxFrame {
				t.Fatalf("accepted a %d-byte payload", len(fr)-1)
			}
			bt.Add(dest, fr)
		})
		if n != d.Frames {
			t.Fatalf("Each gave %d frames, Decoded says %d", n, d.Frames)
		}
		if !bytes.Equal(bt.Bytes(), b) {
			t.Fatalf("accepted batch re-encodes differently:\n in % x\nout % x", b, bt.Bytes())
		}
	})
}
