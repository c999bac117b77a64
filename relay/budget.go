package relay

import (
	"cmp"
	"math/bits"
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
// Each loop counts its own sum and publishes it in atomics; nothing is
// shared on the data path. A loop recounts (walks its peers) on every
// tick, and between ticks whenever an upper bound of its sum crosses its
// share: the sum at the last recount plus every byte read and every byte
// queued since, checked once per pass with a few additions. Its share is
// what it held at its last recount plus 1/L of what was left of the budget
// then (L loops), so that the loops together stay near the budget between
// recounts, and a loop may still hold most of it when the others hold
// little.
//
// Largest first, across loops without a lock: each loop publishes its
// bytes by size class (powers of two: a connection holding [2^b, 2^b+1)
// bytes counts in class b). When the sums together are over the budget,
// every loop finds, from the same classes, the size class c down to which
// closing every connection frees the excess; it closes its own
// connections above class c, and of class c its own part, in proportion
// to what it holds there, largest first. A loop with nothing in the
// classes that must go closes nothing, so a small connection is closed
// only once every larger one, on any loop, is gone. Closings are counted
// (ClosedMaxMemory) and logged once per second at most, for the process.
// What another loop published is up to its last recount old (a tick at
// most): a loop may close somewhat more than the excess, never a smaller
// connection before the larger classes are empty.

// memRecountEvery is the least time between two recounts a loop makes
// between ticks: under a steady load near the budget, the bound is
// crossed again at once and a walk of every peer per pass would be waste.
const memRecountEvery = time.Millisecond

// memState is one loop's budget bookkeeping.
type memState struct {
	class     [memClasses]int64 // this loop's bytes by size class, at the last recount
	base      int64             // this loop's sum at the last recount, less what it evicted
	read      int64             // bytes read since the last recount
	queued    uint64            // counts.bytes at the last recount
	share     int64             // the sum over which this loop recounts between ticks
	recounted instant           // when
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
	class [memClasses]atomic.Int64 // bytes by size class (memClass)
	_     cpu.CacheLinePad
}

// memClasses is the number of size classes: up to 2^47 bytes.
const memClasses = 48

// memClass is the size class of a connection holding b > 0 bytes.
func memClass(b int64) int { return min(bits.Len64(uint64(b))-1, memClasses-1) }

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
	if m.recounted == 0 {
		m.share = s.cfg.MaxMemory / int64(len(s.sh.mem))
	}
	if !force {
		bound := m.base + m.read + int64(s.counts.bytes-m.queued)
		if bound <= m.share || (m.recounted != 0 && s.since(m.recounted) < memRecountEvery) {
			return
		}
	}
	s.recountMemory()
}

// recountMemory sums this loop's buffers, publishes the sums and, over the
// budget, closes this loop's part of the excess.
func (s *Server) recountMemory() {
	m := &s.lim.mem
	m.cands = m.cands[:0]
	clear(m.class[:])
	var mine int64
	for p := range s.peers.all() {
		if p.conn == nil || p.id == 0 {
			continue
		}
		if b := s.held(p); b > 0 {
			mine += b
			m.class[memClass(b)] += b
			m.cands = append(m.cands, memCand{p, b})
		}
	}
	s.publishMemory(mine)
	var others int64
	var all [memClasses]int64
	for k := range s.sh.mem {
		if k != s.k {
			others += s.sh.mem[k].bytes.Load()
		}
		for c := range all {
			all[c] += s.sh.mem[k].class[c].Load()
		}
	}
	if excess := mine + others - s.cfg.MaxMemory; excess > 0 && mine > 0 {
		// The class c down to which closing everything frees the excess,
		// and how much of class c must go after all above it.
		c, need := memClasses-1, excess
		for ; c > 0 && all[c] < need; c-- {
			need -= all[c]
		}
		want := int64(0)
		for d := c + 1; d < memClasses; d++ {
			want += m.class[d]
		}
		if all[c] > 0 {
			want += (need*m.class[c] + all[c] - 1) / all[c] // rounded up: the excess goes whole
		}
		slices.SortFunc(m.cands, func(a, b memCand) int { return cmp.Compare(b.bytes, a.bytes) })
		var freed int64
		n := 0
		for _, cd := range m.cands {
			if freed >= want || memClass(cd.bytes) < c {
				break
			}
			freed += cd.bytes
			n++
			s.kick(cd.p, ClosedMaxMemory, "among the largest buffers while over max-memory")
			m.class[memClass(cd.bytes)] -= cd.bytes
		}
		mine -= freed
		s.publishMemory(mine)
		if n > 0 {
			s.logEvictions(n, mine+others)
		}
	}
	clear(m.cands)
	m.cands = m.cands[:0]
	m.base, m.read, m.queued, m.recounted = mine, 0, s.counts.bytes, s.clock
	// Until the next recount, this loop may grow by its part of what is
	// left of the budget: the loops together then stay within it though
	// each counts only its own bytes.
	m.share = mine + max(0, s.cfg.MaxMemory-mine-others)/int64(len(s.sh.mem))
}

// publishMemory stores this loop's sum and its classes for the others.
func (s *Server) publishMemory(mine int64) {
	me := &s.sh.mem[s.k]
	me.bytes.Store(mine)
	s.metrics.ClientBuffered.Store(mine)
	for c := range me.class {
		if v := s.lim.mem.class[c]; v != me.class[c].Load() {
			me.class[c].Store(v)
		}
	}
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
