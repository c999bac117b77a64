package relay

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ringrelay/ringrelay/shard"
)

// Frames between nodes: the hop towards other nodes is this loop's link
// to the bridge, the goroutine that alone talks to the bus (the cluster
// package, wired in by cmd/ringrelay through Bridge). The link is two
// shard.Queues, so the loop never calls the bus client and never waits for
// it: an outbox of frames and control records for other nodes, which the
// bridge drains, and an inbox of what other nodes sent, which the bridge
// fills. The outbox is a bounded hop like a loop's queue (hold.go); the
// bridge's report of room after a refusal is its room signal (Armed).
// Control records in the outbox go to every other node; those in the inbox
// came from one (control.go). See the cluster package for the bus side.

// Queue sizes of one loop's link to the bridge. The outbox holds what
// this loop sends across between two bridge passes; the inbox what the
// bridge delivers between two loop passes.
const (
	nodeOutbox = 1 << 20
	nodeInbox  = 1 << 20
	// nodeBudget is how many bytes of inbox a pass delivers before it
	// lets the loop look at its sockets again.
	nodeBudget = 256 << 10
	// nodeTrimEvery is how often a loop offers its outbox's ring back
	// (shard.Queue.Trim): one idle for a whole period is released.
	nodeTrimEvery = time.Second
)

// Bridge is what a loop needs of the process's link to the other nodes;
// *cluster.Bridge is one.
type Bridge interface {
	// Ring says the loop published frames into its outbox.
	Ring()
	// Room says loop k's inbox, which had refused a frame, has room.
	Room(k int)
}

// nodeLink is one loop's link to the bridge. It belongs to the loop's
// goroutine, except the queues' other ends, which belong to the bridge.
type nodeLink struct {
	out    *shard.Queue // this loop -> bridge
	in     *shard.Queue // bridge -> this loop
	bridge Bridge

	deliverFn func(uint32, []byte)
	trimmed   time.Time    // when out was last offered to Trim
	released  atomic.Int64 // bytes of outbox ring given back by Trim, for tests
}

// Links is what the bridge needs of a process's loops: one outbox and one
// inbox per loop, the loop that owns an ID of this node, and how to wake a
// loop from another goroutine.
type Links struct {
	Out   []*shard.Queue
	In    []*shard.Queue
	Owner func(id uint32) int
	Wake  func(k int)
}

// NodeLinks are the links of a process's loops to the bridge, made by
// Join.
type NodeLinks struct {
	servers []*Server
	links   Links
}

// noBridge stands in until Attach: nothing rings.
type noBridge struct{}

func (noBridge) Ring()    {}
func (noBridge) Room(int) {}

// Join readies servers (the loops of one process, in loop order) for a
// cluster: each gets an outbox and an inbox, and draws its IDs with this
// node's index in the top bits. Call it before the servers run, then
// start the bridge with Links and hand it to Attach.
func Join(servers []*Server, scheme shard.Scheme) (*NodeLinks, error) {
	if err := scheme.Validate(); err != nil {
		return nil, err
	}
	if scheme.Bits == 0 {
		return nil, errors.New("relay: a cluster needs node-bits of at least 1")
	}
	n := len(servers)
	rs := &NodeLinks{servers: servers}
	rs.links.Owner = func(id uint32) int { return shard.Owner(id, n) }
	rs.links.Wake = func(k int) { servers[k].loop.Wake() }
	for k, s := range servers {
		if s.link != nil {
			return nil, errors.New("relay: server already joined a cluster")
		}
		qc := shard.QueueConfig{Size: nodeOutbox, MaxPayload: s.cfg.MaxFrame + 1}
		out, err := shard.NewQueue(qc)
		if err != nil {
			return nil, fmt.Errorf("relay: outbox: %w", err)
		}
		qc.Size = nodeInbox
		in, err := shard.NewQueue(qc)
		if err != nil {
			return nil, fmt.Errorf("relay: inbox: %w", err)
		}
		// Every ID this loop hands out carries the node index, and is one
		// that this loop owns (shard.Owner hashes the whole ID, node bits
		// included); the table still checks it is not in use.
		ids, err := shard.NewIDs(scheme, n, k)
		if err != nil {
			return nil, err
		}
		s.routes.drawFrom(ids)
		s.scheme = scheme
		s.link = &nodeLink{out: out, in: in, bridge: noBridge{}, deliverFn: s.fromNode}
		rs.links.Out = append(rs.links.Out, out)
		rs.links.In = append(rs.links.In, in)
	}
	return rs, nil
}

// Links is what the bridge takes: the outboxes, inboxes, the owning loop
// of an ID and how to wake a loop.
func (rs *NodeLinks) Links() Links { return rs.links }

// Attach tells every loop how to reach the bridge. Call it after the
// bridge started and before the servers run.
func (rs *NodeLinks) Attach(b Bridge) {
	for _, s := range rs.servers {
		s.link.bridge = b
	}
}

// take delivers what came in from other nodes, and routes again what
// waited for room in the outbox.
func (r *nodeLink) take(s *Server) {
	if _, room := r.in.Drain(nodeBudget, r.deliverFn); room {
		r.bridge.Room(s.k)
	}
	if r.in.Pending() {
		s.again = true // more came in than one pass delivers: no waiting
	}
	if s.stalledOn(s.n) && !r.out.Armed() {
		s.writable(s.n)
	}
}

// flush hands the outbox to the bridge, and now and then gives its ring
// back.
func (r *nodeLink) flush(s *Server) {
	if r.out.Publish() {
		r.bridge.Ring()
	}
	if s.now.Sub(r.trimmed) >= nodeTrimEvery {
		// The outbox's ring (this loop is its producer) goes back once it
		// carried nothing for a whole period; the bridge trims the inbox.
		r.trimmed = s.now
		r.released.Add(int64(r.out.Trim()))
	}
}

// fromNode handles one record another node sent to this loop.
func (s *Server) fromNode(dest uint32, frame []byte) {
	if dest == shard.ControlDest {
		s.control(s.n, frame)
		return
	}
	slot, ok := s.routes.Lookup(dest)
	if !ok {
		s.counts.dropped[DropUnknownDest]++
		return
	}
	dp := s.peers.at(slot)
	if s.deliver(dp, frame, true) {
		s.ask(dp, s.n)
	}
}
