package tlsrecord

import (
	"encoding/binary"
)

// Open decrypts every complete record at the front of in and appends the
// application data they carry to dst. It returns the extended dst and how
// many bytes of in it consumed; the rest (the start of a record still in
// flight) must be kept by the caller and passed again, first, with the
// bytes that follow.
//
// Records carrying alerts or post-handshake messages are handled here and
// add nothing to dst: close_notify returns ErrPeerClosed (a clean end; in
// is then consumed whole, as every later byte must be ignored); a
// KeyUpdate moves the read side to the next secret and, when the peer asks
// for one back, makes Pending report true. Any other failure is an
// *AlertError naming the alert to send; the connection is then over, and
// only SealAlert may still be used. On error dst still holds the plaintext
// of the records before the failing one.
//
// Each record is decrypted straight into dst's spare capacity: dst needs
// room for a record's body less its 16-byte tag, so a dst with len(in)
// bytes to spare never grows. Open allocates nothing beyond that, except
// on failure, on KeyUpdate, and to rebuild an AEAD after Shrink.
func (c *Conn) Open(dst, in []byte) (out []byte, n int, err error) {
	if c.peerClosed {
		return dst, len(in), ErrPeerClosed
	}
	for len(in)-n >= headerLen {
		hdr := in[n : n+headerLen]
		if err := checkHeader(hdr); err != nil {
			return dst, n, err
		}
		bodyLen := int(binary.BigEndian.Uint16(hdr[3:]))
		if len(in)-n < headerLen+bodyLen {
			break // partial record: wait for the rest
		}
		body := in[n+headerLen : n+headerLen+bodyLen]
		var closed bool
		dst, closed, err = c.openRecord(dst, hdr, body)
		if err != nil {
			return dst, n, err
		}
		n += headerLen + bodyLen
		if closed {
			return dst, len(in), ErrPeerClosed
		}
	}
	return dst, n, nil
}

// checkHeader rejects what a record header alone proves wrong, so a
// broken peer is refused before its whole record arrives.
func checkHeader(hdr []byte) error {
	switch hdr[0] {
	case typeApplicationData:
	case typeChangeCipherSpec:
		// A compatibility change_cipher_spec may only arrive before the
		// peer's Finished (RFC 8446 §5); this layer starts after it.
		return fail(AlertUnexpectedMessage, "change_cipher_spec record after the handshake")
	default:
		return fail(AlertUnexpectedMessage, "unprotected record of type "+itoa(int(hdr[0]))+" after the handshake")
	}
	// The version is authenticated as part of the AAD, so a wrong one
	// would fail the tag anyway; refusing it here names the real fault.
	if binary.BigEndian.Uint16(hdr[1:3]) != legacyVersion {
		return fail(AlertDecodeError, "record version "+hex16(binary.BigEndian.Uint16(hdr[1:3]))+", want 0x0303")
	}
	bodyLen := int(binary.BigEndian.Uint16(hdr[3:]))
	if bodyLen > MaxCiphertext {
		return fail(AlertRecordOverflow, "encrypted record of "+itoa(bodyLen)+" bytes exceeds 2^14+256")
	}
	if bodyLen < 1+tagLen {
		return fail(AlertDecodeError, "encrypted record of "+itoa(bodyLen)+" bytes is shorter than a content type and a tag")
	}
	return nil
}

// openRecord decrypts one record into dst's spare capacity and acts on
// its inner content type.
func (c *Conn) openRecord(dst, hdr, body []byte) (out []byte, closed bool, err error) {
	nonce, ok := c.in.nextNonce()
	if !ok {
		return dst, false, fail(AlertInternalError, "read sequence number exhausted")
	}
	aead, err := c.in.cipher(c.suite)
	if err != nil {
		return dst, false, &AlertError{Alert: AlertInternalError, Reason: err.Error()}
	}
	start := len(dst)
	out, err = aead.Open(dst, nonce, body, hdr)
	if err != nil {
		return dst, false, fail(AlertBadRecordMAC, "record failed authentication")
	}
	inner := out[start:]
	if len(inner) > maxInner {
		return dst, false, fail(AlertRecordOverflow, "decrypted record of "+itoa(len(inner))+" bytes exceeds 2^14+1")
	}
	// Strip the zero padding; the last non-zero byte is the real type
	// (RFC 8446 §5.4).
	i := len(inner) - 1
	for i >= 0 && inner[i] == 0 {
		i--
	}
	if i < 0 {
		return dst, false, fail(AlertUnexpectedMessage, "record with no content type (all padding)")
	}
	typ, content := inner[i], inner[:i]
	switch typ {
	case typeApplicationData:
		return out[:start+i], false, nil
	case typeAlert:
		closed, err := c.handleAlert(content)
		return dst, closed, err
	case typeHandshake:
		return dst, false, c.handleHandshake(content)
	default:
		return dst, false, fail(AlertUnexpectedMessage, "protected record of content type "+itoa(int(typ)))
	}
}

// handleAlert reports the peer's alert: close_notify ends its sending
// side; every other alert is fatal in TLS 1.3 (RFC 8446 §6.2), including
// user_canceled, which must be followed by close_notify anyway.
func (c *Conn) handleAlert(content []byte) (closed bool, err error) {
	if len(content) != 2 {
		return false, fail(AlertDecodeError, "alert record of "+itoa(len(content))+" bytes, want 2")
	}
	if Alert(content[1]) == AlertCloseNotify {
		c.peerClosed = true
		return true, nil
	}
	return false, &AlertError{Alert: Alert(content[1]), Remote: true}
}

// handleHandshake processes post-handshake messages. Every message must
// be whole inside this record: fragmented post-handshake messages are
// refused (see doc.go).
func (c *Conn) handleHandshake(content []byte) error {
	if len(content) == 0 {
		return fail(AlertUnexpectedMessage, "empty handshake record")
	}
	for len(content) > 0 {
		if len(content) < 4 {
			return fail(AlertUnexpectedMessage, "post-handshake message fragmented across records (not supported)")
		}
		msgLen := int(content[1])<<16 | int(content[2])<<8 | int(content[3])
		if len(content)-4 < msgLen {
			return fail(AlertUnexpectedMessage, "post-handshake message fragmented across records (not supported)")
		}
		msgType, body := content[0], content[4:4+msgLen]
		content = content[4+msgLen:]
		switch msgType {
		case msgKeyUpdate:
			if len(body) != 1 {
				return fail(AlertDecodeError, "KeyUpdate of "+itoa(len(body))+" bytes, want 1")
			}
			if body[0] > 1 {
				return fail(AlertIllegalParameter, "KeyUpdate request_update "+itoa(int(body[0])))
			}
			// A key change must end its record (RFC 8446 §5.1): what
			// follows in this record was protected with the old key.
			if len(content) != 0 {
				return fail(AlertUnexpectedMessage, "KeyUpdate not at the end of its record")
			}
			if err := c.in.update(c.suite); err != nil {
				return fail(AlertInternalError, "KeyUpdate: "+err.Error())
			}
			if body[0] == 1 {
				c.answerKeyUpdate = true
			}
		case msgNewSessionTicket:
			if !c.client {
				return fail(AlertUnexpectedMessage, "NewSessionTicket from a client")
			}
			// A client with no resumption cache has nothing to do with it.
		default:
			return fail(AlertUnexpectedMessage, "post-handshake message of type "+itoa(int(msgType)))
		}
	}
	return nil
}
