package relay_test

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/cluster"
	"github.com/ringrelay/ringrelay/internal/natstest"
	"github.com/ringrelay/ringrelay/internal/servertest"
	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
	"github.com/ringrelay/ringrelay/shard"
)

// The cluster tests run three relay nodes in this process, joined through
// three embedded NATS servers routed to one another (ports chosen by the
// kernel). Node k talks to NATS server k only: the servers do not
// advertise each other to clients, so stopping server k cuts node k off
// the bus until it is back, while the other two keep talking.

const (
	clusterNodes    = 3
	clusterNodeBits = 2
	clusterName     = "rrtest"
	// clusterMaxPayload holds one batch of a 1 MiB frame.
	clusterMaxPayload = 2 << 20
)

// relayNode is one ringrelay node: a relay server and its bridge.
type relayNode struct {
	*testServer
	index  int
	bridge *cluster.Bridge
}

// nodeConfig is the cluster settings of the tests: announcements every
// second, five of which may be missed (the NATS client pings at that
// interval and calls the connection stale after as many unanswered pings;
// shorter makes it call a busy connection stale under the race detector
// on a loaded machine, and the oracle counts every frame), a short
// startup wait, and a long SinkWait, so a loop slowed by the race
// detector does not make the bridge drop what the oracle counts on.
func nodeConfig(url string, node, maxFrame int) cluster.Config {
	cc := cluster.DefaultConfig()
	cc.Servers = []string{url}
	cc.Name = clusterName
	cc.Node, cc.NodeBits = node, clusterNodeBits
	cc.MaxFrame = maxFrame
	cc.AnnounceEvery = time.Second
	cc.AnnounceMissed = 5
	cc.StartupWait = 150 * time.Millisecond
	cc.ReconnectWait = 50 * time.Millisecond
	cc.SinkWait = 5 * time.Second
	cc.Logger = slog.New(slog.DiscardHandler)
	return cc
}

// nodeLoops is how many loops each node of the tests runs: one node with
// a single loop, the others with several, so frames cross loops and nodes
// in one hop.
var nodeLoops = []int{2, 1, 3}

// startNode runs a relay of loops loops joined to the cluster as node
// index, on NATS server url. The bridge starts before the loops serve, as
// in cmd/ringrelay.
func startNode(t testing.TB, backend reactor.Backend, loops, index int, url string, edit func(*relay.Config, *reactor.Config), editCluster func(*cluster.Config)) *relayNode {
	t.Helper()
	rc := relay.DefaultConfig()
	lc := reactor.DefaultConfig()
	lc.Backend = backend
	lc.Buffers = 256
	if edit != nil {
		edit(&rc, &lc)
	}
	n := &relayNode{index: index}
	gc := relay.GroupConfig{Loops: loops, Listen: "127.0.0.1:0", Reactor: lc, Relay: rc}
	gc.Join = func(servers []*relay.Server) error {
		links, err := relay.Join(servers, shard.Scheme{Bits: clusterNodeBits, Self: index})
		if err != nil {
			return err
		}
		cc := nodeConfig(url, index, rc.MaxFrame)
		if editCluster != nil {
			editCluster(&cc)
		}
		l := links.Links()
		if n.bridge, err = cluster.Start(cc, cluster.QueueLoops(l.Out, l.In, l.Owner, l.Wake)); err != nil {
			return err
		}
		links.Attach(n.bridge)
		return nil
	}
	g, err := relay.StartGroup(gc)
	if err != nil {
		t.Fatalf("start node %d (%s, %d loops): %v", index, backend, loops, err)
	}
	n.testServer = &testServer{addr: g.Addr().String(), g: g, done: make(chan error, 1)}
	go func() { n.done <- g.Wait() }()
	t.Cleanup(func() {
		n.stop(t)
		n.bridge.Close()
	})
	return n
}

// startNodes starts the bus and one node per NATS server, alternating
// the backends, and waits until every node sees every other as up and
// every server sees interest in every node's subject.
func startNodes(t testing.TB, edit func(*relay.Config, *reactor.Config), editCluster func(*cluster.Config)) (*natstest.Cluster, []*relayNode) {
	t.Helper()
	bus := natstest.Start(t, clusterNodes, natstest.Options{MaxPayload: clusterMaxPayload})
	var nodes []*relayNode
	for k := range clusterNodes {
		nodes = append(nodes, startNode(t, backends[k%len(backends)], nodeLoops[k], k, bus.URL(k), edit, editCluster))
	}
	waitMeshed(t, bus, nodes)
	return bus, nodes
}

// waitMeshed waits until every NATS server sees interest in every node's
// subject and every node sees every other as up.
func waitMeshed(t testing.TB, bus *natstest.Cluster, nodes []*relayNode) {
	t.Helper()
	var subjects []string
	for _, n := range nodes {
		subjects = append(subjects, fmt.Sprintf("%s.node.%d", clusterName, n.index))
	}
	bus.WaitInterest(subjects...)
	servertest.WaitFor(t, "every node up at every other", 10*time.Second, func() bool {
		for _, a := range nodes {
			for _, b := range nodes {
				if a != b && !a.bridge.Up(b.index) {
					return false
				}
			}
		}
		return true
	})
}

// drops sums one relay drop reason over the nodes.
func nodeDrops(n *relayNode, r relay.DropReason) uint64 { return n.metrics().Dropped[r] }
