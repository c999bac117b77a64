package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/natstest"
	"github.com/ringrelay/ringrelay/internal/servertest"
	"github.com/ringrelay/ringrelay/shard"
)

// waitUp waits until every node sees every other as up, and every server
// sees interest in every node's subject.
func waitUp(t *testing.T, cl *natstest.Cluster, nodes ...*testNode) {
	t.Helper()
	var subjects []string
	for _, n := range nodes {
		subjects = append(subjects, fmt.Sprintf("rrtest.node.%d", n.node))
	}
	cl.WaitInterest(subjects...)
	servertest.WaitFor(t, "every node up at every other", eventWait, func() bool {
		for _, a := range nodes {
			for _, b := range nodes {
				if a != b && !a.b.Up(b.node) {
					return false
				}
			}
		}
		return true
	})
}

func payload(src, loop int, dest uint32, seq int) string {
	head := fmt.Sprintf("s%d k%d d%08x n%d|", src, loop, dest, seq)
	return head + strings.Repeat(string(rune('a'+seq%26)), seq%300)
}

// checkStreams checks that every frame node got is whole, in the inbox of
// the loop that owns its ID, and that per (sender node, sender loop, dest)
// the sequence numbers run 0, 1, 2... with no gap. It returns the frames
// counted per sender node.
func checkStreams(t *testing.T, n *testNode) map[int]int {
	t.Helper()
	next := map[string]int{}
	from := map[int]int{}
	for k, in := range n.in {
		for _, f := range in.take() {
			if shard.Owner(f.dest, testLoops) != k || (shard.Scheme{Bits: 2}).NodeOf(f.dest) != n.node {
				t.Fatalf("node %d loop %d got a frame for %08x", n.node, k, f.dest)
			}
			if len(f.data) == 0 || f.data[len(f.data)-1] != 0 {
				t.Fatalf("frame without its NUL: %q", f.data)
			}
			var src, loop, seq int
			var dest uint32
			if _, err := fmt.Sscanf(string(f.data), "s%d k%d d%08x n%d|", &src, &loop, &dest, &seq); err != nil {
				t.Fatalf("frame %q: %v", f.data, err)
			}
			if dest != f.dest || string(f.data[:len(f.data)-1]) != payload(src, loop, dest, seq) {
				t.Fatalf("frame for %08x damaged: %q", f.dest, f.data)
			}
			key := fmt.Sprintf("%d/%d/%08x", src, loop, dest)
			if seq != next[key] {
				t.Fatalf("stream %s: got #%d, want #%d", key, seq, next[key])
			}
			next[key]++
			from[src]++
		}
	}
	return from
}

func TestBridgeExchange(t *testing.T) {
	cl := natstest.Start(t, 3, natstest.Options{})
	var nodes []*testNode
	for i := 0; i < 3; i++ {
		nodes = append(nodes, startTestNode(t, steadyConfig(i, cl.URL(i))))
	}
	waitUp(t, cl, nodes...)

	const perStream = 200
	dests := [][]uint32{ids(0, 3), ids(1, 3), ids(2, 3)}
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; seq < perStream; seq++ {
				for k := 0; k < testLoops; k++ {
					for d, ds := range dests {
						if d == n.node {
							continue
						}
						for _, dest := range ds {
							n.out[k].push(dest, payload(n.node, k, dest, seq))
						}
					}
				}
				if seq%7 == 0 {
					n.b.Ring()
				}
			}
			n.b.Ring()
		}()
	}
	wg.Wait()
	want := int64(2 * testLoops * 3 * perStream)
	logOnFailure(t, nodes...)
	for _, n := range nodes {
		servertest.WaitFor(t, fmt.Sprintf("node %d to receive %d frames", n.node, want), eventWait, func() bool {
			return n.received() >= want
		})
	}
	for _, n := range nodes {
		from := checkStreams(t, n)
		s := n.b.Snapshot()
		for _, m := range nodes {
			if m == n {
				continue
			}
			if from[m.node] != testLoops*3*perStream {
				t.Fatalf("node %d got %d frames from node %d, want %d", n.node, from[m.node], m.node, testLoops*3*perStream)
			}
			p, _ := s.Peer(m.node)
			if !p.Up || p.FramesIn != uint64(testLoops*3*perStream) || p.FramesOut != uint64(testLoops*3*perStream) {
				t.Fatalf("node %d's counters for node %d: %+v", n.node, m.node, p)
			}
			for d, v := range p.Drops {
				if v != 0 {
					t.Fatalf("node %d dropped %d frames for node %d: %s", n.node, v, m.node, Drop(d))
				}
			}
		}
		if !s.BusConnected || !s.Serving || s.BatchesOut == 0 || s.BatchFramesOut != uint64(want) {
			t.Fatalf("node %d snapshot: %+v", n.node, s)
		}
	}
}

func TestBridgeSplitsBatches(t *testing.T) {
	const maxPayload = 256 << 10
	cl := natstest.Start(t, 3, natstest.Options{MaxPayload: maxPayload})

	// A max-frame that cannot fit under the servers' max_payload is refused.
	big := testConfig(0, cl.URL(0))
	big.MaxFrame = 1 << 20
	if err := newTestNode(0, 0).start(big); err == nil || !strings.Contains(err.Error(), "max_payload is 256KiB") {
		t.Fatalf("Start with max-frame over max_payload: %v", err)
	}

	a := startTestNode(t, steadyConfig(0, cl.URL(0)))
	b := startTestNode(t, steadyConfig(1, cl.URL(2)))
	waitUp(t, cl, a, b)
	dest := ids(1, 1)[0]
	const frames = 100 // 100 frames of about 60 KiB: over 20 batches
	for i := 0; i < frames; i++ {
		pl := payload(0, 0, dest, i)
		a.out[0].push(dest, pl+strings.Repeat("z", 60<<10-len(pl)))
	}
	a.b.Ring()
	logOnFailure(t, a, b)
	servertest.WaitFor(t, "100 big frames", eventWait, func() bool { return b.received() >= frames })
	var got []frame
	for _, in := range b.in {
		got = append(got, in.take()...)
	}
	for i, f := range got {
		if len(f.data) != 60<<10+1 || !bytes.HasPrefix(f.data, []byte(payload(0, 0, dest, i)+"z")) {
			t.Fatalf("frame %d: %d bytes, %q...", i, len(f.data), f.data[:40])
		}
	}
	s := a.b.Snapshot()
	if s.BatchMaxBytes > maxPayload || s.BatchesOut < frames*(60<<10)/maxPayload {
		t.Fatalf("%d batches, largest %d bytes; want over %d, none over %d", s.BatchesOut, s.BatchMaxBytes, frames*(60<<10)/maxPayload, maxPayload)
	}
}

func TestBridgeOutboundDrops(t *testing.T) {
	cl := natstest.Start(t, 3, natstest.Options{})
	a := startTestNode(t, steadyConfig(0, cl.URL(0)))
	b := startTestNode(t, steadyConfig(1, cl.URL(1)))
	waitUp(t, cl, a, b)

	for _, d := range ids(3, 5) { // node 3 never started
		a.send(0, d, "to nobody")
	}
	a.send(1, ids(0, 1)[0], "to this node")          // the loop should have kept it
	a.out[0].pushRaw(ids(1, 1)[0], []byte("no NUL")) // nor can a frame lack its NUL
	a.out[1].room.Store(true)                        // loop 1 had found its outbox full
	a.send(1, ids(1, 1)[0], "fine")
	servertest.WaitFor(t, "the good frame", eventWait, func() bool { return b.received() == 1 })
	if a.wakes[1].Load() != 1 || a.wakes[0].Load() != 0 {
		t.Fatalf("wakes %d, %d; want loop 1 woken once for room, loop 0 never", a.wakes[0].Load(), a.wakes[1].Load())
	}
	s := a.b.Snapshot()
	p3, _ := s.Peer(3)
	p0, _ := s.Peer(0)
	p1, _ := s.Peer(1)
	if p3.Up || p3.Drops[DropNodeDown] != 5 || p0.Drops[DropLocal] != 1 || p1.Drops[DropMalformed] != 1 || p1.FramesOut != 1 {
		t.Fatalf("drops: node 3 %+v, node 0 %+v, node 1 %+v", p3, p0, p1)
	}
}

func TestBridgeDuplicateNode(t *testing.T) {
	cl := natstest.Start(t, 3, natstest.Options{})
	a := startTestNode(t, testConfig(1, cl.URL(0)))

	// A second process with node 1 on another server refuses to start; the
	// first keeps serving.
	dup := newTestNode(1, 0)
	err := dup.start(testConfig(1, cl.URL(2)))
	if !errors.Is(err, ErrDuplicateNode) {
		t.Fatalf("second node 1: %v, want ErrDuplicateNode", err)
	}
	if a.b.Err() != nil {
		t.Fatalf("first node 1 stopped: %v", a.b.Err())
	}

	// Two processes started together with node 2: never both serve. The
	// later one hears the earlier one's announcement and refuses; the
	// earlier one refuses too if the later one's came within its window.
	errs := make([]error, 2)
	starters := []*testNode{newTestNode(2, 0), newTestNode(2, 0)}
	var wg sync.WaitGroup
	for i, n := range starters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A startup wait that a loaded test run cannot outlast:
			// each must hear the other's announcement within it.
			cfg := testConfig(2, cl.URL(i+1))
			cfg.StartupWait = 2 * time.Second
			errs[i] = n.start(cfg)
		}()
	}
	wg.Wait()
	for i, n := range starters {
		if errs[i] == nil {
			defer n.b.Close()
		} else if !errors.Is(errs[i], ErrDuplicateNode) {
			t.Fatalf("simultaneous node 2, process %d: %v", i, errs[i])
		}
	}
	if errs[0] == nil && errs[1] == nil {
		t.Fatal("two processes serve node 2")
	}

	// Another instance announcing node 1 as serving (both sides of a bus
	// outage started): the serving one stops, says why, and sends nothing.
	b := startTestNode(t, testConfig(0, cl.URL(1)))
	waitUp(t, cl, a, b)
	raw := rawConn(t, cl.URL(2))
	ann := announcement{node: 1, state: stateServing, instance: 42}
	if err := raw.Publish("rrtest.nodes", ann.encode()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.b.Failed():
	case <-time.After(eventWait):
		t.Fatal("node 1 kept serving beside a duplicate")
	}
	if !errors.Is(a.b.Err(), ErrDuplicateNode) || !strings.Contains(a.b.Err().Error(), "000000000000002a") {
		t.Fatalf("Err() = %v", a.b.Err())
	}
	a.send(0, ids(0, 1)[0], "after the stop") // out: dropped on node 1
	for i := 0; i < 3; i++ {
		b.send(0, ids(1, 1)[0], "to a stopped node") // in: dropped on node 1
	}
	servertest.WaitFor(t, "the stopped drops", eventWait, func() bool {
		p, _ := a.b.Snapshot().Peer(0)
		return p.Drops[DropStopped] == 4
	})
	if a.received() != 0 || b.received() != 0 {
		t.Fatalf("frames crossed a stopped node: %d in, %d out", a.received(), b.received())
	}
	if a.b.Snapshot().Serving || a.log.count("stopped serving") != 1 {
		t.Fatalf("snapshot still serving, or log:\n%s", a.log)
	}
}

// TestBridgeBusOutage: a node whose NATS server stops drops (and counts)
// what it sends meanwhile, the others see it down and carry on, and after
// the server is back everything flows again, in order, after exactly one
// disconnect. steadyConfig: at 100 ms pings a loaded run called a healthy
// link stale a second time.
func TestBridgeBusOutage(t *testing.T) {
	cl := natstest.Start(t, 3, natstest.Options{})
	var nodes []*testNode
	for i := 0; i < 3; i++ {
		nodes = append(nodes, startTestNode(t, steadyConfig(i, cl.URL(i))))
	}
	n0, n1, n2 := nodes[0], nodes[1], nodes[2]
	waitUp(t, cl, nodes...)
	to0, to1, to2 := ids(0, 1)[0], ids(1, 1)[0], ids(2, 1)[0]

	seq := map[string]int{}
	exchange := func(from *testNode, dest uint32, to *testNode, count int) {
		t.Helper()
		before := to.received()
		for i := 0; i < count; i++ {
			key := fmt.Sprintf("%d>%08x", from.node, dest)
			from.send(0, dest, payload(from.node, 0, dest, seq[key]))
			seq[key]++
		}
		servertest.WaitFor(t, fmt.Sprintf("%d frames from node %d to node %d", count, from.node, to.node), eventWait,
			func() bool { return to.received() == before+int64(count) })
	}
	exchange(n0, to2, n2, 20)
	exchange(n2, to0, n0, 20)

	cl.Stop(2)
	servertest.WaitFor(t, "node 2 to see the bus down", eventWait, func() bool { return !n2.b.Snapshot().BusConnected })
	for i := 0; i < 10; i++ {
		n2.send(0, to0, "lost")
	}
	servertest.WaitFor(t, "node 2's bus-down drops", eventWait, func() bool {
		p, _ := n2.b.Snapshot().Peer(0)
		return p.Drops[DropBusDown] == 10
	})
	servertest.WaitFor(t, "node 0 to see node 2 down", eventWait, func() bool { return !n0.b.Up(2) })
	for i := 0; i < 10; i++ {
		n0.send(0, to2, "lost")
	}
	servertest.WaitFor(t, "node 0's node-down drops", eventWait, func() bool {
		p, _ := n0.b.Snapshot().Peer(2)
		return p.Drops[DropNodeDown] == 10
	})
	exchange(n0, to1, n1, 20) // the rest of the cluster carries on
	exchange(n1, to0, n0, 20)

	cl.Restart(2)
	waitUp(t, cl, nodes...)
	exchange(n0, to2, n2, 50)
	exchange(n2, to0, n0, 50)
	exchange(n2, to1, n1, 50)
	for _, n := range nodes {
		checkStreams(t, n) // every stream kept its order; nothing arrived twice
	}

	if err := n2.b.Err(); err != nil {
		t.Fatalf("node 2 stopped: %v", err)
	}
	s := n2.b.Snapshot()
	if !s.BusConnected || s.Disconnects != 1 {
		t.Fatalf("node 2 after the outage: %+v", s)
	}
	if lost, back := n2.log.count("lost the NATS connection"), n2.log.count("NATS connection back"); lost != 1 || back != 1 {
		t.Fatalf("node 2 logged %d disconnects and %d reconnects, want 1 and 1:\n%s", lost, back, n2.log)
	}
}

// hostile builds a batch from node 0 whose bytes the caller then spoils.
func hostile(frames ...frame) []byte { return encode(0, frames...) }

func TestBridgeHostileBatches(t *testing.T) {
	cl := natstest.Start(t, 3, natstest.Options{})
	cfg := testConfig(1, cl.URL(0))
	cfg.MaxBatch = 128 << 10
	n := startTestNode(t, cfg)
	cl.WaitInterest("rrtest.node.1")
	raw := rawConn(t, cl.URL(2))

	mine := ids(1, 3)
	good := hostile(frame{mine[0], []byte("one\x00")}, frame{mine[1], []byte("two\x00")}, frame{mine[2], []byte("three\x00")})
	cases := []struct {
		b    []byte
		want Reject
	}{
		{[]byte("GET / HTTP/1.1\r\n\r\n"), RejectMagic},
		{good[:len(good)-3], RejectTruncated},
		{hostile(frame{ids(2, 1)[0], []byte("x\x00")}), RejectWrongNode},
		{hostile(frame{mine[0], append(bytes.Repeat([]byte{'o'}, 64<<10+1), 0)}), RejectFrameSize},
		{encode(1, frame{mine[0], []byte("from myself\x00")}), RejectSource},
		{hostile(frame{mine[0], append(bytes.Repeat([]byte{'o'}, 60<<10), 0)}, frame{mine[1], append(bytes.Repeat([]byte{'o'}, 60<<10), 0)},
			frame{mine[2], append(bytes.Repeat([]byte{'o'}, 60<<10), 0)}), RejectBatchSize},
		{append(bytes.Clone(good), 'x'), RejectCount},
	}
	for _, c := range cases {
		if err := raw.Publish("rrtest.node.1", c.b); err != nil {
			t.Fatal(err)
		}
	}
	if err := raw.Publish("rrtest.node.1", good); err != nil {
		t.Fatal(err)
	}
	// The batch is counted before its frames reach the loops' inboxes.
	servertest.WaitFor(t, "the good batch's frames", eventWait, func() bool { return n.b.Snapshot().BatchesIn == 1 && n.received() == 3 })
	s := n.b.Snapshot()
	var want [NumRejects]uint64
	for _, c := range cases {
		want[c.want]++
	}
	if s.Rejected != want {
		t.Fatalf("rejected %v, want %v", s.Rejected, want)
	}
	var got []string
	for _, in := range n.in {
		for _, f := range in.take() {
			got = append(got, string(f.data))
		}
	}
	if len(got) != 3 || n.received() != 3 {
		t.Fatalf("delivered %q, want exactly the good batch's 3 frames", got)
	}
	if p, _ := s.Peer(0); p.FramesIn != 3 {
		t.Fatalf("frames in from node 0: %d", p.FramesIn)
	}
	// Garbage on the announcement subject is counted and changes nothing.
	if err := raw.Publish("rrtest.nodes", []byte("RRA\x01\x00\x09\x02\x00\x00\x00\x00\x00\x00\x00\x00\x01")); err != nil {
		t.Fatal(err)
	}
	servertest.WaitFor(t, "the bad announcement", eventWait, func() bool { return n.b.Snapshot().BadAnnouncements == 1 })
}

func TestBridgeSinkFull(t *testing.T) {
	cl := natstest.Start(t, 3, natstest.Options{})
	a := startTestNode(t, steadyConfig(0, cl.URL(0)))
	b := newTestNode(1, 10) // inboxes hold 10 frames, and nobody takes them
	if err := b.start(steadyConfig(1, cl.URL(1))); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.b.Close() })
	waitUp(t, cl, a, b)

	var onLoop0 []uint32
	for _, id := range ids(1, 40) {
		if shard.Owner(id, testLoops) == 0 {
			onLoop0 = append(onLoop0, id)
		}
	}
	dest := onLoop0[0]
	for i := 0; i < 50; i++ {
		a.out[0].push(dest, payload(0, 0, dest, i))
	}
	a.b.Ring()
	servertest.WaitFor(t, "50 frames delivered or dropped", eventWait, func() bool {
		p, _ := b.b.Snapshot().Peer(0)
		return p.FramesIn+p.Drops[DropSinkFull] == 50
	})
	p, _ := b.b.Snapshot().Peer(0)
	if p.FramesIn != 10 || p.Drops[DropSinkFull] != 40 || b.wakes[0].Load() == 0 {
		t.Fatalf("in %d, sink-full drops %d, wakes %d; want 10, 40, some", p.FramesIn, p.Drops[DropSinkFull], b.wakes[0].Load())
	}
	checkStreams(t, b) // the 10 that fit are the first 10, in order
}

func TestBridgeSlowConsumer(t *testing.T) {
	cl := natstest.Start(t, 3, natstest.Options{})
	a := startTestNode(t, steadyConfig(0, cl.URL(0)))
	cfg := steadyConfig(1, cl.URL(1))
	cfg.PendingMsgs = 2
	cfg.SinkWait = 200 * time.Millisecond
	b := newTestNode(1, 1) // room for one frame per loop, nobody takes it
	if err := b.start(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.b.Close() })
	waitUp(t, cl, a, b)

	dest := ids(1, 1)[0]
	const batches = 20
	for i := 0; i < batches; i++ { // one frame per batch
		a.send(0, dest, payload(0, 0, dest, i))
		servertest.WaitFor(t, "a batch out", eventWait, func() bool { return a.b.Snapshot().BatchesOut == uint64(i+1) })
	}
	servertest.WaitFor(t, "every batch delivered, or dropped and counted", eventWait, func() bool {
		s := b.b.Snapshot()
		p, _ := s.Peer(0)
		return p.FramesIn+p.Drops[DropSinkFull]+s.SlowConsumer == batches
	})
	s := b.b.Snapshot()
	p, _ := s.Peer(0)
	if p.FramesIn != 1 || p.Drops[DropSinkFull] == 0 || s.SlowConsumer == 0 {
		t.Fatalf("in %d, sink-full %d, slow consumer %d: want 1, some, some", p.FramesIn, p.Drops[DropSinkFull], s.SlowConsumer)
	}
}

func TestBridgeStartFailures(t *testing.T) {
	cfg := testConfig(0, "nats://127.0.0.1:1")
	if err := newTestNode(0, 0).start(cfg); err == nil || !strings.Contains(err.Error(), "connect to nats://127.0.0.1:1") {
		t.Fatalf("Start with no server: %v", err)
	}
	if err := newTestNode(0, 0).start(Config{}); err == nil || !strings.Contains(err.Error(), "no NATS server") {
		t.Fatalf("Start with an empty config: %v", err)
	}
	if _, err := Start(testConfig(0, "nats://127.0.0.1:1"), Loops{}); err == nil || !strings.Contains(err.Error(), "as many Sources as Sinks") {
		t.Fatalf("Start without loops: %v", err)
	}
}

func TestBridgeUserPassword(t *testing.T) {
	cl := natstest.Start(t, 1, natstest.Options{User: "relay", Password: "s3cret"})
	cfg := testConfig(0, cl.URL(0))
	cfg.User, cfg.Password = "relay", "wrong"
	if err := newTestNode(0, 0).start(cfg); err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("wrong password: %v", err)
	}
	cfg.Password = "s3cret"
	n := startTestNode(t, cfg)
	if !n.b.Snapshot().BusConnected {
		t.Fatal("not connected with the right password")
	}
}

// Frames still in the loops' outboxes when Close runs are published
// before the connection closes; none is lost. The bridge is never rung
// and its tick is seconds away, so only Close's drain can send them.
func TestBridgeCloseDrainsOutboxes(t *testing.T) {
	cl := natstest.Start(t, 1, natstest.Options{})
	cfg := func(node int) Config {
		c := testConfig(node, cl.URL(0))
		c.AnnounceEvery = 4 * time.Second
		c.DrainBudget = 4 << 10
		return c
	}
	a := startTestNode(t, cfg(0))
	b := startTestNode(t, cfg(1))
	waitUp(t, cl, a, b)

	dest := ids(1, 2)
	const perStream = 300 // about 25 KiB per outbox: several passes of DrainBudget
	for seq := 0; seq < perStream; seq++ {
		for k := 0; k < testLoops; k++ {
			a.out[k].push(dest[k], payload(0, k, dest[k], seq))
		}
	}
	a.b.Close()
	want := int64(testLoops * perStream)
	servertest.WaitFor(t, fmt.Sprintf("%d frames sent before Close", want), eventWait, func() bool { return b.received() >= want })
	from := checkStreams(t, b)
	if from[0] != int(want) || b.received() != want {
		t.Fatalf("got %d frames (%d counted), want %d", from[0], b.received(), want)
	}
	for k := range a.out {
		if a.out[k].len() != 0 {
			t.Fatalf("outbox %d still holds %d frames", k, a.out[k].len())
		}
	}
	p, _ := a.b.Snapshot().Peer(1)
	if p.FramesOut != uint64(want) || p.Drops[DropShutdown] != 0 {
		t.Fatalf("node 0's counters for node 1: %+v", p)
	}
	if n := a.wakes[0].Load() + a.wakes[1].Load(); n != 0 {
		t.Fatalf("Close woke the loops %d times", n)
	}
}

// With no time left, Close publishes one pass and drops the rest, counted.
func TestBridgeCloseDrainTimeout(t *testing.T) {
	cl := natstest.Start(t, 1, natstest.Options{})
	c := testConfig(0, cl.URL(0))
	c.AnnounceEvery = 4 * time.Second
	c.DrainBudget = 1 << 10
	c.ShutdownTimeout = 0
	a := startTestNode(t, c)
	c.Node = 1
	b := startTestNode(t, c)
	waitUp(t, cl, a, b)
	dest := ids(1, 1)[0]
	const frames = 200
	for seq := 0; seq < frames; seq++ {
		a.out[0].push(dest, payload(0, 0, dest, seq))
	}
	a.b.Close()
	p, _ := a.b.Snapshot().Peer(1)
	if p.FramesOut == 0 || p.Drops[DropShutdown] == 0 || p.FramesOut+p.Drops[DropShutdown] != frames || a.out[0].len() != 0 {
		t.Fatalf("published %d, dropped %d at shutdown, %d left; want all %d accounted for, some of each",
			p.FramesOut, p.Drops[DropShutdown], a.out[0].len(), frames)
	}
}

// trimQueue is a loop inbox as the relay has one (a shard.Queue) that
// counts what Trim gave back.
type trimQueue struct {
	*shard.Queue
	freed atomic.Int64
}

func (q *trimQueue) Trim() int {
	n := q.Queue.Trim()
	q.freed.Add(int64(n))
	return n
}

// The bridge trims the loops' inboxes on its tick: a ring that carried a
// batch and then stayed idle is given back.
func TestBridgeTrimsIdleInboxes(t *testing.T) {
	cl := natstest.Start(t, 1, natstest.Options{})
	a := startTestNode(t, steadyConfig(0, cl.URL(0)))

	var qs []*trimQueue
	l := Loops{Owner: func(id uint32) int { return shard.Owner(id, testLoops) }, Wake: func(int) {}}
	for k := 0; k < testLoops; k++ {
		q, err := shard.NewQueue(shard.QueueConfig{Size: 64 << 10, MaxPayload: 64<<10 + 1})
		if err != nil {
			t.Fatal(err)
		}
		qs = append(qs, &trimQueue{Queue: q})
		l.Out = append(l.Out, &outbox{})
		l.In = append(l.In, qs[k])
	}
	c := steadyConfig(1, cl.URL(0))
	c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := Start(c, l)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cl.WaitInterest("rrtest.node.0", "rrtest.node.1")
	servertest.WaitFor(t, "node 1 up at node 0", eventWait, func() bool { return a.b.Up(1) })

	dest := ids(1, 1)[0]
	k := shard.Owner(dest, testLoops)
	a.send(0, dest, "hello")
	var got []string
	servertest.WaitFor(t, "the frame in the inbox", eventWait, func() bool {
		qs[k].Drain(1<<20, func(_ uint32, f []byte) { got = append(got, string(f)) })
		return len(got) > 0
	})
	if len(got) != 1 || got[0] != "hello\x00" {
		t.Fatalf("inbox got %q", got)
	}
	servertest.WaitFor(t, "the idle inbox ring to be released", eventWait, func() bool { return qs[k].freed.Load() >= 64<<10 })
	if n := qs[1-k].freed.Load(); n != 0 {
		t.Fatalf("a ring never allocated released %d bytes", n)
	}
}
