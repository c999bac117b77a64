// Package frame is the wire framing of the ringrelay protocol
// (docs/protocol.md), written once for every program in this module that
// speaks it:
//
//   - client to relay: [destination ID, 4 bytes big-endian][payload][0x00];
//     Append builds such a frame, and the relay's parser (relay.Parser)
//     finds its end with Index;
//   - relay to client: the connection's 4-byte ID once (ReadID), then
//     [payload][0x00] per frame; Splitter cuts that delivered stream into
//     payloads for relay/client, the test peers and the load generator.
//
// Index is the one scan for a terminating 0x00 that both directions use.
package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
)

const (
	// HeaderLen is the size of the destination ID in front of every frame
	// a client sends, and of the ID the relay announces.
	HeaderLen = 4
	// End is the byte that terminates every frame, in both directions.
	End byte = 0x00
	// MaxPayload is the longest payload a relay can be configured to
	// carry: the parser counts in 31 bits. A reader that does not know the
	// relay's max-frame uses it as its limit.
	MaxPayload = 1<<31 - 2
)

// ErrZeroID reports a relay that announced ID 0, which the protocol
// reserves.
var ErrZeroID = errors.New("relay assigned ID 0, which the protocol reserves")

// Index returns the position of the first End byte among the first room
// bytes of b, or -1 if there is none. Looking no further than room bytes is
// what lets a reader that enforces a frame limit stop scanning where a
// terminator would come too late anyway.
func Index(b []byte, room int) int {
	return bytes.IndexByte(b[:min(len(b), room)], End)
}

// Append appends to dst the frame that carries payload to dest. It does not
// check payload for End bytes: a caller that must not send one checks first.
func Append(dst []byte, dest uint32, payload []byte) []byte {
	dst = AppendHeader(dst, dest)
	dst = append(dst, payload...)
	return append(dst, End)
}

// AppendHeader appends the destination header of a frame to dst, for a
// caller that writes the payload in place after it and then End (the load
// generator, which builds payloads straight into its output buffer).
func AppendHeader(dst []byte, dest uint32) []byte {
	return binary.BigEndian.AppendUint32(dst, dest)
}

// Overhead is what framing adds to a payload on the way to the relay: the
// header and End.
const Overhead = HeaderLen + 1

// ReadID reads the 4-byte ID a relay sends first on every connection. It
// reads exactly those 4 bytes from r, so frames that follow the ID stay in
// r for whatever reads them next. A stream that ends inside the ID gives
// io.ErrUnexpectedEOF.
func ReadID(r io.Reader) (uint32, error) {
	var b [HeaderLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, err
	}
	id := binary.BigEndian.Uint32(b[:])
	if id == 0 {
		return 0, ErrZeroID
	}
	return id, nil
}
