package relay

import (
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sys/cpu"
)

// The memory budget (Config.MaxMemory): one bound on the client buffers of
// every loop together, in the spirit of Redis's maxmemory-clients. A
// connection's buffers are its partial frame (the parser's accumulation
// buffer, by capacity: that is what it holds), its queued output
// (Conn.Pending) and what it holds for a full hop (hold.go).
//
// Each loop counts its own sum and publishes it in an atomic; nothing is
// shared on the data path. A loop recounts (walks its peers) on every
// tick, and between ticks whenever an upper bound of its sum crosses its
// share: the sum at the last recount plus every byte read and every byte
// queued since, checked once per pass with a few additions. Its share is
// the budget less what the other loops published, so one loop may hold
// most of it when the others hold little. When the published sums
// together are over the budget, each loop closes its own connections that
// hold the most, largest first, until it has freed its part of the excess
// (in proportion to what it holds), and counts them (ClosedMaxMemory).
// One line is logged per second at most, for the process.

// memRecountEvery is the least time between two recounts a loop makes
// between ticks: under a steady load near the budget, the bound is
// crossed again at once and a walk of every peer per pass would be waste.
const memRecountEvery = time.Millisecond

// memState is one loop's budget bookkeeping.
type memState struct {
	base      int64   // this loop's sum at the last recount, less what it evicted
	read      int64   // bytes read since the last recount
	queued    uint64  // counts.bytes at the last recount
	share     int64   // the sum over which this loop recounts between ticks
	recounted instant // when
	cands     []memCand
}

type memCand struct {
	p     *peer
	bytes int64
}

// shared is what the loops of a Group share besides the mesh: the
// per-address table and each loop's published buffer sum.
type shared struct {
	ips     ipTable
	mem     []memSum
	logged  atomic.Int64 // unix nanoseconds of the last eviction log line
	evicted atomic.Int64 // connections evicted since that line
}

type memSum struct {
	bytes atomic.Int64
	_     cpu.CacheLinePad
}

func newShared(loops int) *shared {
	return &shared{mem: make([]memSum, loops)}
}

// held is what p's buffers hold, for the budget.
func (s *Server) held(p *peer) int64 {
	n := int64(cap(p.parser.accum) + p.conn.Pending())
	if p.held {
		n += int64(len(s.holds.bytes[p.conn.Slot()]))
	}
	return n
}

// readFor notes n bytes read, towards the bound between recounts.
func (s *Server) readFor(n int) {
	s.lim.mem.read += int64(n)
}

// checkMemory runs once per pass: a recount when the bound crosses this
// loop's share, or force (the tick).
func (s *Server) checkMemory(force bool) {
	if s.cfg.MaxMemory == 0 {
		return
	}
	m := &s.lim.mem
	if !force {
		bound := m.base + m.read + int64(s.counts.bytes-m.queued)
		if bound <= m.share || s.since(m.recounted) < memRecountEvery {
			return
		}
	}
	s.recountMemory()
}

// recountMemory sums this loop's buffers, publishes the sum and, over the
// budget, evicts this loop's part of the excess.
func (s *Server) recountMemory() {
	m := &s.lim.mem
	m.cands = m.cands[:0]
	var mine int64
	for p := range s.peers.all() {
		if p.conn == nil || p.id == 0 {
			continue
		}
		if b := s.held(p); b > 0 {
			mine += b
			m.cands = append(m.cands, memCand{p, b})
		}
	}
	s.sh.mem[s.k].bytes.Store(mine)
	var others int64
	for k := range s.sh.mem {
		if k != s.k {
			others += s.sh.mem[k].bytes.Load()
		}
	}
	total := mine + others
	if excess := total - s.cfg.MaxMemory; excess > 0 && mine > 0 {
		// This loop's part of the excess, in proportion to what it holds;
		// the other loops free theirs at their next recount.
		want := max(1, excess*mine/total)
		slices.SortFunc(m.cands, func(a, b memCand) int { return int(b.bytes - a.bytes) })
		var freed int64
		n := 0
		for _, c := range m.cands {
			if freed >= want {
				break
			}
			freed += c.bytes
			n++
			s.kick(c.p, ClosedMaxMemory, "among the largest buffers while over max-memory")
		}
		mine -= freed
		s.sh.mem[s.k].bytes.Store(mine)
		s.logEvictions(n, total)
	}
	clear(m.cands)
	m.cands = m.cands[:0]
	m.base, m.read, m.queued, m.recounted = mine, 0, s.counts.bytes, s.clock
	m.share = max(0, s.cfg.MaxMemory-others)
}

// logEvictions logs, at most once per second for the process, how many
// connections the budget closed.
func (s *Server) logEvictions(n int, total int64) {
	ev := s.sh.evicted.Add(int64(n))
	last := s.sh.logged.Load()
	now := s.now.UnixNano()
	if now-last < int64(time.Second) || !s.sh.logged.CompareAndSwap(last, now) {
		return
	}
	s.sh.evicted.Add(-ev)
	s.log.Warn("over max-memory: closed the connections holding the most", "closed", ev, "buffered", total, "max_memory", s.cfg.MaxMemory)
}
