package relay

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/shard"
)

// Server is the relay's state machine. It owns the routing table and one
// peer record per connection, and drives a reactor.Loop: every byte it sees
// comes from a Received event, every byte it writes goes through
// Conn.Send. Run must be called from the goroutine that opened the loop.
type Server struct {
	cfg    Config
	loop   reactor.Loop
	log    *slog.Logger
	peers  peers   // indexed by Conn.Slot
	routes *Routes // ID -> connection slot; also hands out IDs
	serial uint64  // the last peer serial (peer.serial), so waiters survive slot reuse

	// Where frames can go besides this loop (route.go): k is this loop's
	// index of n, and hop n is the link to other nodes.
	k, n   int
	scheme shard.Scheme // which node an ID belongs to
	x      *cross       // the other loops of a Group (cross.go); nil with one loop
	link   *nodeLink    // the other nodes of a cluster (nodes.go); nil on one node

	holds  holds                  // frames a bounded hop refused, and who waits (hold.go)
	remote map[uint32]*remoteWait // destinations elsewhere that asked for a pause (hold.go)
	// waiting lists, by destination slot, the senders of this loop paused
	// until that destination drains (deliver.go). It lives here rather
	// than in the peer record because few destinations ever have one.
	waiting map[int][]waiter
	asked   map[int]*asked // this loop's destinations that asked other hops to pause (deliver.go)
	ctl     controls       // control records that wait for room (control.go)

	metrics *Metrics
	counts  counts
	connz   connzPort // operators' requests for the connection list (connz.go)

	lim limits  // spraying, per-address and memory limits (limits.go, budget.go)
	sh  *shared // what the loops share for them: the Group's, or this server's own

	stop     atomic.Bool // set by Shutdown from any goroutine
	draining bool
	again    bool // work is left that the next pass must do at once: Poll does not wait
	deadline time.Time
	now      time.Time // time of the current batch
	start    time.Time // when Run began; clock counts from here
	clock    instant   // now, as an instant
	lastTick time.Time

	quiet quietWatch // memory goes back after a spike (idle.go)
	mem   *memReturn

	lameDuck atomic.Pointer[lameDuck] // set by Group.LameDuck (lameduck.go)
	duck     duckState
}

// peer is the relay's view of one connection.
type peer struct {
	// Every open connection has one: the fields are ordered so that the
	// narrow ones share the last word (120 bytes in all).
	conn   *reactor.Conn
	parser Parser
	// serial tells this connection from a later one in the same slot. It
	// is also the instant the connection opened (made unique by taking
	// one nanosecond more than the previous serial when several open in
	// one pass), so the age costs no field of its own.
	serial uint64

	partialSince instant // when the current incomplete frame began; 0: none

	// Write-progress watch.
	lastWritten uint64
	stallSince  instant // since when no progress was seen; 0: not stalled

	tally tally // frames and bytes in and out, for /connz (connz.go)

	id      uint32 // 0 once the connection left the routing table
	blocked int32  // reasons this peer (as a sender) does not read: block, unblock
	held    bool   // bytes a full hop refused wait in Server.holds
}

// The idle memory per connection (README, Performance) counts this record:
// a new field must fit in the padding or win its bytes elsewhere.
var _ [120 - unsafe.Sizeof(peer{})]struct{}

// instant is a point in time as nanoseconds since Run began, plus one, so
// that 0 can mean "not set". Peers keep instants rather than time.Time
// (8 bytes instead of 24) because every open connection carries two.
type instant int64

func (s *Server) since(i instant) time.Duration { return time.Duration(s.clock - i) }

// waiter is a paused sender, by slot; the serial tells a later connection
// in the same slot from it.
type waiter struct {
	slot   int
	serial uint64
}

// NewServer returns a server that will drive loop, a lone loop on a lone
// node until a Group or Join says otherwise. cfg must be valid.
func NewServer(loop reactor.Loop, cfg Config, m *Metrics) *Server {
	return newServer(loop, cfg, m, 0, 1)
}

// newServer returns the server of loop k of n.
func newServer(loop reactor.Loop, cfg Config, m *Metrics, k, n int) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = new(Metrics)
	}
	ids, err := shard.NewIDs(shard.Scheme{}, n, k)
	if err != nil {
		panic(err) // k < n by construction
	}
	s := &Server{
		cfg:     cfg,
		loop:    loop,
		log:     cfg.Logger,
		routes:  NewRoutes(ids),
		k:       k,
		n:       n,
		remote:  make(map[uint32]*remoteWait),
		asked:   make(map[int]*asked),
		waiting: make(map[int][]waiter),
		metrics: m,
		mem:     new(memReturn),
	}
	s.holds.init(n + 1)
	s.ctl.init(n + 1)
	s.lim.init(&cfg, n)
	s.sh = newShared(1)
	return s
}

// Metrics returns the server's counters.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Shutdown asks Run to stop gracefully: stop accepting and reading, write
// out queued output for up to ShutdownTimeout, close everything and return.
// It is safe to call from any goroutine, any number of times.
func (s *Server) Shutdown() {
	s.stop.Store(true)
	s.loop.Wake()
}

// Run handles events until a shutdown completes or the loop fails. It
// closes the loop before returning.
func (s *Server) Run() error {
	defer s.loop.Close()
	if s.x != nil {
		// A loop that left counts as quiet, so that the others do not
		// wait for it.
		defer s.x.g.state[s.k].quiet.Store(true)
	}
	s.start = time.Now()
	events := make([]reactor.Event, pollEvents)
	for {
		timeout := s.lameDuckWait(s.quietWait(s.timeout()))
		if s.again {
			timeout, s.again = 0, false
		}
		slept := false
		if s.x != nil && timeout != 0 {
			// Tell the other loops this one is about to block, so that
			// they ring it; stay awake if something arrived meanwhile.
			if slept = s.x.port.Sleep(); !slept {
				timeout = 0
			}
		}
		n, err := s.loop.Poll(events, timeout)
		if slept {
			s.x.port.Awake()
		}
		if err != nil {
			return err
		}
		s.now = time.Now()
		s.clock = instant(s.now.Sub(s.start)) + 1
		if n > 0 {
			s.quiet.stirred = true
		}
		for i := range events[:n] {
			ev := &events[i]
			switch ev.Kind {
			case reactor.Opened:
				s.opened(ev.Conn)
			case reactor.Received:
				s.received(ev.Conn, ev.Data)
			case reactor.Drained:
				s.drained(ev.Conn)
			case reactor.Closed:
				s.closed(ev.Conn, ev.Err)
			case reactor.Accepted:
				s.place(ev.Fd)
			}
			*ev = reactor.Event{}
		}
		if s.stop.Load() && !s.draining {
			s.beginDrain()
		}
		s.lameDuckPass()
		s.pass()
		tick := s.now.Sub(s.lastTick) >= s.tickEvery()
		if tick {
			s.lastTick = s.now
			s.tick()
		}
		s.checkMemory(tick)
		if r := s.connz.asked.Load(); r != nil {
			s.answerConnz(r)
		}
		s.publish()
		s.metrics.Passes.observe(time.Since(s.now))
		if s.draining && s.drainDone() {
			for p := range s.peers.all() {
				if p.conn != nil && p.id != 0 {
					s.counts.closed[ClosedShutdown]++
				}
			}
			s.publish()
			return nil
		}
	}
}

// pass is what a loop does each time round besides its own events: take
// what other loops and nodes sent here, route again what waited for a hop
// that has room now, send the control records that waited, and hand what
// this pass sent to the other loops and the bridge.
func (s *Server) pass() {
	if s.x != nil {
		s.x.take(s)
	}
	if s.link != nil {
		s.link.take(s)
	}
	if s.ctl.any > 0 {
		s.retryControl()
	}
	if s.x != nil {
		s.x.flush(s)
	}
	if s.link != nil {
		s.link.flush(s)
	}
}

// publish makes this pass's counts visible to exporters.
func (s *Server) publish() {
	var port *shard.Port
	if s.x != nil {
		port = s.x.port
	}
	s.counts.publish(s.metrics, port)
}

// pollEvents is how many events one Poll may return.
const pollEvents = 1024

// drainPoll is how often a loop looks again while shutting down: output
// draining is watched by polling the kernel (Conn.Unacked), not signalled.
const drainPoll = 10 * time.Millisecond

// timeout is how long Poll may wait: for ever when nothing is timed.
func (s *Server) timeout() time.Duration {
	if s.draining {
		return drainPoll
	}
	if s.routes.Len() == 0 && (s.x == nil || s.x.port.RingBytes() == 0) {
		// Idle: nothing is timed. A loop that still holds rings towards
		// other loops ticks on until Trim has released them (two ticks
		// once they are drained), then sleeps for good.
		return -1
	}
	return s.tickEvery()
}

// tickEvery is the resolution of write and frame timeouts.
func (s *Server) tickEvery() time.Duration {
	d := min(s.cfg.WriteTimeout, s.cfg.FrameTimeout) / 8
	return max(10*time.Millisecond, min(d, time.Second))
}

func (s *Server) peer(c *reactor.Conn) *peer {
	return s.peers.grow(c.Slot())
}

func (s *Server) opened(c *reactor.Conn) {
	p := s.peer(c)
	s.serial = max(s.serial+1, uint64(s.clock))
	*p = peer{conn: c, serial: s.serial, parser: NewParser(s.cfg.MaxFrame)}
	switch {
	case s.draining:
		s.counts.closed[ClosedShutdown]++
		c.Close()
		return
	case s.conns() >= s.cfg.MaxConns:
		s.counts.closed[ClosedOverLimit]++
		s.log.Debug("connection over max-conns closed", "max_conns", s.cfg.MaxConns)
		c.Close()
		return
	case !s.admit(c):
		c.Close()
		return
	}
	p.id = s.routes.Add(c.Slot())
	if s.x != nil {
		s.x.g.conns.Add(1)
	}
	var hello [4]byte
	binary.BigEndian.PutUint32(hello[:], p.id)
	c.Send(hello[:])
}

// conns is the number of open connections MaxConns limits: this loop's,
// or with several loops all of them.
func (s *Server) conns() int {
	if s.x != nil {
		return int(s.x.g.conns.Load())
	}
	return s.routes.Len()
}

func (s *Server) received(c *reactor.Conn, data []byte) {
	p := s.peers.at(c.Slot())
	if p.id == 0 {
		return // already on its way out
	}
	s.readFor(len(data))
	p.tally.bytesIn += uint64(len(data))
	if p.held {
		// Bytes read before the pause took effect go behind the held
		// ones, in order.
		s.holds.bytes[c.Slot()] = append(s.holds.bytes[c.Slot()], data...)
		return
	}
	s.feed(p, data)
}

func (s *Server) drained(c *reactor.Conn) {
	s.release(s.peers.at(c.Slot()))
}

// kick takes p out of the routing table and closes its connection.
func (s *Server) kick(p *peer, why CloseReason, msg string) {
	if p.id == 0 {
		return
	}
	s.log.Debug("closing connection", "id", p.id, "reason", msg)
	s.counts.closed[why]++
	s.forget(p)
	p.conn.Close()
}

// forget removes p from the routing table and frees its ID.
func (s *Server) forget(p *peer) {
	if p.id == 0 {
		return
	}
	s.routes.Remove(p.id)
	if s.x != nil {
		s.x.g.conns.Add(-1)
	}
	p.id = 0
	s.release(p)
}

func (s *Server) closed(c *reactor.Conn, err error) {
	p := s.peers.at(c.Slot())
	if p.id != 0 {
		if err == nil {
			s.counts.closed[ClosedByPeer]++
		} else if !errors.Is(err, reactor.ErrClosedLocally) {
			s.counts.closed[ClosedByError]++
		}
		s.log.Debug("connection closed", "id", p.id, "err", err)
	}
	s.quiet.gone += c.Written()
	s.forget(p)
	s.releaseAddr(c.Slot())
	if p.held {
		s.orphan(p)
	}
	// A closed slot keeps no partial-frame buffer (Reset would keep up to
	// 64 KiB for the next frame): opened gives the next connection a new
	// parser anyway.
	p.parser = Parser{}
	p.conn = nil
	p.serial = 0
	p.blocked = 0
}

// tick enforces the timed limits, renews and expires pauses across
// nodes, and gives back idle rings.
func (s *Server) tick() {
	if s.x != nil {
		s.x.trim()
	}
	if s.link != nil {
		s.renewNodePauses()
	}
	if len(s.remote) > 0 {
		s.expireLeases()
	}
	written := s.quiet.gone
	for p := range s.peers.all() {
		if p.conn == nil {
			continue
		}
		written += p.conn.Written()
		if p.id == 0 {
			continue
		}
		if p.partialSince != 0 && s.since(p.partialSince) >= s.cfg.FrameTimeout {
			s.kick(p, ClosedIncomplete, "frame incomplete for frame-timeout")
			continue
		}
		if p.conn.Pending() == 0 {
			p.stallSince = 0
			continue
		}
		// Progress is what the peer acknowledged, not what the kernel took:
		// the send buffer autotunes to megabytes and only takes more once a
		// good part of it has drained, so a slow but steady reader can leave
		// Written unchanged for longer than the timeout.
		if w := p.conn.Written() - uint64(p.conn.Unacked()); w != p.lastWritten || p.stallSince == 0 {
			p.lastWritten, p.stallSince = w, s.clock
		} else if s.since(p.stallSince) >= s.cfg.WriteTimeout {
			s.kick(p, ClosedStuck, "no write progress for write-timeout")
		}
	}
	s.noteWritten(written)
	s.watchQuiet() // last: it sees the output this walk counted
}

func (s *Server) beginDrain() {
	s.draining = true
	s.deadline = s.now.Add(s.cfg.ShutdownTimeout)
	s.loop.StopAccepting()
	for p := range s.peers.all() {
		if p.conn != nil {
			p.conn.PauseRead()
		}
	}
	if s.k == 0 { // one line for the process, not one per loop
		s.log.Info("shutting down: accepting and reading stopped, writing queued output", "timeout", s.cfg.ShutdownTimeout)
	}
}

// drainDone reports whether every queued byte has reached its peer, or
// time is up. "Reached" means acknowledged, not just handed to the kernel:
// closing a socket whose input was left unread (reads are paused) makes
// the kernel reset it and drop what the peer has not acknowledged.
func (s *Server) drainDone() bool {
	if !s.now.Before(s.deadline) {
		return true
	}
	if s.x == nil && s.holding() {
		return false // frames for other nodes still wait for the outbox
	}
	if s.x != nil && !s.x.g.allQuiet() {
		return false // some loop may still send frames here
	}
	for p := range s.peers.all() {
		if p.conn != nil && p.conn.Pending() > 0 {
			return false
		}
	}
	for p := range s.peers.all() {
		if p.conn != nil && p.conn.Unacked() > 0 {
			return false
		}
	}
	return true
}
