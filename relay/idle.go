package relay

import (
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// Memory goes back after a spike.
//
// During a burst a loop fills its output pool, connections grow parser
// buffers, and the Go heap grows with them. Once the traffic stops none
// of it is needed, but nothing returns it: the pool keeps its chunks,
// and the collector neither runs nor gives pages back while nothing
// allocates (Go's forced collection comes after two minutes).
//
// So each loop watches what it counts anyway (frames read and delivered,
// connections accepted, queued output the kernel took) on its tick.
// Output counts: after a burst, queues of megabytes drain at the pace of
// their readers, and a loop that trimmed while they drained would keep
// every chunk they give back. When the counts have not moved for
// quietAfter after having moved (for a tick, if the loop has no
// connection left), the loop trims what it owns (its output pool and
// engine scratch through reactor.Loop.Trim, and the parser buffers of its
// idle connections). The last loop of the process to go quiet that way
// then runs one debug.FreeOSMemory: a collection, and the freed pages
// handed back to the kernel. A busy loop never trims and nothing runs on
// the data path: the check is a sum over the loop's connections per tick
// and a comparison, and a loop that stays idle sleeps without ticking
// once it has trimmed (a pass that handled events earns it one more tick,
// to see what they did).

// quietAfter is how long a loop's counts must stay still before it trims.
const quietAfter = 2 * time.Second

// releaseFloor is how much the process must have allocated, or its loops
// written out of their queues, since the last FreeOSMemory for another
// one to be worth a collection: a trickle of frames that wakes a loop now
// and then costs no forced collections, and queues that drained after a
// release (their chunks back in the pool, then trimmed, while nothing
// was allocated) still go back.
const releaseFloor = 4 << 20

// quietWatch is one loop's view of its own activity.
type quietWatch struct {
	seen  uint64  // activity count at the last tick
	since instant // when it last moved
	busy  bool    // it moved since the last trim
	// Output the kernel took for this loop's connections: written as of
	// the last tick, and what connections closed since took in all.
	written, gone uint64
	stirred       bool // a pass handled events since the last tick
}

// memReturn is the process-level step, shared by the loops of a Group.
type memReturn struct {
	busy atomic.Int32 // loops busy since their last trim

	taken atomic.Uint64 // output bytes the kernel took since the last FreeOSMemory

	mu     sync.Mutex
	allocs uint64 // /gc/heap/allocs:bytes at the last FreeOSMemory
}

// activity is a count that moves whenever the loop does work that takes
// or holds memory: frames read, frames delivered, connections accepted,
// queued output the kernel took.
func (s *Server) activity() uint64 {
	return s.counts.received + s.counts.frames + s.loop.Stats().Accepted.Load() + s.quiet.written
}

// noteWritten takes, on each tick, the total of output the kernel took for
// this loop's connections, open and closed: what it took since the last
// tick is activity, and memory the pool got back, for the process.
func (s *Server) noteWritten(total uint64) {
	if n := total - s.quiet.written; n > 0 {
		s.quiet.written = total
		s.mem.taken.Add(n)
	}
}

// watchQuiet runs on each tick: it notes activity, and trims once the
// loop has been quiet for quietAfter after having been busy.
func (s *Server) watchQuiet() {
	w := &s.quiet
	w.stirred = false
	if n := s.activity(); n != w.seen {
		w.seen, w.since = n, s.clock
		if !w.busy {
			w.busy = true
			s.mem.busy.Add(1)
		}
		return
	}
	// A loop with connections waits quietAfter; one with none, and
	// nothing done since the last tick, has no reason to wait.
	if !w.busy || s.routes.Len() > 0 && s.since(w.since) < quietAfter {
		return
	}
	w.busy = false
	s.trim()
	if s.mem.busy.Add(-1) == 0 {
		s.mem.release(s.log)
	}
}

// quietWait bounds Poll's wait while the loop has not trimmed since it
// was busy, so that an idle loop (which otherwise waits for ever) still
// ticks until it has; and once after any pass that handled events, since
// what they did (a queue drained, connections closed) shows in the counts
// only on a tick, and work that fits between the last tick and the next
// sleep would otherwise go unseen.
func (s *Server) quietWait(timeout time.Duration) time.Duration {
	if timeout < 0 && (s.quiet.busy || s.quiet.stirred) {
		return s.tickEvery()
	}
	return timeout
}

// trim gives back what this loop keeps for reuse.
func (s *Server) trim() {
	s.loop.Trim()
	for p := range s.peers.all() {
		if p.conn != nil {
			p.parser.Trim()
		}
	}
}

// release runs a collection and hands the free pages back to the kernel,
// unless the process allocated too little since the last time for it to
// matter. It runs on the loop that went quiet last; every loop is quiet.
func (m *memReturn) release(log *slog.Logger) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(sample)
	allocs := sample[0].Value.Uint64()
	if allocs-m.allocs < releaseFloor && m.taken.Load() < releaseFloor {
		return
	}
	since := allocs - m.allocs
	m.allocs = allocs
	taken := m.taken.Swap(0)
	start := time.Now()
	debug.FreeOSMemory()
	log.Debug("all loops quiet: memory given back", "allocated_since_last", since, "written_since_last", taken, "took", time.Since(start))
}
