package tlshandshake

import (
	"encoding/binary"
	"errors"
	"net"

	"github.com/ringrelay/ringrelay/tlsrecord"
)

// TLS record header (RFC 8446 §5.1): content type, legacy version (2
// bytes), length (2 bytes).
const (
	recordHeaderLen     = 5
	recordTypeHandshake = 22
)

var errNotTLS = errors.New("first record is not a TLS handshake record")

// handshakeConn is the net.Conn crypto/tls runs the server handshake on.
//
// Read never returns a byte past the end of the TLS record being read.
// crypto/tls reads into a buffer as much as the socket holds; a client
// that writes its first application data right behind its Finished
// (the same flight, often the same segment) would lose those bytes inside
// tls.Conn, where the loop that takes the socket over cannot reach them.
// Reading a header and then exactly its body keeps everything after the
// handshake's last record in the kernel's receive queue. It costs a read
// per header and per body: a handful per handshake.
//
// It also watches what only the first bytes tell: whether the peer speaks
// TLS at all (notTLS), and, through Pool's GetConfigForClient, whether its
// ClientHello offered TLS 1.3. The key log lines crypto/tls writes for
// this connection go to keys.
type handshakeConn struct {
	net.Conn

	hdr   [recordHeaderLen]byte
	hdrN  int // header bytes read of the current record
	body  int // body bytes of the current record not yet read
	first bool

	notTLS    bool
	helloSeen bool
	offered13 bool

	keys keyLog
}

func newHandshakeConn(c net.Conn) *handshakeConn {
	return &handshakeConn{Conn: c, first: true}
}

func (hc *handshakeConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if hc.hdrN == recordHeaderLen && hc.body == 0 {
		hc.hdrN, hc.first = 0, false // the previous record is complete
	}
	if hc.hdrN < recordHeaderLen {
		n, err := hc.Conn.Read(p[:min(len(p), recordHeaderLen-hc.hdrN)])
		copy(hc.hdr[hc.hdrN:], p[:n])
		hc.hdrN += n
		if hc.first && !hc.looksLikeHandshake() {
			hc.notTLS = true
			return 0, errNotTLS
		}
		if hc.hdrN == recordHeaderLen {
			hc.body = int(binary.BigEndian.Uint16(hc.hdr[3:]))
		}
		return n, err
	}
	n, err := hc.Conn.Read(p[:min(len(p), hc.body)])
	hc.body -= n
	return n, err
}

// looksLikeHandshake checks the header bytes of the first record read so
// far: a ClientHello comes in a handshake record whose legacy version
// starts with 3 (SSL 3.0 and every TLS).
func (hc *handshakeConn) looksLikeHandshake() bool {
	return (hc.hdrN < 1 || hc.hdr[0] == recordTypeHandshake) && (hc.hdrN < 2 || hc.hdr[1] == 3)
}

// keyLog receives crypto/tls's key log lines for one connection and keeps
// the two traffic secrets. crypto/tls writes each line with one Write.
type keyLog struct {
	client, server []byte
	random         *[32]byte
	err            error
}

func (k *keyLog) Write(line []byte) (int, error) {
	kl, err := tlsrecord.ParseKeyLogLine(line)
	if err != nil {
		k.err = err
		return len(line), nil // the handshake itself is not at fault
	}
	switch kl.Label {
	case tlsrecord.LabelClientTraffic:
		k.client = kl.Secret
	case tlsrecord.LabelServerTraffic:
		k.server = kl.Secret
	default:
		return len(line), nil
	}
	if k.random != nil && *k.random != kl.ClientRandom {
		k.err = errors.New("key log lines for two client randoms on one connection")
	}
	k.random = &kl.ClientRandom
	return len(line), nil
}
