// Package rawpeer is a protocol client for tests that need what
// relay/client deliberately hides: socket buffer sizes chosen before
// connecting (so the bytes the kernel holds for a peer are known), a
// connection whose ID is read separately from the dial, and a payload
// half-read at a timeout kept for the next read.
package rawpeer

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Bufs are socket buffer sizes to ask for before connecting; 0 keeps the
// kernel's default and its autotuning. Linux doubles the request (the
// extra half is its bookkeeping allowance) and stops autotuning the socket.
type Bufs struct{ Snd, Rcv int }

// Peer is one raw connection to a relay.
type Peer struct {
	NC   net.Conn
	ID   uint32
	r    *bufio.Reader
	buf  []byte // frame being written
	part []byte // start of a payload whose read was cut short
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
	p := &Peer{NC: nc, r: bufio.NewReaderSize(nc, 64<<10)}
	var id [4]byte
	nc.SetReadDeadline(time.Now().Add(within))
	if _, err := io.ReadFull(p.r, id[:]); err != nil {
		return nil, err
	}
	p.ID = binary.BigEndian.Uint32(id[:])
	if p.ID == 0 {
		return nil, errors.New("relay assigned ID 0")
	}
	return p, nil
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
	p.buf = binary.BigEndian.AppendUint32(p.buf[:0], dest)
	p.buf = append(append(p.buf, payload...), 0)
	_, err := p.NC.Write(p.buf)
	return err
}

// Recv returns the next payload (valid until the next Recv) or the error
// that ended the wait. A timeout keeps the bytes of a half-read payload
// for the next call.
func (p *Peer) Recv(within time.Duration) ([]byte, error) {
	p.NC.SetReadDeadline(time.Now().Add(within))
	for {
		b, err := p.r.ReadSlice(0)
		if err == nil && len(p.part) == 0 {
			return b[:len(b)-1], nil
		}
		p.part = append(p.part, b...)
		switch {
		case err == nil:
			whole := p.part[:len(p.part)-1]
			p.part = p.part[:0]
			return whole, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && len(p.part) > 0:
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
}
