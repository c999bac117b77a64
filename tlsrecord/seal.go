package tlsrecord

import (
	"encoding/binary"
	"errors"
	"slices"
	"strconv"
)

// Seal appends to dst the records that carry plaintext as application
// data, packed into as few records as possible (each at most MaxPlaintext
// bytes), and returns the extended dst. If the peer asked for a KeyUpdate
// (Pending), the answer goes first and later records use the next key.
// Seal(dst, nil) emits only such a pending KeyUpdate, or nothing.
//
// Each record is sealed in place in dst: plaintext is copied once into
// dst and the AEAD encrypts it there. To avoid even that copy, write the
// plaintext straight into the output buffer with BeginRecord and
// SealRecord. Seal grows dst at most once (by SealedLen) and allocates
// nothing when dst has room.
func (c *Conn) Seal(dst, plaintext []byte) ([]byte, error) {
	dst = slices.Grow(dst, SealedLen(len(plaintext)))
	dst, err := c.flushKeyUpdate(dst)
	if err != nil {
		return dst, err
	}
	for len(plaintext) > 0 {
		k := min(len(plaintext), MaxPlaintext)
		dst, err = c.sealContent(dst, typeApplicationData, plaintext[:k])
		if err != nil {
			return dst, err
		}
		plaintext = plaintext[k:]
	}
	return dst, nil
}

// BeginRecord starts an application-data record at the end of dst for a
// caller that writes its plaintext directly into the output buffer: it
// emits a pending KeyUpdate first, reserves the record header, and
// returns the extended dst and the record's start offset. The caller then
// appends at most MaxPlaintext bytes of plaintext to dst and calls
// SealRecord with that offset, which encrypts them in place.
func (c *Conn) BeginRecord(dst []byte) ([]byte, int, error) {
	dst, err := c.flushKeyUpdate(dst)
	if err != nil {
		return dst, 0, err
	}
	start := len(dst)
	return append(dst, 0, 0, 0, 0, 0), start, nil
}

// SealRecord encrypts, in place, the record begun at start by
// BeginRecord: buf[start+5:] is its plaintext. It returns buf extended by
// the content type byte and the tag, growing it if it lacks the room.
func (c *Conn) SealRecord(buf []byte, start int) ([]byte, error) {
	return c.sealInPlace(buf, start, typeApplicationData)
}

// SealAlert appends a record carrying alert a: close_notify and
// user_canceled as warnings, every other alert as fatal. It does not emit
// a pending KeyUpdate first: the peer still reads with the current key,
// and no application data follows an alert.
func (c *Conn) SealAlert(dst []byte, a Alert) ([]byte, error) {
	level := byte(2) // fatal
	if a == AlertCloseNotify || a == AlertUserCanceled {
		level = 1 // warning
	}
	content := [2]byte{level, byte(a)}
	return c.sealContent(dst, typeAlert, content[:])
}

// SealKeyUpdate appends a KeyUpdate record and moves the write side to the
// next secret (RFC 8446 §4.6.3); with requestPeer the peer is asked to
// update its own write key too. Owners use it to rekey long-lived
// connections; it also answers a pending request from the peer.
func (c *Conn) SealKeyUpdate(dst []byte, requestPeer bool) ([]byte, error) {
	var req byte
	if requestPeer {
		req = 1
	}
	msg := [5]byte{msgKeyUpdate, 0, 0, 1, req}
	dst, err := c.sealContent(dst, typeHandshake, msg[:])
	if err != nil {
		return dst, err
	}
	if err := c.out.update(c.suite); err != nil {
		return dst, err
	}
	c.answerKeyUpdate = false
	return dst, nil
}

func (c *Conn) flushKeyUpdate(dst []byte) ([]byte, error) {
	if !c.answerKeyUpdate {
		return dst, nil
	}
	return c.SealKeyUpdate(dst, false)
}

// sealContent appends one record of type typ carrying content.
func (c *Conn) sealContent(dst []byte, typ byte, content []byte) ([]byte, error) {
	start := len(dst)
	dst = slices.Grow(dst, headerLen+len(content)+1+tagLen)
	dst = append(dst, 0, 0, 0, 0, 0)
	dst = append(dst, content...)
	return c.sealInPlace(dst, start, typ)
}

var errSeqExhausted = errors.New("tlsrecord: write sequence number exhausted")

// sealInPlace turns buf[start:] (a reserved header and the content) into
// one protected record.
func (c *Conn) sealInPlace(buf []byte, start int, typ byte) ([]byte, error) {
	if start < 0 || len(buf)-start < headerLen {
		return buf, errors.New("tlsrecord: SealRecord: start " + strconv.Itoa(start) + " leaves no record header in a buffer of " + strconv.Itoa(len(buf)))
	}
	contentLen := len(buf) - start - headerLen
	if contentLen > MaxPlaintext {
		return buf, errors.New("tlsrecord: SealRecord: " + strconv.Itoa(contentLen) + " bytes of plaintext exceed one record (2^14)")
	}
	aead, err := c.out.cipher(c.suite)
	if err != nil {
		return buf, err
	}
	nonce, ok := c.out.nextNonce()
	if !ok {
		return buf, errSeqExhausted
	}
	// The tag must fit in place, or the AEAD would seal into a new array.
	buf = slices.Grow(buf, 1+tagLen)
	buf = append(buf, typ)
	h := &c.out.hdr
	h[0] = typeApplicationData
	binary.BigEndian.PutUint16(h[1:3], legacyVersion)
	binary.BigEndian.PutUint16(h[3:5], uint16(contentLen+1+tagLen))
	copy(buf[start:], h[:])
	inner := buf[start+headerLen:]
	sealed := aead.Seal(inner[:0], nonce, inner, h[:])
	return buf[:start+headerLen+len(sealed)], nil
}

func itoa(n int) string { return strconv.Itoa(n) }

func hex16(v uint16) string { return "0x" + strconv.FormatUint(uint64(v)|0x10000, 16)[1:] }
