package tlsrecord

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"
)

// testDeadline bounds every socket test: generous, because the machine
// is shared; the tests wait on events, never on short windows.
const testDeadline = 60 * time.Second

var (
	certOnce sync.Once
	testCert tls.Certificate
	testPool *x509.CertPool
)

// serverCert is a self-signed ECDSA P-256 certificate for "tlsrecord.test".
func serverCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "tlsrecord.test"},
			DNSNames:     []string{"tlsrecord.test"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			IsCA:         true, BasicConstraintsValid: true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		leaf, _ := x509.ParseCertificate(der)
		testCert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
		testPool = x509.NewCertPool()
		testPool.AddCert(leaf)
	})
	return testCert, testPool
}

// recordBoundedConn never returns bytes past the end of the TLS record
// being read, so crypto/tls cannot pull the client's first application
// records into its own buffer while reading the client's Finished.
// (Test-only; the handshake side has its own.)
type recordBoundedConn struct {
	net.Conn
	hdr    [5]byte
	hdrOff int // bytes of hdr not yet returned start here; 5 = none
	left   int // body bytes of the current record not yet read
}

func (c *recordBoundedConn) Read(p []byte) (int, error) {
	if c.hdrOff < len(c.hdr) {
		n := copy(p, c.hdr[c.hdrOff:])
		c.hdrOff += n
		return n, nil
	}
	if c.left == 0 {
		if _, err := io.ReadFull(c.Conn, c.hdr[:]); err != nil {
			return 0, err
		}
		c.left = int(binary.BigEndian.Uint16(c.hdr[3:]))
		n := copy(p, c.hdr[:])
		c.hdrOff = n
		return n, nil
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.Conn.Read(p)
	c.left -= n
	return n, err
}

// handshaken is the server side of a connection whose handshake
// crypto/tls did: the raw socket, with every byte after the client's
// Finished still unread, and the record layer made from the key log.
type handshaken struct {
	raw     net.Conn
	rec     *Conn
	secrets map[string][]byte
	suite   uint16
}

// serveOne accepts one connection on ln and runs a crypto/tls server
// handshake on it with tickets off, then builds the record layer from
// the key log lines crypto/tls wrote.
func serveOne(ctx context.Context, ln net.Listener) (*handshaken, error) {
	raw, err := ln.Accept()
	if err != nil {
		return nil, fmt.Errorf("accept: %w", err)
	}
	raw.SetDeadline(time.Now().Add(testDeadline))
	cert, _ := serverCert(nil)
	var keyLog bytes.Buffer
	tc := tls.Server(&recordBoundedConn{Conn: raw, hdrOff: 5}, &tls.Config{
		Certificates:           []tls.Certificate{cert},
		MinVersion:             tls.VersionTLS13,
		SessionTicketsDisabled: true, // nothing may be sent with the application keys
		KeyLogWriter:           &keyLog,
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("server handshake: %w", err)
	}
	h := &handshaken{raw: raw, secrets: map[string][]byte{}, suite: tc.ConnectionState().CipherSuite}
	for _, line := range bytes.SplitAfter(keyLog.Bytes(), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		kl, err := ParseKeyLogLine(line)
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("key log from crypto/tls: %w", err)
		}
		h.secrets[kl.Label] = kl.Secret
	}
	h.rec, err = NewServer(h.suite, h.secrets[LabelClientTraffic], h.secrets[LabelServerTraffic])
	if err != nil {
		raw.Close()
		return nil, err
	}
	return h, nil
}

// reader accumulates socket bytes and opens them, keeping the partial
// tail, the way an event loop will.
type reader struct {
	raw   net.Conn
	rec   *Conn
	buf   []byte
	plain []byte
}

// readUntil reads and opens until n bytes of plaintext have arrived, or
// the peer closes, or an error.
func (r *reader) readUntil(n int) error {
	chunk := make([]byte, 4096) // small reads: records span reads
	for len(r.plain) < n {
		m, err := r.raw.Read(chunk)
		r.buf = append(r.buf, chunk[:m]...)
		var used int
		var oerr error
		r.plain, used, oerr = r.rec.Open(r.plain, r.buf)
		r.buf = r.buf[:copy(r.buf, r.buf[used:])]
		if oerr != nil {
			return oerr
		}
		if err != nil {
			return fmt.Errorf("read after %d plaintext bytes: %w", len(r.plain), err)
		}
	}
	return nil
}
