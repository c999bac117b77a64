package tlsrecord

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"
)

// Conn is the record-layer state of one TLS 1.3 connection after its
// handshake: one protection state per direction, plus the few flags that
// post-handshake messages leave behind. It does no I/O; the owner feeds
// Open with received bytes and sends what Seal appends.
//
// A Conn is not safe for concurrent use; one event loop owns it.
type Conn struct {
	suite *suite
	in    halfConn // what the peer sends: Open
	out   halfConn // what this side sends: Seal

	client bool // this side is the TLS client (tickets from the peer are fine)

	// peerClosed is set once the peer's close_notify arrived: its sending
	// side has ended cleanly and every later byte is ignored (RFC 8446 §6.1).
	peerClosed bool

	// answerKeyUpdate is set when the peer asked for a KeyUpdate; the next
	// record this side seals is preceded by KeyUpdate(update_not_requested),
	// and several requests before then are answered once (RFC 8446 §4.6.3).
	answerKeyUpdate bool
}

// halfConn is one direction: the current traffic secret (kept for the
// next KeyUpdate), the key and IV derived from it, the AEAD keyed with it
// (nil after Shrink, rebuilt on use) and the record sequence number that
// is xored into the IV (RFC 8446 §5.3).
type halfConn struct {
	aead   cipher.AEAD
	seq    uint64
	iv     [ivLen]byte
	nonce  [ivLen]byte // scratch, kept here so the AEAD call does not make it escape
	hdr    [headerLen]byte
	key    [maxKeyLen]byte
	secret [maxSecretLen]byte
}

// maxKeyLen is the longest AEAD key of the three suites.
const maxKeyLen = 32

// NewServer returns the record layer of the server side of a connection
// whose handshake negotiated suiteID and produced these application
// traffic secrets (CLIENT_TRAFFIC_SECRET_0 and SERVER_TRAFFIC_SECRET_0 in
// the key log). The server opens with the client's secret and seals with
// its own. The secrets are copied.
func NewServer(suiteID uint16, clientSecret, serverSecret []byte) (*Conn, error) {
	return newConn(suiteID, clientSecret, serverSecret, false)
}

// NewClient is NewServer for the client side: it opens with the server's
// secret, seals with the client's, and ignores NewSessionTicket messages.
func NewClient(suiteID uint16, clientSecret, serverSecret []byte) (*Conn, error) {
	return newConn(suiteID, serverSecret, clientSecret, true)
}

func newConn(suiteID uint16, readSecret, writeSecret []byte, client bool) (*Conn, error) {
	s, err := suiteByID(suiteID)
	if err != nil {
		return nil, err
	}
	c := &Conn{suite: s, client: client}
	if err := c.in.setSecret(s, readSecret); err != nil {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	if err := c.out.setSecret(s, writeSecret); err != nil {
		return nil, fmt.Errorf("write secret: %w", err)
	}
	return c, nil
}

// setSecret installs a traffic secret: key and IV from it, sequence 0.
func (h *halfConn) setSecret(s *suite, secret []byte) error {
	if err := s.checkSecret(secret); err != nil {
		return err
	}
	key := ExpandLabel(s.hash, secret, "key", nil, s.keyLen)
	iv := ExpandLabel(s.hash, secret, "iv", nil, ivLen)
	aead, err := s.aead(key)
	if err != nil {
		clear(key)
		return fmt.Errorf("tlsrecord: AEAD for %#04x: %w", s.id, err)
	}
	h.aead = aead
	h.seq = 0
	clear(h.key[:])
	copy(h.key[:], key)
	clear(key)
	copy(h.iv[:], iv)
	clear(h.secret[:])
	copy(h.secret[:], secret)
	return nil
}

// cipher returns the AEAD, rebuilding it from the stored key after Shrink.
func (h *halfConn) cipher(s *suite) (cipher.AEAD, error) {
	if h.aead != nil {
		return h.aead, nil
	}
	aead, err := s.aead(h.key[:s.keyLen])
	if err != nil {
		return nil, fmt.Errorf("tlsrecord: rebuilding AEAD for %#04x: %w", s.id, err)
	}
	h.aead = aead
	return aead, nil
}

// update moves this direction to the next traffic secret (RFC 8446 §7.2).
func (h *halfConn) update(s *suite) error {
	next := ExpandLabel(s.hash, h.secret[:s.hashLen], "traffic upd", nil, s.hashLen)
	err := h.setSecret(s, next)
	clear(next)
	return err
}

// nextNonce returns the nonce of the next record (IV xor sequence number,
// RFC 8446 §5.3) and advances the sequence number. A sequence number must
// never wrap (§5.3); 2^64 records is out of reach, but say so rather than
// reuse a nonce.
func (h *halfConn) nextNonce() ([]byte, bool) {
	if h.seq == ^uint64(0) {
		return nil, false
	}
	h.nonce = h.iv
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], h.seq)
	for i := range seq {
		h.nonce[ivLen-8+i] ^= seq[i]
	}
	h.seq++
	return h.nonce[:], true
}

// Shrink drops both AEADs, the bulk of an AES-GCM Conn's memory (see
// TestConnMemory), keeping the keys: the next Open or Seal rebuilds the
// one it needs (see BenchmarkRebuild for the cost). It is meant for
// connections that have gone idle, not for every pause between batches.
func (c *Conn) Shrink() {
	c.in.aead = nil
	c.out.aead = nil
}

// Suite returns the cipher suite ID the Conn was made with.
func (c *Conn) Suite() uint16 { return c.suite.id }

// PeerClosed reports whether the peer's close_notify has been read.
func (c *Conn) PeerClosed() bool { return c.peerClosed }

// Pending reports whether this side owes the peer a record of its own (a
// KeyUpdate answering the peer's request). The next Seal, SealAlert or
// BeginRecord emits it first; an owner with no data to send calls
// Seal(dst, nil) to flush it.
func (c *Conn) Pending() bool { return c.answerKeyUpdate }
