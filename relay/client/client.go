package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/ringrelay/ringrelay/internal/frame"
)

// ErrNULInPayload is returned by Send for a payload holding a 0x00 byte,
// which the protocol cannot carry: the relay would end the frame there.
var ErrNULInPayload = errors.New("client: payload contains a NUL byte")

// readBufSize is the read buffer; it grows, by doubling, only for a payload
// longer than it.
const readBufSize = 64 << 10

// Conn is one client connection to a relay.
type Conn struct {
	nc   net.Conn
	id   uint32
	in   *frame.Splitter
	wbuf []byte // header + payload + NUL of the frame being sent
}

// Dial connects to the relay at addr and reads the ID the relay assigns. The
// context bounds both the connect and the wait for the ID.
func Dial(ctx context.Context, addr string) (*Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return start(ctx, addr, nc)
}

// DialTLS is Dial for a relay serving TLS (ringrelay -tls-cert): it
// connects, completes a TLS 1.3 handshake with cfg (its RootCAs, and
// Certificates where the relay asks for a client certificate), then reads
// the ID, which the relay sends as the first application data. A cfg
// without ServerName gets the host of addr.
func DialTLS(ctx context.Context, addr string, cfg *tls.Config) (*Conn, error) {
	cfg = cfg.Clone()
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	d := tls.Dialer{Config: cfg}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s (TLS): %w", addr, err)
	}
	return start(ctx, addr, nc)
}

// start reads the ID on a connected nc.
func start(ctx context.Context, addr string, nc net.Conn) (*Conn, error) {
	c := &Conn{nc: nc, in: frame.NewSplitter(readBufSize, frame.MaxPayload)}
	if err := c.readID(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("read id from %s: %w", addr, err)
	}
	return c, nil
}

// readID waits for the 4-byte ID. It reads exactly those bytes, so frames
// arriving right behind the ID stay in the socket for Recv.
func (c *Conn) readID(ctx context.Context) error {
	deadline, hasDeadline := ctx.Deadline()
	if hasDeadline {
		c.nc.SetReadDeadline(deadline)
	}
	// A cancellation without a deadline must also unblock the read: a
	// deadline in the past does that.
	stop := context.AfterFunc(ctx, func() { c.nc.SetReadDeadline(time.Unix(1, 0)) })
	id, err := frame.ReadID(c.nc)
	if !stop() {
		// The context ended first, and its AfterFunc may still be
		// moving the deadline: give up on this connection.
		return ctx.Err()
	}
	if err != nil {
		if hasDeadline && errors.Is(err, os.ErrDeadlineExceeded) {
			// The socket deadline fired a hair before the context
			// noticed its own.
			return context.DeadlineExceeded
		}
		return err
	}
	if err := c.nc.SetReadDeadline(time.Time{}); err != nil {
		return err
	}
	c.id = id
	return nil
}

// ID returns the ID the relay assigned to this connection.
func (c *Conn) ID() uint32 { return c.id }

// Send writes one frame carrying payload to dest, in a single write.
func (c *Conn) Send(dest uint32, payload []byte) error {
	if bytes.IndexByte(payload, frame.End) >= 0 {
		return ErrNULInPayload
	}
	c.wbuf = frame.Append(c.wbuf[:0], dest, payload)
	if _, err := c.nc.Write(c.wbuf); err != nil {
		return fmt.Errorf("send to %08x: %w", dest, err)
	}
	return nil
}

// Recv returns the next payload sent to this connection, without its
// terminating NUL. The slice is valid until the next call to Recv. When the
// relay closes the connection between frames Recv returns io.EOF; in the
// middle of a frame, io.ErrUnexpectedEOF.
func (c *Conn) Recv() ([]byte, error) { return c.in.ReadFrame(c.nc) }

// SetDeadline sets the read and write deadlines, as net.Conn does.
func (c *Conn) SetDeadline(t time.Time) error { return c.nc.SetDeadline(t) }

// SetReadDeadline bounds Recv, as net.Conn does.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// SetWriteDeadline bounds Send, as net.Conn does.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }

// NetConn returns the underlying connection, for tests that need to write
// bytes the client would refuse to. Bytes already buffered for Recv are not
// visible through it.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }
