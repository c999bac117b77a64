// Package rawpeer is a protocol client for tests that need what
// relay/client deliberately hides: socket buffer sizes chosen before
// connecting (so the bytes the kernel holds for a peer are known), a
// connection whose ID is read separately from the dial, and a payload
// half-read at a timeout kept for the next read.
package rawpeer

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/frame"
	"golang.org/x/sys/unix"
)

// Bufs are socket buffer sizes to ask for before connecting; 0 keeps the
// kernel's default and its autotuning. Linux doubles the request (the
// extra half is its bookkeeping allowance) and stops autotuning the socket.
type Bufs struct{ Snd, Rcv int }

// Peer is one raw connection to a relay.
type Peer struct {
	NC  net.Conn
	ID  uint32
	in  *frame.Splitter // keeps a payload whose read was cut short
	buf []byte          // frame being written
}

// Connect opens a connection to addr without waiting for the ID; it is
// closed at the end of the test.
func Connect(t testing.TB, addr string, bufs Bufs) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if bufs.Snd > 0 {
				serr = errors.Join(serr, unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, bufs.Snd))
			}
			if bufs.Rcv > 0 {
				serr = errors.Join(serr, unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, bufs.Rcv))
			}
		})
		return errors.Join(err, serr)
	}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// ReadID waits up to within for the 4-byte ID on nc.
func ReadID(nc net.Conn, within time.Duration) (*Peer, error) {
	nc.SetReadDeadline(time.Now().Add(within))
	id, err := frame.ReadID(nc)
	if err != nil {
		return nil, err
	}
	return &Peer{NC: nc, ID: id, in: frame.NewSplitter(64<<10, frame.MaxPayload)}, nil
}

// Dial connects and reads the ID, failing the test if either goes wrong.
func Dial(t testing.TB, addr string, bufs Bufs) *Peer {
	t.Helper()
	p, err := ReadID(Connect(t, addr, bufs), 10*time.Second)
	if err != nil {
		t.Fatalf("read ID from %s: %v", addr, err)
	}
	return p
}

// Send writes one frame to dest in one write.
func (p *Peer) Send(dest uint32, payload []byte) error {
	p.buf = frame.Append(p.buf[:0], dest, payload)
	_, err := p.NC.Write(p.buf)
	return err
}

// Recv returns the next payload (valid until the next Recv) or the error
// that ended the wait. A timeout keeps the bytes of a half-read payload
// for the next call.
func (p *Peer) Recv(within time.Duration) ([]byte, error) {
	p.NC.SetReadDeadline(time.Now().Add(within))
	return p.in.ReadFrame(p.NC)
}

// Exchange keeps a and b trading frames, each way in turn, one in flight
// at a time, until stop is closed, and checks that each arrives as sent.
// It returns the frames delivered and the error that ended the exchange
// early: a failed write, or a frame that did not arrive within wait or
// arrived changed.
func Exchange(a, b *Peer, stop <-chan struct{}, wait time.Duration) (int, error) {
	var msg []byte
	for n := 0; ; n++ {
		select {
		case <-stop:
			return n, nil
		default:
		}
		from, to := a, b
		if n%2 == 1 {
			from, to = b, a
		}
		msg = fmt.Appendf(msg[:0], "exchange %d", n)
		if err := from.Send(to.ID, msg); err != nil {
			return n, fmt.Errorf("frame %d: %w", n, err)
		}
		got, err := to.Recv(wait)
		if err != nil {
			return n, fmt.Errorf("frame %d: %w", n, err)
		}
		if !bytes.Equal(got, msg) {
			return n, fmt.Errorf("frame %d arrived as %q, sent as %q", n, got, msg)
		}
	}
}
