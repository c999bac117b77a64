package cluster

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ringrelay/ringrelay/internal/bytesize"
	"github.com/ringrelay/ringrelay/shard"
)

// Source is one loop's outbox towards other nodes: frames the loop routed
// to an ID of another node. Drain hands fn the frames published so far,
// oldest first, about budget bytes at most (at least one frame); frame is
// the payload with its trailing NUL and is valid only until fn returns.
// room reports that the loop had found the outbox full and now has room:
// the bridge then calls Wake for that loop. *shard.Queue fits as is.
type Source interface {
	Drain(budget int, fn func(dest uint32, frame []byte)) (frames int, room bool)
}

// Sink is one loop's inbox from other nodes. Put copies a frame in, or
// reports false, taking nothing, when the inbox is full; Publish makes
// what Put copied visible to the loop. *shard.Queue fits as is.
type Sink interface {
	Put(dest uint32, frame []byte) bool
	Publish() bool
}

// Loops is how the bridge reaches the relay loops of this process.
type Loops struct {
	Out   []Source            // one per loop, drained by the bridge goroutine only
	In    []Sink              // one per loop, filled by the inbound goroutine only
	Owner func(id uint32) int // the loop that owns an ID of this node, 0..len(In)-1
	Wake  func(loop int)      // wakes a loop; called from bridge goroutines, must not block
}

// QueueLoops is Loops over one shard.Queue outbox and inbox per loop, as
// the relay's loops have them (relay.Links).
func QueueLoops(out, in []*shard.Queue, owner func(id uint32) int, wake func(loop int)) Loops {
	l := Loops{Owner: owner, Wake: wake}
	for _, q := range out {
		l.Out = append(l.Out, q)
	}
	for _, q := range in {
		l.In = append(l.In, q)
	}
	return l
}

// ErrDuplicateNode is returned by Start, or reported by Err, when another
// process serves the same node index.
var ErrDuplicateNode = errors.New("cluster: another process serves this node index")

// Bridge carries frames between this node's loops and the other nodes.
//
// Goroutines: the bridge goroutine (started by Start) alone publishes:
// it drains the loops' Sources, batches per node, announces, and expires
// peers. The inbound handler runs on the NATS client's goroutine for the
// node subscription (one per subscription, messages in order); it alone
// calls the Sinks' Put and Publish. The announcement handler runs on the
// client's goroutine for NAME.nodes and only stores atomics. Loops call
// Ring only; Snapshot, Err and Failed are for any goroutine.
type Bridge struct {
	cfg    Config
	scheme shard.Scheme
	loops  Loops
	log    logger

	nc       *nats.Conn
	batchSub *nats.Subscription
	annSub   *nats.Subscription
	ctlSub   *nats.Subscription

	instance uint64
	epoch    time.Time
	expiry   time.Duration

	peers  []atomic.Pointer[peer] // by node index, made on first use
	knownM sync.Mutex
	known  []*peer

	maxBatch atomic.Int64 // largest batch to publish: max_payload, or cfg.MaxBatch
	busUp    atomic.Bool
	serving  atomic.Bool // past the startup check
	closing  atomic.Bool
	stopped  atomic.Bool // a duplicate was found while serving

	failOnce sync.Once
	failErr  error
	failed   chan struct{}

	dup         chan announcement // a same-index announcement during startup
	bell        chan struct{}     // loops published frames
	rung        atomic.Bool       // a bell is pending: Ring need not send again
	announceNow chan struct{}     // a peer asked, or we reconnected
	wantAsk     atomic.Bool
	stop, done  chan struct{}
	closeOnce   sync.Once

	stats bridgeStats

	// The bridge goroutine's own.
	dirty      []*peer
	passNow    int64
	passMax    int
	passBusUp  bool
	passFailed bool
	closed     bool // Close's last passes: the loops are gone, wake none
	routeFn    func(uint32, []byte)
	ctlOut     []byte // this pass's control message (control.go)
	ctlRecords int

	// The inbound goroutine's own, under inMu (Close takes it to know no
	// delivery is in flight).
	inMu      sync.Mutex
	inClosed  bool
	lim       Limits
	inFrom    *peer
	inFrames  uint64 // frames and bytes of the batch being delivered, added to inFrom once
	inBytes   uint64
	inTouched []bool
	inBlocked []bool
	inList    []int
	deliverFn func(uint32, []byte)
	// room[k] is signalled by loop k when its inbox has room again
	// (Room), for a delivery waiting in waitForRoom.
	room []chan struct{}
}

type logger interface {
	Info(msg string, args ...any)
	Warn(msg string, args ...any)
	Error(msg string, args ...any)
}

// Start connects to NATS, subscribes, checks that no other process serves
// this node index (it listens for StartupWait), and starts the bridge
// goroutine. It fails if the first connection fails, if the servers'
// max_payload cannot hold one frame of MaxFrame, or with
// ErrDuplicateNode. The Sinks must accept frames from the moment Start is
// called; the loops may start later.
func Start(cfg Config, loops Loops) (*Bridge, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(loops.Out) == 0 || len(loops.Out) != len(loops.In) || loops.Owner == nil || loops.Wake == nil {
		return nil, fmt.Errorf("cluster: loops need as many Sources as Sinks (%d, %d), an Owner and a Wake", len(loops.Out), len(loops.In))
	}
	b := &Bridge{
		cfg:         cfg,
		scheme:      shard.Scheme{Bits: cfg.NodeBits, Self: cfg.Node},
		loops:       loops,
		log:         cfg.Logger,
		instance:    newInstance(),
		epoch:       time.Now(),
		expiry:      time.Duration(cfg.AnnounceMissed) * cfg.AnnounceEvery,
		peers:       make([]atomic.Pointer[peer], 1<<cfg.NodeBits),
		failed:      make(chan struct{}),
		dup:         make(chan announcement, 1),
		bell:        make(chan struct{}, 1),
		announceNow: make(chan struct{}, 1),
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
		inTouched:   make([]bool, len(loops.In)),
		inBlocked:   make([]bool, len(loops.In)),
		room:        make([]chan struct{}, len(loops.In)),
	}
	for k := range b.room {
		b.room[k] = make(chan struct{}, 1)
	}
	b.routeFn = b.route
	b.deliverFn = b.deliver

	nc, err := nats.Connect(strings.Join(cfg.Servers, ","), b.natsOptions()...)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to %s: %w", strings.Join(cfg.Servers, ","), err)
	}
	b.nc = nc
	b.busUp.Store(true)
	if err := b.setMaxBatch(); err != nil {
		b.closing.Store(true) // no "lost the connection" line after Start failed
		nc.Close()
		return nil, err
	}
	if err := b.subscribe(); err != nil {
		b.closing.Store(true)
		nc.Close()
		return nil, err
	}
	if err := b.startupCheck(); err != nil {
		b.closing.Store(true)
		nc.Close()
		return nil, err
	}
	go b.run()
	return b, nil
}

func newInstance() uint64 {
	var buf [8]byte
	for {
		_, _ = rand.Read(buf[:])
		if v := binary.NativeEndian.Uint64(buf[:]); v != 0 {
			return v
		}
	}
}

func (b *Bridge) natsOptions() []nats.Option {
	c := b.cfg
	opts := []nats.Option{
		nats.Name(fmt.Sprintf("ringrelay %s node %d", c.Name, c.Node)),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(c.ReconnectWait),
		// Fail fast: nothing published while disconnected is kept to be
		// delivered late; it is dropped and counted instead.
		nats.ReconnectBufSize(-1),
		// A server that stops answering is noticed within about
		// AnnounceMissed announcement intervals (as a silent peer node
		// is), not the client's default minutes.
		nats.PingInterval(c.AnnounceEvery),
		nats.MaxPingsOutstanding(max(2, c.AnnounceMissed)),
		nats.NoEcho(),
		nats.DisconnectErrHandler(b.onDisconnect),
		nats.ReconnectHandler(b.onReconnect),
		nats.ErrorHandler(b.onAsyncError),
	}
	if c.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	if c.User != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	if c.TLSCert != "" {
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	return opts
}

// setMaxBatch reads the server's max_payload and checks that one frame of
// MaxFrame fits in a batch under it.
func (b *Bridge) setMaxBatch() error {
	mp := b.nc.MaxPayload()
	need := int64(BatchHeader + FrameOverhead + b.cfg.MaxFrame)
	if mp < need {
		return fmt.Errorf("cluster: the NATS server's max_payload is %s, but one frame of max-frame %s needs a %s message: raise max_payload on every server, or lower -max-frame",
			bytesize.Format(mp), bytesize.Format(int64(b.cfg.MaxFrame)), bytesize.Format(need))
	}
	if b.cfg.MaxBatch > 0 {
		mp = min(mp, int64(b.cfg.MaxBatch))
	}
	b.maxBatch.Store(mp)
	b.lim = Limits{Scheme: b.scheme, MaxFrame: b.cfg.MaxFrame, MaxBatch: int(mp)}
	return nil
}

func (b *Bridge) subscribe() error {
	var err error
	b.annSub, err = b.nc.Subscribe(b.cfg.announceSubject(), b.onAnnounce)
	if err != nil {
		return fmt.Errorf("cluster: subscribe to %s: %w", b.cfg.announceSubject(), err)
	}
	subj := b.cfg.nodeSubject(b.cfg.Node)
	b.batchSub, err = b.nc.Subscribe(subj, b.onBatch)
	if err != nil {
		return fmt.Errorf("cluster: subscribe to %s: %w", subj, err)
	}
	if err := b.batchSub.SetPendingLimits(b.cfg.PendingMsgs, b.cfg.PendingBytes); err != nil {
		return fmt.Errorf("cluster: pending limits on %s: %w", subj, err)
	}
	b.ctlSub, err = b.nc.Subscribe(b.cfg.controlSubject(), b.onControl)
	if err != nil {
		return fmt.Errorf("cluster: subscribe to %s: %w", b.cfg.controlSubject(), err)
	}
	if err := b.nc.Flush(); err != nil {
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	return nil
}

// since is the bridge's clock: nanoseconds since Start, at least 1.
func (b *Bridge) since() int64 { return int64(time.Since(b.epoch)) + 1 }

// Ring tells the bridge that a loop published frames into its Source. It
// never blocks and rings coalesce; loops call it after publishing.
func (b *Bridge) Ring() {
	// The flag spares the loops a channel operation on every pass while
	// the bridge has not taken the last bell yet. The bridge clears it
	// before it drains, so a publish that found it set is drained anyway.
	if b.rung.Load() || !b.rung.CompareAndSwap(false, true) {
		return
	}
	select {
	case b.bell <- struct{}{}:
	default:
	}
}

// Up reports whether node is up as far as this node knows.
func (b *Bridge) Up(node int) bool {
	if node < 0 || node >= len(b.peers) {
		return false
	}
	p := b.peers[node].Load()
	return p != nil && b.isUp(p, b.since())
}

// Failed is closed when the bridge stops serving (a duplicate node index
// appeared while it served); Err then says why. The process should exit.
func (b *Bridge) Failed() <-chan struct{} { return b.failed }

// Err is nil while the bridge serves.
func (b *Bridge) Err() error {
	select {
	case <-b.failed:
		return b.failErr
	default:
		return nil
	}
}

// Close stops the bridge goroutine, waits for any delivery in flight,
// drains every loop's outbox and publishes what it held, tells the other
// nodes this one leaves, flushes, and closes the connection; draining and
// flushing take at most ShutdownTimeout, and frames still in an outbox
// then are dropped as DropShutdown. Call it once the loops have stopped
// producing (they stopped reading): it wakes no loop. After Close the
// bridge touches no Source or Sink.
func (b *Bridge) Close() error {
	b.closeOnce.Do(func() {
		close(b.stop)
		<-b.done
		b.inMu.Lock()
		b.inClosed = true
		b.inMu.Unlock()
		deadline := time.Now().Add(b.cfg.ShutdownTimeout)
		b.drainOut(deadline)
		if b.busUp.Load() && !b.stopped.Load() {
			_ = b.publishAnnouncement(stateLeaving, false)
			_ = b.nc.FlushTimeout(max(time.Until(deadline), 100*time.Millisecond))
		}
		b.closing.Store(true)
		b.nc.Close()
	})
	return nil
}

// fail stops serving: no more frames out or in, and Failed is closed.
func (b *Bridge) fail(err error) {
	b.failOnce.Do(func() {
		b.failErr = err
		b.stopped.Store(true)
		b.log.Error("cluster: stopped serving", "err", err)
		close(b.failed)
	})
}

func (b *Bridge) onDisconnect(_ *nats.Conn, err error) {
	if b.closing.Load() {
		return
	}
	b.busUp.Store(false)
	b.stats.disconnects.Add(1)
	b.log.Warn("cluster: lost the NATS connection; frames to other nodes are dropped until it is back", "err", err)
}

func (b *Bridge) onReconnect(nc *nats.Conn) {
	if mp := nc.MaxPayload(); b.cfg.MaxBatch > 0 {
		b.maxBatch.Store(min(mp, int64(b.cfg.MaxBatch)))
	} else {
		b.maxBatch.Store(mp)
	}
	b.busUp.Store(true)
	b.log.Info("cluster: NATS connection back", "server", nc.ConnectedUrlRedacted())
	b.wantAsk.Store(true)
	b.poke()
}

func (b *Bridge) onAsyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrSlowConsumer) {
		return // counted by the subscription; Snapshot reads it
	}
	subj := ""
	if sub != nil {
		subj = sub.Subject
	}
	b.log.Warn("cluster: NATS error", "subject", subj, "err", err)
}

// Snapshot reads every counter; any goroutine may call it.
func (b *Bridge) Snapshot() Snapshot {
	s := Snapshot{
		Node:             b.cfg.Node,
		BusConnected:     b.busUp.Load(),
		Serving:          !b.stopped.Load(),
		Disconnects:      b.stats.disconnects.Load(),
		BatchesOut:       b.stats.batchesOut.Load(),
		BatchBytesOut:    b.stats.batchBytesOut.Load(),
		BatchFramesOut:   b.stats.batchFramesOut.Load(),
		BatchMaxBytes:    b.stats.batchMaxOut.Load(),
		BatchesIn:        b.stats.batchesIn.Load(),
		BadAnnouncements: b.stats.badAnnouncements.Load(),
		ControlOut:       b.stats.controlOut.Load(),
		ControlIn:        b.stats.controlIn.Load(),
		ControlDropped:   b.stats.controlDropped.Load(),
		ControlRejected:  b.stats.controlRejected.Load(),
	}
	for i := range s.Rejected {
		s.Rejected[i] = b.stats.rejected[i].Load()
	}
	if n, err := b.batchSub.Dropped(); err == nil {
		s.SlowConsumer = uint64(n)
	}
	now := b.since()
	for _, p := range b.knownPeers() {
		ps := PeerSnapshot{
			Node:      p.node,
			Up:        b.isUp(p, now),
			FramesOut: p.framesOut.Load(),
			BytesOut:  p.bytesOut.Load(),
			FramesIn:  p.framesIn.Load(),
			BytesIn:   p.bytesIn.Load(),
		}
		for i := range ps.Drops {
			ps.Drops[i] = p.drops[i].Load()
		}
		s.Peers = append(s.Peers, ps)
	}
	slices.SortFunc(s.Peers, func(x, y PeerSnapshot) int { return x.Node - y.Node })
	return s
}
