package relay_test

// The topologies the end-to-end table (e2e_test.go) runs every case in.
// A topology is a way to start servers and to dial clients to them; a
// case asks for clients by an index ("the client on endpoint 1") and the
// topology decides where that lands: always the one server with one
// loop, loop i of a server with several, node i of a cluster.

import (
	"fmt"
	"net"
	"testing"

	"github.com/ringrelay/ringrelay/cluster"
	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
	"github.com/ringrelay/ringrelay/relay/client"
	"github.com/ringrelay/ringrelay/shard"
)

// topology is one way to run the end-to-end cases.
type topology struct {
	name string
	// kind says which cases apply (a case lists the kinds it runs in).
	kind topoKind
	// shared: one set of servers serves every case, one case after
	// another, and check runs once they are all done. Otherwise each case
	// starts its own servers and the cases run in parallel.
	shared bool
	// tls: the clients speak TLS 1.3 to the relay's handshake pool and
	// record layer (tls_test.go).
	tls   bool
	start func(t *testing.T, backend reactor.Backend) *e2eEnv
}

// topoKind is a set of topologies, for the cases that do not apply in all.
type topoKind uint8

const (
	oneLoop topoKind = 1 << iota
	severalLoops
	severalNodes

	singleServer  = oneLoop | severalLoops
	allTopologies = oneLoop | severalLoops | severalNodes
)

// topologies are the topologies of TestEndToEnd, on every backend: each
// case starts one server of one loop or of four (loopCounts), or one
// server over TLS with one loop or two, or all cases share one cluster of
// three nodes over embedded NATS (a cluster takes seconds to start, and
// the bus is checked once after the cases).
var topologies = []topology{
	{name: "loops=1", kind: oneLoop, start: func(t *testing.T, b reactor.Backend) *e2eEnv { return serverEnv(t, b, loopCounts[0]) }},
	{name: fmt.Sprintf("loops=%d", loopCounts[1]), kind: severalLoops, start: func(t *testing.T, b reactor.Backend) *e2eEnv { return serverEnv(t, b, loopCounts[1]) }},
	{name: "tls/loops=1", kind: oneLoop, tls: true, start: func(t *testing.T, b reactor.Backend) *e2eEnv { return tlsEnv(t, b, 1) }},
	{name: "tls/loops=2", kind: severalLoops, tls: true, start: func(t *testing.T, b reactor.Backend) *e2eEnv { return tlsEnv(t, b, 2) }},
	{name: fmt.Sprintf("nodes=%d", clusterNodes), kind: severalNodes, shared: true, start: clusterEnv},
}

// e2eEnv is the servers one case (or, shared, every case) talks to.
type e2eEnv struct {
	// servers are the relays: one, or one per node of a cluster.
	servers []*testServer
	// nodes is the cluster, nil outside one.
	nodes []*relayNode
	// check, when set, runs after the last case of a shared env.
	check func(t *testing.T)
}

func serverEnv(t *testing.T, backend reactor.Backend, loops int) *e2eEnv {
	return &e2eEnv{servers: []*testServer{startServerN(t, backend, loops, nil)}}
}

func tlsEnv(t *testing.T, backend reactor.Backend, loops int) *e2eEnv {
	return &e2eEnv{servers: []*testServer{startServerTLS(t, backend, loops, tlsOptions{}, nil)}}
}

// clusterEnv starts three nodes, node 0 on backend and the others
// alternating, so every pair of engines meets over the bus; after the
// cases it checks that nothing they did cost a frame on the bus and that
// they did cross it.
func clusterEnv(t *testing.T, backend reactor.Backend) *e2eEnv {
	_, nodes := startNodesFrom(t, backend, nil, nil)
	e := &e2eEnv{nodes: nodes}
	for _, n := range nodes {
		e.servers = append(e.servers, n.testServer)
	}
	e.check = func(t *testing.T) {
		for _, n := range nodes {
			s := n.bridge.Snapshot()
			for d := range cluster.NumDrops {
				if v := s.Drops(d); v != 0 {
					t.Errorf("node %d dropped %d frames for %s", n.index, v, d)
				}
			}
			for r, v := range s.Rejected {
				if v != 0 {
					t.Errorf("node %d rejected %d batches for %s", n.index, v, cluster.Reject(r))
				}
			}
			if s.BatchesOut == 0 || s.BatchesIn == 0 {
				t.Errorf("node %d: %d batches out, %d in: the cases did not cross the bus", n.index, s.BatchesOut, s.BatchesIn)
			}
		}
	}
	return e
}

// server is the server of endpoint i: the one server, or node i mod the
// number of nodes.
func (e *e2eEnv) server(i int) *testServer { return e.servers[i%len(e.servers)] }

// addr is the address clients of endpoint i dial.
func (e *e2eEnv) addr(i int) string { return e.server(i).addr }

// dial connects a client to endpoint i. On a server of several loops the
// client lands on loop i mod loops, so endpoints 0, 1, 2 are on three
// different loops and every exchange between them crosses loops.
func (e *e2eEnv) dial(t testing.TB, i int) *client.Conn {
	t.Helper()
	ts := e.server(i)
	if len(e.servers) == 1 && ts.g.Loops() > 1 {
		return ts.dialOn(t, i%ts.g.Loops())
	}
	return ts.dial(t)
}

// rawDial opens a bare TCP connection to endpoint i.
func (e *e2eEnv) rawDial(i int) (net.Conn, error) { return net.Dial("tcp", e.addr(i)) }

// metrics sums the counters of every server.
func (e *e2eEnv) metrics() counters {
	var c counters
	for _, ts := range e.servers {
		for k := range ts.g.Loops() {
			c.add(ts.g.Server(k).Metrics())
		}
	}
	return c
}

// waitQuiet waits until no server has a connection left and each has
// counted every close (testServer.waitQuiet).
func (e *e2eEnv) waitQuiet(t testing.TB, what string) {
	t.Helper()
	for _, ts := range e.servers {
		ts.waitQuiet(t, what)
	}
}

// open is the number of connections open on every server.
func (e *e2eEnv) open() int64 {
	var n int64
	for _, ts := range e.servers {
		n += ts.open()
	}
	return n
}

// unknownAt is an ID that endpoint i's server would own (its node's, in a
// cluster) but that none of the given connections holds.
func (e *e2eEnv) unknownAt(i int, held ...uint32) uint32 {
	for r := uint32(0x5a5a5a5a); ; r += 0x01010101 {
		id := r
		if e.nodes != nil {
			id = shard.Scheme{Bits: clusterNodeBits, Self: e.nodes[i%len(e.nodes)].index}.Stamp(r)
		}
		free := id != 0
		for _, h := range held {
			free = free && id != h
		}
		if free {
			return id
		}
	}
}

// drops is one drop reason counted by endpoint i's server.
func (e *e2eEnv) drops(i int, r relay.DropReason) uint64 { return e.server(i).metrics().Dropped[r] }
