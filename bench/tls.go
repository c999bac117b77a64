package bench

// TLS in the load generator. A TLS column's connections are dialed with
// crypto/tls for the handshake only; the generator then keeps the raw
// socket, as for plaintext, and runs the record layer itself with
// tlsrecord (the same code the server's loops run, client side): reads
// are opened into a plaintext buffer the splitter reads from, and each
// write seals what the role queued into as few records as possible. The
// generator pays for the crypto on its own CPUs, reported beside the
// server's as always.

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/ringrelay/ringrelay/tlsrecord"
	"golang.org/x/sys/unix"
)

// handshake runs a TLS 1.3 client handshake on c and reads the ID the
// server sends as its first record, leaving the socket with nothing
// unread: the generator's record layer starts at the next record.
func handshake(ctx context.Context, c *net.TCPConn, cfg *tls.Config) (*tlsrecord.Conn, uint32, error) {
	var keys bytes.Buffer
	cfg = cfg.Clone()
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS13, tls.VersionTLS13
	cfg.KeyLogWriter = &keys
	cfg.ClientSessionCache = nil
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, 0, fmt.Errorf("TLS handshake: %w", err)
	}
	var cs, ss []byte
	for _, line := range strings.Split(strings.TrimSpace(keys.String()), "\n") {
		kl, err := tlsrecord.ParseKeyLogLine([]byte(line))
		if err != nil {
			return nil, 0, err
		}
		switch kl.Label {
		case tlsrecord.LabelClientTraffic:
			cs = kl.Secret
		case tlsrecord.LabelServerTraffic:
			ss = kl.Secret
		}
	}
	rec, err := tlsrecord.NewClient(tc.ConnectionState().CipherSuite, cs, ss)
	if err != nil {
		return nil, 0, err
	}
	// The tls.Conn is dropped, not closed (that would send close_notify);
	// it read nothing past the server's Finished, and the server sends no
	// session tickets.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, 0, 4096)
	var plain []byte
	for len(plain) < 4 {
		n, err := c.Read(buf[len(buf):cap(buf)])
		if err != nil {
			return nil, 0, fmt.Errorf("read ID: %w", err)
		}
		buf = buf[:len(buf)+n]
		var k int
		if plain, k, err = rec.Open(plain, buf); err != nil {
			return nil, 0, fmt.Errorf("read ID: %w", err)
		}
		buf = buf[:copy(buf, buf[k:])]
	}
	if len(plain) != 4 || len(buf) != 0 {
		return nil, 0, fmt.Errorf("read ID: %d bytes of plaintext and %d of a record came with it, want the 4-byte ID alone", len(plain), len(buf))
	}
	return rec, uint32(plain[0])<<24 | uint32(plain[1])<<16 | uint32(plain[2])<<8 | uint32(plain[3]), nil
}

// tlsReader is fdReader's record layer: ciphertext read from the socket
// waits in cipher until its record is whole; plaintext waits in plain
// until the splitter takes it.
type tlsReader struct {
	rec      *tlsrecord.Conn
	cipher   []byte
	plain    []byte
	plainOff int
}

func newTLSReader(rec *tlsrecord.Conn) *tlsReader {
	return &tlsReader{
		rec:    rec,
		cipher: make([]byte, 0, readChunk+tlsrecord.MaxRecord),
		plain:  make([]byte, 0, readChunk+tlsrecord.MaxRecord),
	}
}

// read fills p with plaintext: what is left from the last read, or one
// read(2) of fd opened into records. EAGAIN when no record is whole yet.
func (r *tlsReader) read(fd int, p []byte) (int, error) {
	if r.plainOff < len(r.plain) {
		n := copy(p, r.plain[r.plainOff:])
		r.plainOff += n
		return n, nil
	}
	n, err := unix.Read(fd, r.cipher[len(r.cipher):cap(r.cipher)])
	if n <= 0 {
		if err == nil {
			err = io.EOF
		}
		return 0, err
	}
	r.cipher = r.cipher[:len(r.cipher)+n]
	plain, k, err := r.rec.Open(r.plain[:0], r.cipher)
	r.cipher = r.cipher[:copy(r.cipher, r.cipher[k:])]
	if err != nil {
		return 0, fmt.Errorf("TLS: %w", err)
	}
	r.plain, r.plainOff = plain, 0
	if len(plain) == 0 {
		return 0, unix.EAGAIN
	}
	m := copy(p, plain)
	r.plainOff = m
	return m, nil
}

// tlsWriter seals a connection's pending plaintext into wire and writes
// that; the plaintext counts as sent once its records are all written.
type tlsWriter struct {
	rec    *tlsrecord.Conn
	wire   []byte
	wsent  int
	sealed int // plaintext bytes wire carries
}

// write seals out (if nothing sealed is waiting) and does one write(2);
// it returns how many plaintext bytes are now fully sent.
func (t *tlsWriter) write(fd int, out []byte) (int, error) {
	if t.wsent == len(t.wire) {
		var err error
		if t.wire, err = t.rec.Seal(t.wire[:0], out); err != nil {
			return 0, err
		}
		t.wsent, t.sealed = 0, len(out)
	}
	n, err := unix.Write(fd, t.wire[t.wsent:])
	if n > 0 {
		t.wsent += n
	}
	if t.wsent < len(t.wire) {
		return 0, err
	}
	return t.sealed, err
}

// write writes b to a peer still on the Go runtime's poller: sealed when
// the peer speaks TLS.
func (p *peer) write(b []byte) error {
	if p.rec != nil {
		var err error
		if b, err = p.rec.Seal(nil, b); err != nil {
			return err
		}
	}
	_, err := p.conn.Write(b)
	return err
}

// readFull fills b with what the server sends a peer still on the Go
// runtime's poller, opening records when it speaks TLS.
func (p *peer) readFull(b []byte) error {
	if p.rec == nil {
		_, err := io.ReadFull(p.conn, b)
		return err
	}
	var plain, wire []byte
	chunk := make([]byte, 4096)
	for len(plain) < len(b) {
		n, err := p.conn.Read(chunk)
		if err != nil {
			return err
		}
		wire = append(wire, chunk[:n]...)
		var k int
		if plain, k, err = p.rec.Open(plain, wire); err != nil {
			return err
		}
		wire = wire[k:]
	}
	if len(plain) != len(b) {
		return fmt.Errorf("%d bytes arrived, want %d", len(plain), len(b))
	}
	copy(b, plain)
	return nil
}
