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
// connections accepted) on its tick. When the counts have not moved for
// quietAfter after having moved (for a tick, if the loop has no
// connection left), the loop trims what it owns (its output
// pool and engine scratch through reactor.Loop.Trim, and the parser
// buffers of its idle connections). The last loop of the process to go
// quiet that way then runs one debug.FreeOSMemory: a collection, and the
// freed pages handed back to the kernel. A busy loop never trims and
// nothing runs on the data path: the check is two additions and a
// comparison per tick, and a loop that stays idle sleeps without ticking
// once it has trimmed.

// quietAfter is how long a loop's counts must stay still before it trims.
const quietAfter = 2 * time.Second

// releaseFloor is how much the process must have allocated since the last
// FreeOSMemory for another one to be worth a collection: a trickle of
// frames that wakes a loop now and then costs no forced collections.
const releaseFloor = 4 << 20

// quietWatch is one loop's view of its own activity.
type quietWatch struct {
	seen  uint64  // activity count at the last tick
	since instant // when it last moved
	busy  bool    // it moved since the last trim
}

// memReturn is the process-level step, shared by the loops of a Group.
type memReturn struct {
	busy atomic.Int32 // loops busy since their last trim

	mu     sync.Mutex
	allocs uint64 // /gc/heap/allocs:bytes at the last FreeOSMemory
}

// activity is a count that moves whenever the loop does work that takes
// memory: frames read, frames delivered, connections accepted.
func (s *Server) activity() uint64 {
	return s.counts.received + s.counts.frames + s.loop.Stats().Accepted.Load()
}

// watchQuiet runs on each tick: it notes activity, and trims once the
// loop has been quiet for quietAfter after having been busy.
func (s *Server) watchQuiet() {
	w := &s.quiet
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
// ticks until it has.
func (s *Server) quietWait(timeout time.Duration) time.Duration {
	if timeout < 0 && s.quiet.busy {
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
	if allocs-m.allocs < releaseFloor {
		return
	}
	since := allocs - m.allocs
	m.allocs = allocs
	start := time.Now()
	debug.FreeOSMemory()
	log.Debug("all loops quiet: memory given back", "allocated_since_last", since, "took", time.Since(start))
}
