package relay

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Lame duck: leave without a reconnect storm.
//
// Group.LameDuck closes the listener at once (another process, or another
// node behind the same balancer, takes the new connections) and lets the
// open ones keep relaying for a grace period. Then each loop closes its
// connections at a steady pace over the window, so that their clients
// reconnect elsewhere a few at a time, not all in the same second. When
// every loop has closed all of its connections, the channel LameDuck
// returned is closed; the caller then shuts the group down (with a
// cluster, leaving announces "leaving", so peers stop routing to the
// node).
//
// Closing one connection: it leaves the routing table first (frames for
// its ID from then on are dropped as for any departed peer), its reads
// stop, and it is closed once what was queued for it has been written
// and acknowledged, or after ShutdownTimeout: the same care a shutdown
// takes, one connection at a time.

// lameDuckStep bounds Poll's wait while a loop closes connections on a
// schedule: the pace is checked this often.
const lameDuckStep = 25 * time.Millisecond

// lameDuck is what the loops of a Group share.
type lameDuck struct {
	grace, window time.Duration
	begin         time.Time
	left          atomic.Int32 // loops that have not closed all of theirs
	done          chan struct{}
}

// duckState is one loop's part.
type duckState struct {
	d        *lameDuck
	closing  bool // the grace period is over
	planned  int  // connections open when closing began
	closed   int  // of those, closed so far
	cursor   int  // next slot to look at
	finished bool
	leaving  []leaver
}

// leaver is a connection out of the routing table, waiting for its
// output to be written before it is closed.
type leaver struct {
	w     waiter
	since time.Time
}

var lameDuckMu sync.Mutex // orders concurrent first calls of LameDuck

// LameDuck stops accepting, keeps relaying for grace, then closes every
// connection spread over window, and closes the returned channel once
// all are closed. Safe from any goroutine; later calls return the first
// call's channel and change nothing.
func (g *Group) LameDuck(grace, window time.Duration) <-chan struct{} {
	lameDuckMu.Lock()
	defer lameDuckMu.Unlock()
	if d := g.servers[0].lameDuck.Load(); d != nil {
		return d.done
	}
	d := &lameDuck{grace: grace, window: window, begin: time.Now(), done: make(chan struct{})}
	d.left.Store(int32(len(g.servers)))
	for _, s := range g.servers {
		s.lameDuck.Store(d)
		s.loop.Wake()
	}
	return d.done
}

// lameDuckPass runs once per pass: it picks up a LameDuck call, closes
// the listener, and closes connections on schedule.
func (s *Server) lameDuckPass() {
	st := &s.duck
	if st.d == nil {
		if st.d = s.lameDuck.Load(); st.d == nil {
			return
		}
		s.loop.StopAccepting()
		if s.k == 0 {
			s.log.Info("lame duck: listener closed; open connections keep relaying, then close over the window",
				"grace", st.d.grace, "window", st.d.window)
		}
	}
	if st.finished || s.draining {
		return
	}
	s.closeLeavers()
	elapsed := s.now.Sub(st.d.begin) - st.d.grace
	if elapsed < 0 {
		return
	}
	if !st.closing {
		st.closing = true
		st.planned = s.routes.Len()
	}
	// Closed so far should be the window's share of the connections
	// there were; any left (or adopted late) go when it ends.
	target := math.MaxInt
	if elapsed < st.d.window {
		target = int(math.Ceil(float64(st.planned) * float64(elapsed) / float64(st.d.window)))
	}
	for st.closed < target && s.routes.Len() > 0 {
		p := s.nextOpen()
		if p == nil {
			break
		}
		s.leave(p)
		st.closed++
	}
	if elapsed >= st.d.window && s.routes.Len() == 0 && len(st.leaving) == 0 {
		st.finished = true
		if st.d.left.Add(-1) == 0 {
			s.log.Info("lame duck: every connection closed")
			close(st.d.done)
		}
	}
}

// nextOpen returns the next connection with an ID, from the cursor on
// (wrapping once), or nil.
func (s *Server) nextOpen() *peer {
	n := len(s.peers.pages) * peerPage
	for range n {
		if s.duck.cursor >= n {
			s.duck.cursor = 0
		}
		p := s.peers.at(s.duck.cursor)
		s.duck.cursor++
		if p.conn != nil && p.id != 0 {
			return p
		}
	}
	return nil
}

// leave takes p out of the routing table and stops its reads; it is
// closed once its output is out (closeLeavers).
func (s *Server) leave(p *peer) {
	s.log.Debug("lame duck: closing connection", "id", p.id)
	s.counts.closed[ClosedLameDuck]++
	s.forget(p)
	p.conn.PauseRead()
	s.duck.leaving = append(s.duck.leaving, leaver{w: waiter{slot: p.conn.Slot(), serial: p.serial}, since: s.now})
}

// closeLeavers closes each leaving connection whose output has been
// written and acknowledged, or that has waited ShutdownTimeout.
func (s *Server) closeLeavers() {
	kept := s.duck.leaving[:0]
	for _, l := range s.duck.leaving {
		p := s.peers.at(l.w.slot)
		if p.serial != l.w.serial || p.conn == nil {
			continue // gone already
		}
		c := p.conn
		if s.now.Sub(l.since) < s.cfg.ShutdownTimeout && (c.Pending() > 0 || c.Unacked() > 0) {
			kept = append(kept, l)
			continue
		}
		c.Close()
	}
	clear(s.duck.leaving[len(kept):])
	s.duck.leaving = kept
}

// lameDuckWait bounds Poll's wait while connections are to be closed on
// schedule.
func (s *Server) lameDuckWait(timeout time.Duration) time.Duration {
	if s.duck.d == nil && s.lameDuck.Load() == nil || s.duck.finished {
		return timeout
	}
	if timeout < 0 || timeout > lameDuckStep {
		return lameDuckStep
	}
	return timeout
}
