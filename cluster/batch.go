package cluster

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/ringrelay/ringrelay/shard"
)

// A batch is the body of one NATS message on NAME.node.K: many frames for
// node K from one source node.
//
//	offset 0  "RRB"          magic, 3 bytes
//	offset 3  version        1 byte (batchVersion)
//	offset 4  source node    uint16, big-endian
//	offset 6  reserved       uint16, must be 0
//	offset 8  frame count    uint32, big-endian, at least 1
//	offset 12 frames         count times [dest ID uint32][payload, no 0x00][0x00]
//
// Each frame is exactly a relay wire frame (docs/protocol.md), so a batch is a
// header followed by what the senders wrote. Nothing follows the last
// frame.
const (
	// BatchHeader is the size of a batch's header.
	BatchHeader = 12
	// FrameOverhead is what a frame adds to its payload in a batch: the
	// 4-byte destination ID and the trailing NUL.
	FrameOverhead = 5

	batchVersion = 1
)

var batchMagic = [3]byte{'R', 'R', 'B'}

// Reject is why a received batch was dropped whole.
type Reject uint8

// The reasons a batch is rejected. A payload with a NUL inside cannot be
// told from two frames; it shows as a count mismatch or as a frame for
// another node, and the batch is rejected all the same.
const (
	RejectTruncated Reject = iota // shorter than its header, or a frame cut short
	RejectMagic                   // not a batch: wrong magic or reserved bits set
	RejectVersion                 // a batch version this node does not speak
	RejectSource                  // source node out of range, or this node itself
	RejectCount                   // frame count 0, or not the frames that follow
	RejectZeroID                  // a frame for ID 0, which no connection has
	RejectWrongNode               // a frame for an ID that another node owns
	RejectFrameSize               // a payload longer than max-frame
	RejectBatchSize               // the batch is larger than this node accepts
	NumRejects
)

var rejectNames = [NumRejects]string{
	"truncated", "magic", "version", "source", "count",
	"zero_id", "wrong_node", "frame_size", "batch_size",
}

func (r Reject) String() string {
	if r < NumRejects {
		return rejectNames[r]
	}
	return fmt.Sprintf("reject(%d)", uint8(r))
}

// BatchError is a batch's rejection: the reason, and where it was found.
type BatchError struct {
	Reason Reject
	Offset int // byte offset in the batch where decoding stopped
	Detail string
}

func (e *BatchError) Error() string {
	return fmt.Sprintf("batch rejected (%s) at byte %d: %s", e.Reason, e.Offset, e.Detail)
}

func reject(r Reject, off int, format string, args ...any) error {
	return &BatchError{Reason: r, Offset: off, Detail: fmt.Sprintf(format, args...)}
}

// Limits is what a receiving node accepts.
type Limits struct {
	Scheme   shard.Scheme // every frame's ID must belong to Scheme.Self
	MaxFrame int          // largest payload, NUL not counted (the relay's -max-frame)
	MaxBatch int          // largest batch in bytes, header included
}

// Decoded is a batch that passed every check. Its frames alias the bytes
// given to DecodeBatch.
type Decoded struct {
	Source int // the node that sent it
	Frames int // how many frames it holds
	body   []byte
}

// DecodeBatch checks a whole batch before anything is delivered: the
// header, every frame, and that the frames end exactly where the batch
// does. It either returns a Decoded whose every frame is whole and for
// this node, or a *BatchError; never part of a batch.
func DecodeBatch(b []byte, lim Limits) (Decoded, error) {
	if len(b) > lim.MaxBatch {
		return Decoded{}, reject(RejectBatchSize, 0, "%d bytes, limit %d", len(b), lim.MaxBatch)
	}
	if len(b) < BatchHeader {
		return Decoded{}, reject(RejectTruncated, len(b), "%d bytes, header is %d", len(b), BatchHeader)
	}
	if !bytes.Equal(b[:3], batchMagic[:]) || b[6] != 0 || b[7] != 0 {
		return Decoded{}, reject(RejectMagic, 0, "header % x", b[:8])
	}
	if b[3] != batchVersion {
		return Decoded{}, reject(RejectVersion, 3, "version %d, want %d", b[3], batchVersion)
	}
	src := int(binary.BigEndian.Uint16(b[4:]))
	if src >= lim.Scheme.Nodes() || src == lim.Scheme.Self {
		return Decoded{}, reject(RejectSource, 4, "source node %d (this is node %d of %d)", src, lim.Scheme.Self, lim.Scheme.Nodes())
	}
	count := binary.BigEndian.Uint32(b[8:])
	body := b[BatchHeader:]
	if count == 0 || uint64(count) > uint64(len(body)/FrameOverhead) {
		return Decoded{}, reject(RejectCount, 8, "count %d in %d bytes of frames", count, len(body))
	}
	pos := 0
	for i := uint32(0); i < count; i++ {
		if len(body)-pos < FrameOverhead {
			return Decoded{}, reject(RejectTruncated, BatchHeader+pos, "frame %d of %d cut short", i, count)
		}
		dest := binary.BigEndian.Uint32(body[pos:])
		if dest == 0 {
			return Decoded{}, reject(RejectZeroID, BatchHeader+pos, "frame %d", i)
		}
		if n := lim.Scheme.NodeOf(dest); n != lim.Scheme.Self {
			return Decoded{}, reject(RejectWrongNode, BatchHeader+pos, "frame %d for ID %08x of node %d", i, dest, n)
		}
		pay := body[pos+4:]
		limit := min(len(pay), lim.MaxFrame+1)
		end := bytes.IndexByte(pay[:limit], 0)
		if end < 0 {
			if limit == len(pay) {
				return Decoded{}, reject(RejectTruncated, BatchHeader+pos, "frame %d has no NUL", i)
			}
			return Decoded{}, reject(RejectFrameSize, BatchHeader+pos, "frame %d longer than %d bytes", i, lim.MaxFrame)
		}
		pos += 4 + end + 1
	}
	if pos != len(body) {
		return Decoded{}, reject(RejectCount, BatchHeader+pos, "%d bytes after the %d frames counted", len(body)-pos, count)
	}
	return Decoded{Source: src, Frames: int(count), body: body}, nil
}

// Each calls fn for every frame, in order: the destination ID and the
// payload with its trailing NUL (what the destination receives). frame
// aliases the batch.
func (d Decoded) Each(fn func(dest uint32, frame []byte)) {
	b := d.body
	for i := 0; i < d.Frames; i++ {
		dest := binary.BigEndian.Uint32(b)
		end := bytes.IndexByte(b[4:], 0) + 5
		fn(dest, b[4:end:end])
		b = b[end:]
	}
}

// Batch builds one batch. The zero Batch is not ready: call Reset first.
type Batch struct {
	buf []byte
	n   uint32
}

// Reset empties the batch and stamps it with the source node, keeping
// the buffer.
func (bt *Batch) Reset(source int) {
	bt.buf = append(bt.buf[:0], batchMagic[0], batchMagic[1], batchMagic[2], batchVersion)
	bt.buf = binary.BigEndian.AppendUint16(bt.buf, uint16(source))
	bt.buf = append(bt.buf, 0, 0, 0, 0, 0, 0)
	bt.n = 0
}

// Add appends one frame. frame is the payload with its trailing NUL, as
// the loops carry it; the caller has checked it (one NUL, at the end).
func (bt *Batch) Add(dest uint32, frame []byte) {
	bt.buf = binary.BigEndian.AppendUint32(bt.buf, dest)
	bt.buf = append(bt.buf, frame...)
	bt.n++
}

// Len is the batch's size in bytes so far, header included.
func (bt *Batch) Len() int { return len(bt.buf) }

// Count is the number of frames added since Reset.
func (bt *Batch) Count() int { return int(bt.n) }

// Bytes returns the encoded batch. It aliases the Batch's buffer until
// the next Reset or Add.
func (bt *Batch) Bytes() []byte {
	binary.BigEndian.PutUint32(bt.buf[8:], bt.n)
	return bt.buf
}
