package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringrelay/ringrelay/internal/frame"
	"github.com/ringrelay/ringrelay/tlsrecord"
)

// peer is one client connection of a workload: its ID as the server assigned
// it and its index inside the workload.
type peer struct {
	conn  *net.TCPConn // nil once detached
	id    uint32
	index uint32
	rec   *tlsrecord.Conn // a TLS column's record layer (tls.go); nil for plaintext
}

// appendFrame appends a frame to dest carrying the payload for (sender, seq).
func appendFrame(dst []byte, dest uint32, c *Codec, sender uint32, seq uint64) []byte {
	dst = frame.AppendHeader(dst, dest)
	dst = c.Append(dst, sender, seq)
	return append(dst, frame.End)
}

// frameOverhead is what the protocol adds around a payload on the way in.
const frameOverhead = frame.Overhead

// dialer opens connections to one server address, or to the nodes of a
// cluster given as a comma-separated list. It does not use
// relay/client: the generator needs the raw socket (one write per batch of
// frames, its own splitting of large reads) and a choice of source address.
// Against a loopback server
// it spreads connections over several 127.0.0.x source addresses, so that
// tens of thousands of sockets (and the TIME_WAIT entries they leave behind)
// never exhaust one address's ephemeral ports.
//
// With k addresses, connection i goes to address i mod k: with two nodes
// and the adjacent pairing (connection 2i with 2i+1), every pingpong pair
// has its A on the first node and its B on the second.
type dialer struct {
	addrs   []string
	sources []net.IP
	next    atomic.Uint32
	tls     *tls.Config // nil: plaintext
}

func newDialer(addr string) (*dialer, error) {
	d := &dialer{}
	for _, a := range strings.Split(addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			d.addrs = append(d.addrs, a)
		}
	}
	if len(d.addrs) == 0 {
		return nil, fmt.Errorf("server address %q: none given", addr)
	}
	loopback := true
	for _, a := range d.addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("server address %q: %w", a, err)
		}
		if ip := net.ParseIP(host); ip == nil || ip.To4() == nil || !ip.IsLoopback() {
			loopback = false
		}
	}
	if loopback {
		for i := 2; i <= 9; i++ {
			d.sources = append(d.sources, net.IPv4(127, 0, 0, byte(i)))
		}
	}
	return d, nil
}

// dial opens connection i and reads the ID the server sends first.
func (d *dialer) dial(ctx context.Context, i int) (*peer, error) {
	addr := d.addrs[i%len(d.addrs)]
	var nd net.Dialer
	if len(d.sources) > 0 {
		src := d.sources[int(d.next.Add(1))%len(d.sources)]
		nd.LocalAddr = &net.TCPAddr{IP: src}
	}
	c, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	tc := c.(*net.TCPConn)
	if d.tls != nil {
		rec, id, err := handshake(ctx, tc, d.tls)
		if err != nil {
			tc.Close()
			return nil, fmt.Errorf("%s: %w", addr, err)
		}
		if id == 0 {
			tc.Close()
			return nil, fmt.Errorf("server at %s assigned ID 0, which the protocol reserves", addr)
		}
		return &peer{conn: tc, id: id, rec: rec}, nil
	}
	_ = tc.SetReadDeadline(time.Now().Add(10 * time.Second))
	id, err := frame.ReadID(tc)
	if err != nil {
		tc.Close()
		return nil, fmt.Errorf("read ID from %s: %w", addr, err)
	}
	_ = tc.SetReadDeadline(time.Time{})
	return &peer{conn: tc, id: id}, nil
}

// dialMany opens n connections, a few at a time, and numbers them 0..n-1.
// On failure it closes what it opened.
func (d *dialer) dialMany(ctx context.Context, n int) ([]*peer, error) {
	peers := make([]*peer, n)
	var (
		wg      sync.WaitGroup
		next    atomic.Int64
		errOnce sync.Once
		first   error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range min(n, 32) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				p, err := d.dial(ctx, i)
				if err != nil {
					errOnce.Do(func() { first = fmt.Errorf("connection %d of %d: %w", i+1, n, err) })
					cancel()
					return
				}
				p.index = uint32(i)
				peers[i] = p
			}
		})
	}
	wg.Wait()
	if first != nil {
		closeAll(peers)
		return nil, first
	}
	return peers, nil
}

func closeAll(peers []*peer) {
	for _, p := range peers {
		if p != nil && p.conn != nil {
			p.conn.Close()
		}
	}
}

// detachAll takes the sockets of peers away from the Go runtime's poller:
// each descriptor is duplicated (it stays non-blocking) and the net.Conn
// closed, which also removes it from the runtime's epoll set. The engine
// owns the returned descriptors. On error every peer is closed.
func detachAll(peers []*peer) ([]int, error) {
	fds := make([]int, 0, len(peers))
	for i, p := range peers {
		fd, err := detach(p.conn)
		if err != nil {
			closeFDs(fds)
			closeAll(peers[i:])
			return nil, fmt.Errorf("connection %d: take its socket: %w", i+1, err)
		}
		p.conn = nil
		fds = append(fds, fd)
	}
	return fds, nil
}

func detach(c *net.TCPConn) (int, error) {
	defer c.Close()
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, dupErr := -1, error(nil)
	if err := raw.Control(func(s uintptr) { fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	return fd, dupErr
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
