package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringrelay/ringrelay/shard"
)

// The connection list (/connz): each loop answers from its own state, at
// its own pace, and nothing on the data path waits for an operator.
//
// The asker (an HTTP goroutine) hands a loop a request through one atomic
// pointer (connzPort) and wakes it. The loop looks at the pointer once per
// pass, after its events, and writes its connections into the request's
// buffer, which the asker allocated: the loop neither locks nor allocates
// for it. It writes at most connzChunk records per pass and, if it has
// more, goes round again at once (without waiting in Poll), so a page of
// ten thousand connections is a few short passes, not one long one. When
// done it closes the request's channel. An asker that gives up (its
// context ends) takes the request back off the pointer and never reads
// the buffer again; a loop still writing into it writes into garbage
// nobody looks at.

// How much of an answer a loop writes in one pass: connzChunk records,
// or connzAddrChunk addresses. A record is a few loads and stores (tens
// of nanoseconds); an address is a getpeername system call (1-2 µs on a
// busy VM). Either chunk keeps a pass near a tenth of a millisecond.
// Addresses are asked for separately, for the page only
// (Group.ConnzAddrs), and not at all for a summary.
const (
	connzChunk     = 1024
	connzAddrChunk = 64
)

// ConnInfo is one connection as its loop saw it when it answered.
type ConnInfo struct {
	ID   uint32
	Loop int
	// Remote is the peer's address, when asked for (Group.ConnzAddrs);
	// the zero AddrPort otherwise, or once the peer reset the socket.
	Remote netip.AddrPort
	// Age is how long ago the connection opened, as of when Connz
	// returned: one clock for every loop, so ages compare across loops.
	Age time.Duration
	// Frames and bytes read from the connection (BytesIn counts every
	// byte read, headers and a frame still incomplete included), and
	// frames queued to it and bytes the kernel took for it (BytesOut
	// includes the 4-byte ID greeting).
	FramesIn, BytesIn   uint64
	FramesOut, BytesOut uint64
	// Queued is output not yet taken by the kernel (Conn.Pending).
	Queued int
	// Paused: the connection is not read, by backpressure; PausedOn says
	// on what, PausedFor names one destination it waits for, if any.
	Paused    bool
	PausedOn  PauseCause
	PausedFor uint32
	// TLS is the connection's TLS session; zero for plaintext.
	TLS TLSInfo

	slot   int // for the loop's own bookkeeping while it answers
	serial uint64
	opened time.Time // the start of the pass that opened it
}

// TLSInfo is what /connz shows of a TLS connection: the fields of
// tlshandshake.State an operator asks about. The cipher suite comes from
// the reactor's record layer for the connection (Conn.TLSSuite), off the
// peer record, which plaintext connections also pay for; the version is
// TLS 1.3 whenever there is a suite, the only version served. The client
// certificate's subject does not reach the loop yet (AdoptTLS hands it
// the socket and the record layer only): it stays "" until the
// adoption carries the handshake's State too.
type TLSInfo struct {
	Version       uint16 // tls.VersionTLS13; 0: plaintext
	CipherSuite   uint16
	ClientSubject string // the verified client certificate's subject; "" without one
}

// PauseCause is a set of reasons a sender is paused.
type PauseCause uint8

const (
	// PausedByDest: a destination on this loop is over -max-queue.
	PausedByDest PauseCause = 1 << iota
	// PausedByLoopDest: a destination on another loop asked for a pause.
	PausedByLoopDest
	// PausedByNodeDest: a destination on another node asked for a pause.
	PausedByNodeDest
	// PausedByLoopHop: the queue towards another loop was full.
	PausedByLoopHop
	// PausedByNodeHop: the outbox towards the other nodes was full.
	PausedByNodeHop
)

var pauseCauseNames = [...]string{"destination", "loop_destination", "node_destination", "loop_queue", "node_outbox"}

// Names lists the causes in c by name, for exporters.
func (c PauseCause) Names() []string {
	var out []string
	for i, n := range pauseCauseNames {
		if c&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// tally is what a connection counts for /connz: 24 bytes of its peer
// record, counted where each frame is read (route.go) and delivered
// (deliver.go), and where each read arrives (server.go). Bytes out come
// from the reactor, which counts them anyway (Conn.Written).
type tally struct {
	framesIn, bytesIn, framesOut uint64
}

// connzRequest is one loop's part of one question.
type connzRequest struct {
	id uint32 // 0: every connection
	// addrs: recs holds this loop's records already (from an earlier
	// answer); the loop fills in their addresses only.
	addrs bool
	recs  []ConnInfo // filled up to its capacity by the loop
	need  int        // set by the loop when recs was too short: how many it has
	done  chan struct{}

	slot int // the loop's cursor between passes
}

// connzPort is where a Server takes requests: the one it answers now.
type connzPort struct {
	asked atomic.Pointer[connzRequest]
}

// answerConnz writes (part of) this loop's answer to r.
func (s *Server) answerConnz(r *connzRequest) {
	if r.addrs {
		for n := 0; r.slot < len(r.recs) && n < connzAddrChunk; n++ {
			c := &r.recs[r.slot]
			if p := s.peers.at(c.slot); p.conn != nil && p.serial == c.serial {
				c.Remote = p.conn.RemoteAddr()
			}
			r.slot++
		}
		if r.slot < len(r.recs) {
			s.again = true
			return
		}
		s.connz.asked.CompareAndSwap(r, nil)
		close(r.done)
		return
	}
	if r.id != 0 {
		if slot, ok := s.routes.Lookup(r.id); ok && s.where(r.id) == here && len(r.recs) < cap(r.recs) {
			r.recs = append(r.recs, s.describe(s.peers.at(slot)))
		}
		s.finishConnz(r)
		return
	}
	slots := len(s.peers.pages) * peerPage
	for n := 0; r.slot < slots && n < connzChunk; r.slot++ {
		p := s.peers.at(r.slot)
		if p.conn == nil || p.id == 0 {
			continue
		}
		if len(r.recs) == cap(r.recs) {
			r.need = s.routes.Len()
			s.finishConnz(r)
			return
		}
		r.recs = append(r.recs, s.describe(p))
		n++
	}
	if r.slot < slots {
		s.again = true // more next pass, without waiting
		return
	}
	s.finishConnz(r)
}

// describe is one connection's record, all but why it is paused and its
// address.
func (s *Server) describe(p *peer) ConnInfo {
	return ConnInfo{
		ID:        p.id,
		Loop:      s.k,
		opened:    s.start.Add(time.Duration(p.serial - 1)),
		FramesIn:  p.tally.framesIn,
		BytesIn:   p.tally.bytesIn,
		FramesOut: p.tally.framesOut,
		BytesOut:  p.conn.Written(),
		Queued:    p.conn.Pending(),
		Paused:    p.blocked > 0 && !s.draining,
		TLS:       tlsInfo(p.conn.TLSSuite()),
		slot:      p.conn.Slot(),
		serial:    p.serial,
	}
}

// finishConnz says why each paused sender in r is paused, from the lists
// of waiters (a few, under backpressure), and hands r back.
func (s *Server) finishConnz(r *connzRequest) {
	mark := func(w waiter, c PauseCause, dest uint32) {
		// The records are in slot order.
		i := sort.Search(len(r.recs), func(i int) bool { return r.recs[i].slot >= w.slot })
		if i < len(r.recs) && r.recs[i].slot == w.slot && r.recs[i].serial == w.serial {
			r.recs[i].PausedOn |= c
			if dest != 0 {
				r.recs[i].PausedFor = dest
			}
		}
	}
	for slot, ws := range s.waiting {
		dest := s.peers.at(slot).id
		for _, w := range ws {
			mark(w, PausedByDest, dest)
		}
	}
	for dest, rw := range s.remote {
		c := PausedByLoopDest
		if s.where(dest) == s.n {
			c = PausedByNodeDest
		}
		for _, w := range rw.waiters {
			mark(w, c, dest)
		}
	}
	for h, ws := range s.holds.stalled {
		c := PausedByLoopHop
		if h == s.n {
			c = PausedByNodeHop
		}
		for _, w := range ws {
			mark(w, c, 0)
		}
	}
	s.connz.asked.CompareAndSwap(r, nil)
	close(r.done)
}

// askConnz hands r to this server's loop and waits for the answer.
func (s *Server) askConnz(ctx context.Context, r *connzRequest) (*connzRequest, error) {
	r.done = make(chan struct{})
	s.connz.asked.Store(r)
	s.loop.Wake()
	select {
	case <-r.done:
		return r, nil
	case <-ctx.Done():
		s.connz.asked.CompareAndSwap(r, nil)
		return nil, fmt.Errorf("loop %d did not answer: %w", s.k, ctx.Err())
	}
}

// Connz lists the open connections of every loop (id 0), or the one
// connection with id, as each loop sees it at its next pass, without
// their addresses (ConnzAddrs). Loops answer concurrently; ctx bounds the
// wait. Calls are serialized: a loop answers one question at a time.
func (g *Group) Connz(ctx context.Context, id uint32) ([]ConnInfo, error) {
	g.connzMu.Lock()
	defer g.connzMu.Unlock()
	ks := make([]int, 0, g.n)
	switch {
	case id == 0:
		for k := range g.n {
			ks = append(ks, k)
		}
	case g.n == 1:
		ks = append(ks, 0)
	default:
		ks = append(ks, shard.Owner(id, g.n)) // the only loop it can be on
	}
	type answer struct {
		recs []ConnInfo
		err  error
	}
	answers := make([]answer, len(ks))
	done := make(chan struct{}, len(ks))
	for i, k := range ks {
		go func() {
			defer func() { done <- struct{}{} }()
			size := 1
			if id == 0 {
				size = int(max(g.loops[k].Stats().Open.Load(), 0)) + 64
			}
			for {
				r, err := g.servers[k].askConnz(ctx, &connzRequest{id: id, recs: make([]ConnInfo, 0, size)})
				if err != nil {
					answers[i].err = err
					return
				}
				if r.need == 0 {
					answers[i].recs = r.recs
					return
				}
				size = r.need + r.need/4 + 64 // connections opened meanwhile
			}
		}()
	}
	for range ks {
		<-done
	}
	var out []ConnInfo
	for _, a := range answers {
		if a.err != nil {
			return nil, a.err
		}
		out = append(out, a.recs...)
	}
	// Each loop has its own clock and answered at its own pass: ages
	// against one instant are what lets them be compared.
	now := time.Now()
	for i := range out {
		out[i].Age = now.Sub(out[i].opened)
	}
	return out, nil
}

// ConnzAddrs fills in the remote address of each of conns, as Connz
// returned them, asking each loop for its own: a connection closed since
// keeps the zero address (its slot may hold another connection by now,
// which the serial tells apart).
func (g *Group) ConnzAddrs(ctx context.Context, conns []ConnInfo) error {
	g.connzMu.Lock()
	defer g.connzMu.Unlock()
	byLoop := make([][]ConnInfo, g.n)
	where := make([][]int, g.n) // index in conns of each record of byLoop
	for i, c := range conns {
		if c.Loop < 0 || c.Loop >= g.n {
			return fmt.Errorf("connection %d: loop %d of %d", c.ID, c.Loop, g.n)
		}
		byLoop[c.Loop] = append(byLoop[c.Loop], c)
		where[c.Loop] = append(where[c.Loop], i)
	}
	errs := make([]error, g.n)
	var wg sync.WaitGroup
	for k := range g.n {
		if len(byLoop[k]) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := g.servers[k].askConnz(ctx, &connzRequest{addrs: true, recs: byLoop[k]})
			if err != nil {
				errs[k] = err
				return
			}
			for j, c := range r.recs {
				conns[where[k][j]].Remote = c.Remote
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func tlsInfo(suite uint16) TLSInfo {
	if suite == 0 {
		return TLSInfo{}
	}
	return TLSInfo{Version: tls.VersionTLS13, CipherSuite: suite}
}
