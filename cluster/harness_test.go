package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ringrelay/ringrelay/shard"
)

// outbox is a test loop's Source: frames pushed by the test goroutine,
// drained by the bridge goroutine.
type outbox struct {
	mu     sync.Mutex
	frames []frame
	room   atomic.Bool // report room once, as a queue a loop found full would
}

// eventWait bounds every wait for an event in this package's tests: one
// generous deadline, since a loaded machine can hold a goroutine or the
// embedded NATS server back for seconds; no test asserts on how fast.
const eventWait = 30 * time.Second

func (o *outbox) push(dest uint32, payload string) {
	o.mu.Lock()
	o.frames = append(o.frames, frame{dest, append([]byte(payload), 0)})
	o.mu.Unlock()
}

func (o *outbox) pushRaw(dest uint32, data []byte) {
	o.mu.Lock()
	o.frames = append(o.frames, frame{dest, data})
	o.mu.Unlock()
}

func (o *outbox) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.frames)
}

func (o *outbox) Drain(budget int, fn func(uint32, []byte)) (int, bool) {
	o.mu.Lock()
	n, size := 0, 0
	for n < len(o.frames) && (n == 0 || size < budget) {
		size += len(o.frames[n].data)
		n++
	}
	taken := o.frames[:n:n]
	o.frames = o.frames[n:]
	o.mu.Unlock()
	for _, f := range taken {
		fn(f.dest, f.data)
	}
	return n, n > 0 && o.room.Swap(false)
}

// inbox is a test loop's Sink. Put stages, Publish makes visible; with a
// capacity, Put refuses once that many frames are staged or visible and
// not taken.
type inbox struct {
	capacity  int // 0: unbounded
	staged    []frame
	mu        sync.Mutex
	visible   []frame
	delivered atomic.Int64
}

func (in *inbox) Put(dest uint32, data []byte) bool {
	if in.capacity > 0 {
		in.mu.Lock()
		held := len(in.visible)
		in.mu.Unlock()
		if held+len(in.staged) >= in.capacity {
			return false
		}
	}
	in.staged = append(in.staged, frame{dest, bytes.Clone(data)})
	return true
}

func (in *inbox) Publish() bool {
	if len(in.staged) == 0 {
		return false
	}
	in.mu.Lock()
	in.visible = append(in.visible, in.staged...)
	in.mu.Unlock()
	in.delivered.Add(int64(len(in.staged)))
	in.staged = in.staged[:0]
	return true
}

func (in *inbox) take() []frame {
	in.mu.Lock()
	defer in.mu.Unlock()
	f := in.visible
	in.visible = nil
	return f
}

// logBuf collects log lines for assertions.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const testLoops = 2

// testNode is one relay node's side of the bridge: its loops' outboxes
// and inboxes, and the bridge over them.
type testNode struct {
	node  int
	b     *Bridge
	out   []*outbox
	in    []*inbox
	wakes [testLoops]atomic.Int64
	log   *logBuf
}

func testConfig(node int, urls ...string) Config {
	c := DefaultConfig()
	c.Servers = urls
	c.Name = "rrtest"
	c.Node = node
	c.NodeBits = 2
	c.MaxFrame = 64 << 10
	c.AnnounceEvery = 100 * time.Millisecond
	c.AnnounceMissed = 3
	c.StartupWait = 300 * time.Millisecond
	c.ReconnectWait = 50 * time.Millisecond
	c.SinkWait = time.Millisecond
	return c
}

// steadyConfig is testConfig for tests that count every frame: there no
// node may be thought down and no bus connection dropped. Under a loaded
// test run (both CPUs busy, the race detector on) an announcement can come
// more than 300 ms late, and frames for a node thought down are dropped by
// design: 5 missed announcements of one a second keep the tests about
// exchange, not liveness. The NATS client pings at the announcement
// interval and calls the connection stale after two unanswered pings; at
// 100 ms a connection busy writing megabytes of batches was called stale
// under load (TestBridgeSplitsBatches: Disconnects 1, frames lost), so
// the interval is a second here, as in relay's cluster tests.
func steadyConfig(node int, urls ...string) Config {
	c := testConfig(node, urls...)
	c.AnnounceEvery = time.Second
	c.AnnounceMissed = 5
	return c
}

func newTestNode(node int, capacity int) *testNode {
	n := &testNode{node: node, log: &logBuf{}}
	for k := 0; k < testLoops; k++ {
		n.out = append(n.out, &outbox{})
		n.in = append(n.in, &inbox{capacity: capacity})
	}
	return n
}

func (n *testNode) loops() Loops {
	l := Loops{
		Owner: func(id uint32) int { return shard.Owner(id, testLoops) },
		Wake:  func(k int) { n.wakes[k].Add(1) },
	}
	for k := range n.out {
		l.Out = append(l.Out, n.out[k])
		l.In = append(l.In, n.in[k])
	}
	return l
}

func (n *testNode) start(cfg Config) error {
	cfg.Logger = slog.New(slog.NewTextHandler(n.log, nil))
	b, err := Start(cfg, n.loops())
	n.b = b
	return err
}

func startTestNode(t *testing.T, cfg Config) *testNode {
	t.Helper()
	n := newTestNode(cfg.Node, 0)
	if err := n.start(cfg); err != nil {
		t.Fatalf("node %d: %v", cfg.Node, err)
	}
	t.Cleanup(func() { n.b.Close() })
	return n
}

// send puts a frame in the outbox of the loop that would hold the sender
// (any loop will do: the bridge drains them all) and rings the bridge.
func (n *testNode) send(loop int, dest uint32, payload string) {
	n.out[loop].push(dest, payload)
	n.b.Ring()
}

// logOnFailure logs what each node received and its bridge's snapshot
// (drops by reason, peers up) if the test fails: a count that falls short
// says nothing about why.
func logOnFailure(t *testing.T, nodes ...*testNode) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, n := range nodes {
			t.Logf("node %d received %d frames; %+v", n.node, n.received(), n.b.Snapshot())
		}
	})
}

func (n *testNode) received() int64 {
	var s int64
	for _, in := range n.in {
		s += in.delivered.Load()
	}
	return s
}

// ids draws count IDs of node on loop k stamped with the node, as a loop would.
func ids(node, count int) []uint32 {
	s := shard.Scheme{Bits: 2, Self: node}
	var state = uint64(node)*7919 + 17
	rnd := func() uint32 {
		state ^= state >> 12
		state ^= state << 25
		state ^= state >> 27
		return uint32((state * 2685821657736338717) >> 32)
	}
	out := make([]uint32, count)
	for i := range out {
		for out[i] == 0 {
			out[i] = s.Stamp(rnd())
		}
	}
	return out
}

// rawConn is a plain NATS client for publishing hostile bytes.
func rawConn(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
