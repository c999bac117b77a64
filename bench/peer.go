package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringrelay/ringrelay/internal/frame"
)

// peer is one client connection of a workload: its ID as the server assigned
// it, its sender index inside the workload, and its reusable buffers.
type peer struct {
	conn  *net.TCPConn
	id    uint32
	index uint32
	in    *frame.Splitter
	out   []byte
}

// appendFrame appends a frame to dest carrying the payload for (sender, seq).
func appendFrame(dst []byte, dest uint32, c *Codec, sender uint32, seq uint64) []byte {
	dst = binary.BigEndian.AppendUint32(dst, dest)
	dst = c.Append(dst, sender, seq)
	return append(dst, 0)
}

// frameOverhead is what the protocol adds around a payload on the way in.
const frameOverhead = 5

// dialer opens connections to one server address. It does not use
// relay/client: the generator needs the raw socket (one write per batch of
// frames, its own splitting of large reads) and a choice of source address.
// Against a loopback server
// it spreads connections over several 127.0.0.x source addresses, so that
// tens of thousands of sockets (and the TIME_WAIT entries they leave behind)
// never exhaust one address's ephemeral ports.
type dialer struct {
	addr    string
	sources []net.IP
	next    atomic.Uint32
}

func newDialer(addr string) (*dialer, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("server address %q: %w", addr, err)
	}
	d := &dialer{addr: addr}
	if ip := net.ParseIP(host); ip != nil && ip.To4() != nil && ip.IsLoopback() {
		for i := 2; i <= 9; i++ {
			d.sources = append(d.sources, net.IPv4(127, 0, 0, byte(i)))
		}
	}
	return d, nil
}

// dial connects and reads the ID the server sends first.
func (d *dialer) dial(ctx context.Context) (*peer, error) {
	var nd net.Dialer
	if len(d.sources) > 0 {
		src := d.sources[int(d.next.Add(1))%len(d.sources)]
		nd.LocalAddr = &net.TCPAddr{IP: src}
	}
	c, err := nd.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", d.addr, err)
	}
	tc := c.(*net.TCPConn)
	var id [4]byte
	_ = tc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(tc, id[:]); err != nil {
		tc.Close()
		return nil, fmt.Errorf("read ID from %s: %w", d.addr, err)
	}
	_ = tc.SetReadDeadline(time.Time{})
	p := &peer{conn: tc, id: binary.BigEndian.Uint32(id[:])}
	if p.id == 0 {
		tc.Close()
		return nil, fmt.Errorf("server at %s assigned ID 0, which the protocol reserves", d.addr)
	}
	return p, nil
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
				p, err := d.dial(ctx)
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
		if p != nil {
			p.conn.Close()
		}
	}
}
