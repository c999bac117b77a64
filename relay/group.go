package relay

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/cpu"

	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/shard"
)

// Group is N relay servers, one per event loop, that together serve one
// listening address. Each loop owns its connections outright; they share
// only the shard mesh (one single-producer/single-consumer queue per pair
// of loops that talk) and a few atomics read outside the data path (each
// loop's connection count and shutdown progress). See cross.go for how a
// frame crosses from one loop to another.
//
// With one loop a Group is exactly one Server on one locked goroutine: no
// hand-off, no mesh, nothing on the data path that a lone Server lacks.
type Group struct {
	n       int
	addr    net.Addr
	loops   []reactor.Loop
	servers []*Server
	mesh    *shard.Mesh
	state   []loopState // per loop, written by that loop
	conns   atomic.Int64
	connzMu sync.Mutex // one connection list at a time (connz.go)
	done    chan error
	pending int // Runs not yet reaped by Wait
	err     error
}

// loopState is what one loop publishes for the others.
type loopState struct {
	// quiet: this loop is shutting down, will never send into the mesh
	// again, and every frame it sent was drained by its destination
	// (Server.silent). Set once, never cleared; a loop that left is
	// quiet too.
	quiet atomic.Bool
	// ringBytes: what the loop's rings towards other loops held at its
	// last tick (Port.RingBytes).
	ringBytes atomic.Int64
	_         cpu.CacheLinePad
}

// GroupConfig says how to open a Group's loops.
type GroupConfig struct {
	// Loops is the number of loops, at least 1.
	Loops int
	// Listen is the address loop 0 listens on. With several loops loop 0
	// is opened with HandOff and places every accepted connection on the
	// loop with the fewest; the others are opened without a listener.
	Listen string
	// Reactor configures every loop (HandOff is set by the Group).
	Reactor reactor.Config
	// Relay is the protocol configuration every loop enforces. MaxConns
	// counts the connections of all loops together.
	Relay Config
	// Pin, if set, is called on loop k's goroutine after it locked its OS
	// thread and before the loop is opened: the place to pin the thread
	// to a CPU (shard.PinThread).
	Pin func(k int) error
	// Metrics, if set, holds one Metrics per loop for the servers to
	// publish into; otherwise the Group makes its own.
	Metrics []*Metrics
	// QueueSize is the ring of each talking pair of loops, in bytes
	// (0: DefaultCrossQueue).
	QueueSize int
	// Join, if set, is called with the servers, in loop order, once they
	// are made and before any of them runs: the place to join a cluster
	// (relay.Join, cluster.Start). An error stops StartGroup.
	Join func(servers []*Server) error
}

// StartGroup opens the loops, each on its own goroutine which locks its
// OS thread, pins it (GroupConfig.Pin) and only then opens the loop, so
// that an io_uring instance is created on, and only ever entered from,
// the thread that runs it. Once every loop is open the servers start. If
// any loop fails to open, the others are closed and the error returned.
func StartGroup(gc GroupConfig) (*Group, error) {
	n := gc.Loops
	if n < 1 {
		return nil, fmt.Errorf("relay: %d loops: need at least one", n)
	}
	if err := gc.Relay.Validate(); err != nil {
		return nil, err
	}
	if gc.Metrics != nil && len(gc.Metrics) != n {
		return nil, fmt.Errorf("relay: %d metrics for %d loops", len(gc.Metrics), n)
	}
	g := &Group{
		n:       n,
		loops:   make([]reactor.Loop, n),
		servers: make([]*Server, n),
		state:   make([]loopState, n),
		done:    make(chan error, n),
	}
	type opened struct {
		k   int
		err error
	}
	ready := make(chan opened, n)
	start := make(chan struct{}) // closed once the servers are made, or on failure
	abort := false               // set before start is closed
	// fail lets every opened loop close itself and returns err.
	fail := func(err error) (*Group, error) {
		abort = true
		close(start)
		return nil, err
	}
	for k := range n {
		go func() {
			// Never unlocked: the thread ends with the goroutine, so a
			// pinned thread is not handed back to other goroutines.
			runtime.LockOSThread()
			if gc.Pin != nil {
				if err := gc.Pin(k); err != nil {
					ready <- opened{k, fmt.Errorf("loop %d: %w", k, err)}
					return
				}
			}
			lc := gc.Reactor
			lc.HandOff = n > 1 && k == 0
			addr := gc.Listen
			if k > 0 {
				addr = ""
			}
			loop, err := reactor.Open(addr, lc)
			if err != nil {
				ready <- opened{k, fmt.Errorf("loop %d: %w", k, err)}
				return
			}
			g.loops[k] = loop
			ready <- opened{k, nil}
			<-start
			if abort {
				loop.Close()
				return
			}
			g.done <- g.servers[k].Run()
		}()
	}
	var errs []error
	for range n {
		if o := <-ready; o.err != nil {
			errs = append(errs, o.err)
		}
	}
	if len(errs) > 0 {
		return fail(errors.Join(errs...))
	}
	g.addr = g.loops[0].Addr()

	ms := gc.Metrics
	if ms == nil {
		ms = make([]*Metrics, n)
		for k := range ms {
			ms[k] = new(Metrics)
		}
	}
	if n > 1 {
		bells := make([]shard.Doorbell, n)
		for k, l := range g.loops {
			bells[k] = loopBell{l}
		}
		qsize := gc.QueueSize
		if qsize == 0 {
			qsize = DefaultCrossQueue
		}
		// The largest record is a whole frame: payload, NUL, and no
		// header (the destination travels in the record's own header).
		mesh, err := shard.NewMesh(shard.QueueConfig{Size: qsize, MaxPayload: gc.Relay.MaxFrame + 1}, bells)
		if err != nil {
			return fail(err)
		}
		g.mesh = mesh
	}
	mem := new(memReturn) // one process-level step for all loops (idle.go)
	sh := newShared(n)
	for k := range n {
		s := newServer(g.loops[k], gc.Relay, ms[k], k, n)
		s.mem = mem
		s.sh = sh
		if n > 1 {
			s.x = newCross(g, s)
		}
		g.servers[k] = s
	}
	if gc.Join != nil {
		if err := gc.Join(g.servers); err != nil {
			return fail(err)
		}
	}
	g.pending = n
	close(start)
	return g, nil
}

// DefaultCrossQueue is the ring between two loops that talk. One pass of
// a busy loop can read several hundred kilobytes of small frames for
// another loop (1000 connections with 16 frames of 64 bytes in flight:
// about 1 MiB); a ring that holds a whole pass keeps senders from being
// held back, paused and resumed at every pass. Measured with two loops on
// one CPU and every frame crossing: 64 KiB rings held a sender back every
// 40 frames and cost about 0.5x the frames/s of one loop; 256 KiB still
// every 45; 1 MiB never, 0.7-0.8x. It is also what the default
// -max-frame makes a ring grow to while a maximum frame crosses. Idle
// rings are released on the tick, also by a loop whose last connection
// left (it ticks until they are gone, then sleeps).
const DefaultCrossQueue = 1 << 20

// loopBell wakes a loop from any goroutine (Mesh.Wake).
type loopBell struct{ l reactor.Loop }

func (b loopBell) Ring() { b.l.Wake() }

// loopRinger is how one loop rings another: RingLoop, on the ringing
// loop's goroutine, which on io_uring with MSG_RING rides that loop's
// next submit.
type loopRinger struct {
	self  reactor.Loop
	loops []reactor.Loop
}

func (r loopRinger) Ring(dst int) { r.self.RingLoop(r.loops[dst]) }

// Loops is the number of loops.
func (g *Group) Loops() int { return g.n }

// Addr is the address the group listens on.
func (g *Group) Addr() net.Addr { return g.addr }

// Loop returns loop k, for its Backend, Features and Stats.
func (g *Group) Loop(k int) reactor.Loop { return g.loops[k] }

// Server returns loop k's server, for its Metrics.
func (g *Group) Server(k int) *Server { return g.servers[k] }

// RingBytes is the memory loop k's rings towards the other loops held at
// its last tick. A loop ticks while it has connections, and after its
// last one left until Trim released its rings, so an idle loop holds none
// once it sleeps. Zero with one loop.
func (g *Group) RingBytes(k int) int64 { return g.state[k].ringBytes.Load() }

// Shutdown asks every loop to stop gracefully (see Server.Shutdown). Safe
// from any goroutine, any number of times.
func (g *Group) Shutdown() {
	for _, s := range g.servers {
		s.Shutdown()
	}
}

// Wait waits until every loop's Run returned, and returns the first error.
// If a loop fails, the others are shut down.
func (g *Group) Wait() error {
	for ; g.pending > 0; g.pending-- {
		if err := <-g.done; err != nil {
			if g.err == nil {
				g.err = err
			}
			g.Shutdown()
		}
	}
	return g.err
}

// allQuiet reports whether every loop is quiet. Each flag only ever goes
// from false to true, so reading them one after another is exact: if all
// read true, all were true at the last read, no loop sends again, and
// every queue is empty for good.
func (g *Group) allQuiet() bool {
	for k := range g.state {
		if !g.state[k].quiet.Load() {
			return false
		}
	}
	return true
}
