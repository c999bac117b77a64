package tlsrecord

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/testpki"
)

// testDeadline bounds every socket test: generous, because the machine
// is shared; the tests wait on events, never on short windows.
const testDeadline = 60 * time.Second

var serverPKI struct {
	sync.Once
	ca   *testpki.CA
	leaf testpki.Leaf
	err  error
}

// serverCert is a certificate for localhost and a pool holding the CA
// that signed it.
func serverCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	p := &serverPKI
	p.Do(func() {
		if p.ca, p.err = testpki.NewCA("tlsrecord test CA"); p.err == nil {
			p.leaf, p.err = p.ca.Server("localhost")
		}
	})
	if p.err != nil {
		panic(p.err) // t may be nil: serveOne runs off the test goroutine
	}
	return p.leaf.TLS, p.ca.Pool
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

// serveInBackground runs serveOne on a loopback listener of its own, under
// one overall deadline (ctx, which the client side uses too). served waits
// for the handshake and fails the test if it failed; the listener and the
// connection close at the end of the test.
func serveInBackground(t *testing.T) (ctx context.Context, addr string, served func() *handshaken) {
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	t.Cleanup(cancel)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	type result struct {
		h   *handshaken
		err error
	}
	done := make(chan result, 1)
	go func() {
		h, err := serveOne(ctx, ln)
		done <- result{h, err}
	}()
	return ctx, ln.Addr().String(), func() *handshaken {
		t.Helper()
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Cleanup(func() { r.h.raw.Close() })
		return r.h
	}
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
