package tlsrecord

// Record-format constants of RFC 8446 §5.
const (
	// MaxPlaintext is the most content one record may carry (2^14).
	MaxPlaintext = 1 << 14
	// MaxCiphertext is the longest encrypted record body a peer may send
	// (2^14 + 256); anything longer is a record_overflow.
	MaxCiphertext = MaxPlaintext + 256
	// MaxRecord is the longest record on the wire, header included: the
	// most a receive buffer must hold to see one whole record.
	MaxRecord = headerLen + MaxCiphertext
	// Overhead is what sealing adds to content in one record: the header,
	// the inner content type byte and the 16-byte AEAD tag of all three
	// suites.
	Overhead = headerLen + 1 + tagLen

	headerLen = 5
	tagLen    = 16
	// maxInner is the longest TLSInnerPlaintext: content, type, no padding
	// beyond what still fits (RFC 8446 §5.4).
	maxInner = MaxPlaintext + 1
)

// Content types (RFC 8446 §5.1).
const (
	typeChangeCipherSpec = 20
	typeAlert            = 21
	typeHandshake        = 22
	typeApplicationData  = 23
)

// Handshake message types that can follow the handshake (RFC 8446 §4).
const (
	msgNewSessionTicket = 4
	msgKeyUpdate        = 24
)

// legacyVersion is the record version of every TLS 1.3 record after the
// ClientHello (RFC 8446 §5.1).
const legacyVersion = 0x0303

// SealedLen returns how many bytes Seal appends for n bytes of plaintext
// (not counting a pending KeyUpdate), so the owner can size its buffer.
func SealedLen(n int) int {
	records := (n + MaxPlaintext - 1) / MaxPlaintext
	return n + records*Overhead
}
