package tlshandshake

import (
	"crypto/tls"
	"errors"
	"io"
	"os"
	"strings"
	"syscall"
)

// Result says how a handshake ended. Every handshake counts under exactly
// one Result (Snapshot.Handshakes).
type Result uint8

const (
	// OK: the handshake finished; the connection went to Config.Deliver.
	OK Result = iota
	// NotTLS: the first bytes were not a TLS handshake record (a
	// plaintext client on the TLS port, or garbage). Closed without an
	// alert: the peer does not speak TLS.
	NotTLS
	// OldVersion: the ClientHello offered no TLS 1.3. crypto/tls answers
	// with a protocol_version alert.
	OldVersion
	// NoClientCert: client certificates are required and the client sent
	// none (alert certificate_required).
	NoClientCert
	// BadClientCert: the client's certificate did not verify against the
	// client CA pool (alert unknown_ca or bad_certificate).
	BadClientCert
	// Timeout: the handshake did not finish within Config.Timeout (a
	// client that connects and says nothing, or a slow one).
	Timeout
	// PeerClosed: the client hung up before finishing (a TCP health
	// check, a client that gave up).
	PeerClosed
	// Other: any other failure (a malformed message, no common cipher
	// or group, the pool shutting down).
	Other

	NumResults
)

var resultNames = [NumResults]string{
	OK:            "ok",
	NotTLS:        "not_tls",
	OldVersion:    "old_version",
	NoClientCert:  "no_client_cert",
	BadClientCert: "bad_client_cert",
	Timeout:       "timeout",
	PeerClosed:    "peer_closed",
	Other:         "other",
}

// String is the result's metric label.
func (r Result) String() string {
	if r < NumResults {
		return resultNames[r]
	}
	return "unknown"
}

// errNoClientCertText is the text crypto/tls gives its error when a
// required client certificate is missing; it exports no type or value
// for it. TestMutualTLS pins it: if a Go release changes the text, that
// test fails instead of the count moving silently to Other.
const errNoClientCertText = "client didn't provide a certificate"

// classify names why a handshake on hc failed with err. What the package
// saw itself (the first record header, the ClientHello's versions) comes
// first; crypto/tls's errors only decide the rest.
func classify(hc *handshakeConn, err error, mutual bool) Result {
	var verr *tls.CertificateVerificationError
	switch {
	case hc.notTLS:
		return NotTLS
	case hc.helloSeen && !hc.offered13:
		return OldVersion
	case errors.Is(err, os.ErrDeadlineExceeded):
		return Timeout
	case errors.As(err, &verr):
		return BadClientCert
	case mutual && strings.Contains(err.Error(), errNoClientCertText):
		return NoClientCert
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return PeerClosed
	}
	return Other
}
