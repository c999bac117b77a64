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
	scheme Scheme
	loops  Loops
	log    logger

	nc       *nats.Conn
	batchSub *nats.Subscription
	annSub   *nats.Subscription

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
	routeFn    func(uint32, []byte)

	// The inbound goroutine's own, under inMu (Close takes it to know no
	// delivery is in flight).
	inMu      sync.Mutex
	inClosed  bool
	lim       Limits
	inFrom    *peer
	inTouched []bool
	inBlocked []bool
	inList    []int
	deliverFn func(uint32, []byte)
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
		scheme:      Scheme{Bits: cfg.NodeBits, Self: cfg.Node},
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
		nc.Close()
		return nil, err
	}
	if err := b.subscribe(); err != nil {
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
		// A server that stops answering is noticed within about two
		// announcement intervals, not the client's default minutes.
		nats.PingInterval(c.AnnounceEvery),
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
	if err := b.nc.Flush(); err != nil {
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	return nil
}

// startupCheck announces "starting", asks every node to answer, and
// listens for StartupWait. Another instance with this node index, serving
// or starting, makes Start refuse: two processes started together both
// refuse, and a process serving already keeps serving.
func (b *Bridge) startupCheck() error {
	if err := b.publishAnnouncement(stateStarting, true); err != nil {
		return fmt.Errorf("cluster: announce: %w", err)
	}
	if err := b.nc.Flush(); err != nil {
		return fmt.Errorf("cluster: announce: %w", err)
	}
	select {
	case a := <-b.dup:
		return fmt.Errorf("%w: node %d is announced by instance %016x (this is %016x); check -node", ErrDuplicateNode, a.node, a.instance, b.instance)
	case <-time.After(b.cfg.StartupWait):
	}
	b.serving.Store(true)
	if err := b.publishAnnouncement(stateServing, false); err != nil {
		return fmt.Errorf("cluster: announce: %w", err)
	}
	b.log.Info("cluster: serving", "node", b.cfg.Node, "subject", b.cfg.nodeSubject(b.cfg.Node),
		"max_batch", bytesize.Format(b.maxBatch.Load()), "peers_up", b.peersUp())
	return nil
}

func (b *Bridge) publishAnnouncement(st nodeState, ask bool) error {
	a := announcement{node: b.cfg.Node, state: st, ask: ask, instance: b.instance}
	return b.nc.Publish(b.cfg.announceSubject(), a.encode())
}

// since is the bridge's clock: nanoseconds since Start, at least 1.
func (b *Bridge) since() int64 { return int64(time.Since(b.epoch)) + 1 }

// peer returns node's record, making it on first use.
func (b *Bridge) peer(node int) *peer {
	if p := b.peers[node].Load(); p != nil {
		return p
	}
	np := &peer{node: node, subject: b.cfg.nodeSubject(node)}
	if !b.peers[node].CompareAndSwap(nil, np) {
		return b.peers[node].Load()
	}
	b.knownM.Lock()
	b.known = append(b.known, np)
	b.knownM.Unlock()
	return np
}

func (b *Bridge) knownPeers() []*peer {
	b.knownM.Lock()
	defer b.knownM.Unlock()
	return slices.Clone(b.known)
}

func (b *Bridge) isUp(p *peer, now int64) bool {
	seen := p.lastSeen.Load()
	return seen != 0 && now-seen <= int64(b.expiry)
}

func (b *Bridge) peersUp() int {
	now, n := b.since(), 0
	for _, p := range b.knownPeers() {
		if b.isUp(p, now) {
			n++
		}
	}
	return n
}

// Ring tells the bridge that a loop published frames into its Source. It
// never blocks and rings coalesce; loops call it after publishing.
func (b *Bridge) Ring() {
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
// tells the other nodes this one leaves, and closes the connection. After
// Close the bridge touches no Source or Sink.
func (b *Bridge) Close() error {
	b.closeOnce.Do(func() {
		close(b.stop)
		<-b.done
		b.inMu.Lock()
		b.inClosed = true
		b.inMu.Unlock()
		if b.busUp.Load() && !b.stopped.Load() {
			_ = b.publishAnnouncement(stateLeaving, false)
			_ = b.nc.FlushTimeout(time.Second)
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

func (b *Bridge) poke() {
	select {
	case b.announceNow <- struct{}{}:
	default:
	}
}

// onAnnounce runs on the client's goroutine for NAME.nodes.
func (b *Bridge) onAnnounce(m *nats.Msg) {
	a, err := decodeAnnouncement(m.Data, b.scheme.Nodes())
	if err != nil {
		b.stats.badAnnouncements.Add(1)
		return
	}
	if a.instance == b.instance {
		return
	}
	if a.node == b.cfg.Node {
		switch {
		case !b.serving.Load():
			select {
			case b.dup <- a:
			default:
			}
		case a.state == stateServing:
			// Both serve (they started on two sides of a bus outage):
			// neither can be trusted with the node's IDs. Both stop.
			b.fail(fmt.Errorf("%w: node %d is also served by instance %016x (this is %016x)", ErrDuplicateNode, a.node, a.instance, b.instance))
		case a.ask:
			b.poke() // a starter: our answer makes it refuse
		}
		return
	}
	p := b.peer(a.node)
	switch a.state {
	case stateServing:
		p.instance.Store(a.instance)
		p.lastSeen.Store(b.since())
	case stateLeaving:
		if p.instance.Load() == a.instance {
			p.lastSeen.Store(0)
		}
	}
	if a.ask && b.serving.Load() {
		b.poke()
	}
}

// run is the bridge goroutine.
func (b *Bridge) run() {
	defer close(b.done)
	tick := time.NewTicker(max(b.cfg.AnnounceEvery/4, time.Millisecond))
	defer tick.Stop()
	nextAnnounce := time.Now().Add(b.cfg.AnnounceEvery)
	for {
		select {
		case <-b.stop:
			return
		case <-b.bell:
		case <-b.announceNow:
			b.announce()
			nextAnnounce = time.Now().Add(b.cfg.AnnounceEvery)
		case now := <-tick.C:
			if !now.Before(nextAnnounce) {
				b.announce()
				nextAnnounce = now.Add(b.cfg.AnnounceEvery)
			}
			b.watchPeers()
		}
		if b.pass() > 0 {
			b.Ring() // more may be waiting: come back after a look at the other cases
		}
	}
}

func (b *Bridge) announce() {
	if b.stopped.Load() || !b.busUp.Load() {
		return
	}
	_ = b.publishAnnouncement(stateServing, b.wantAsk.Swap(false))
}

// watchPeers logs each peer that came up or went down since the last look.
func (b *Bridge) watchPeers() {
	now := b.since()
	for _, p := range b.knownPeers() {
		up := b.isUp(p, now)
		if up == p.wasUp {
			continue
		}
		p.wasUp = up
		if up {
			b.log.Info("cluster: node up", "node", p.node)
		} else {
			b.log.Warn("cluster: node down (no announcement lately, or it left)", "node", p.node)
		}
	}
}

// pass drains every loop's Source once and publishes what it batched.
func (b *Bridge) pass() int {
	b.passNow = b.since()
	b.passMax = int(b.maxBatch.Load())
	b.passBusUp = b.busUp.Load()
	b.passFailed = b.stopped.Load()
	total := 0
	for k, src := range b.loops.Out {
		n, room := src.Drain(b.cfg.DrainBudget, b.routeFn)
		total += n
		if room {
			b.loops.Wake(k)
		}
	}
	for _, p := range b.dirty {
		b.publish(p)
		p.dirty = false
	}
	b.dirty = b.dirty[:0]
	return total
}

// route takes one frame from a loop's Source into its node's batch.
func (b *Bridge) route(dest uint32, frame []byte) {
	node := b.scheme.NodeOf(dest)
	p := b.peer(node)
	switch {
	case b.passFailed:
		p.drop(DropStopped, 1)
		return
	case node == b.cfg.Node:
		p.drop(DropLocal, 1)
		return
	case !b.passBusUp:
		p.drop(DropBusDown, 1)
		return
	case !b.isUp(p, b.passNow):
		p.drop(DropNodeDown, 1)
		return
	case len(frame) == 0 || frame[len(frame)-1] != 0:
		p.drop(DropMalformed, 1)
		return
	case BatchHeader+4+len(frame) > b.passMax:
		p.drop(DropTooBig, 1)
		return
	}
	if !p.dirty {
		p.dirty = true
		b.dirty = append(b.dirty, p)
		p.out.Reset(b.cfg.Node)
	} else if p.out.Len()+4+len(frame) > b.passMax {
		b.publish(p)
	}
	p.out.Add(dest, frame)
}

// publish sends p's batch, if it holds any frame, and empties it.
func (b *Bridge) publish(p *peer) {
	n := p.out.Count()
	if n == 0 {
		return
	}
	data := p.out.Bytes()
	err := b.nc.Publish(p.subject, data)
	p.out.Reset(b.cfg.Node)
	switch {
	case err == nil:
		size := uint64(len(data))
		p.framesOut.Add(uint64(n))
		p.bytesOut.Add(size - BatchHeader - 4*uint64(n))
		b.stats.batchesOut.Add(1)
		b.stats.batchBytesOut.Add(size)
		b.stats.batchFramesOut.Add(uint64(n))
		if size > b.stats.batchMaxOut.Load() {
			b.stats.batchMaxOut.Store(size)
		}
	case errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrDisconnected):
		p.drop(DropBusDown, n)
	case errors.Is(err, nats.ErrMaxPayload):
		p.drop(DropTooBig, n)
	default:
		p.drop(DropPublish, n)
	}
}

// onBatch runs on the client's goroutine for NAME.node.K: it is the one
// producer of every Sink.
func (b *Bridge) onBatch(m *nats.Msg) {
	b.inMu.Lock()
	defer b.inMu.Unlock()
	if b.inClosed {
		return
	}
	d, err := DecodeBatch(m.Data, b.lim)
	if err != nil {
		var be *BatchError
		if errors.As(err, &be) {
			b.stats.rejected[be.Reason].Add(1)
		}
		return
	}
	b.stats.batchesIn.Add(1)
	b.inFrom = b.peer(d.Source)
	if b.stopped.Load() {
		b.inFrom.drop(DropStopped, d.Frames)
		return
	}
	d.Each(b.deliverFn)
	for _, k := range b.inList {
		if b.loops.In[k].Publish() {
			b.loops.Wake(k)
		}
		b.inTouched[k], b.inBlocked[k] = false, false
	}
	b.inList = b.inList[:0]
}

// deliver hands one received frame to the loop that owns its ID. A full
// inbox is published and its loop woken, and the frame waits up to
// SinkWait for room; if none comes, it and the rest of this batch for that
// loop are dropped, so one stuck loop costs the batch at most one wait.
func (b *Bridge) deliver(dest uint32, frame []byte) {
	p := b.inFrom
	k := b.loops.Owner(dest)
	if k < 0 || k >= len(b.loops.In) {
		p.drop(DropNoLoop, 1)
		return
	}
	if !b.inTouched[k] {
		b.inTouched[k] = true
		b.inList = append(b.inList, k)
	}
	if b.inBlocked[k] {
		p.drop(DropSinkFull, 1)
		return
	}
	sink := b.loops.In[k]
	if !sink.Put(dest, frame) && !b.waitForRoom(k, dest, frame) {
		b.inBlocked[k] = true
		p.drop(DropSinkFull, 1)
		return
	}
	p.framesIn.Add(1)
	p.bytesIn.Add(uint64(len(frame)))
}

func (b *Bridge) waitForRoom(k int, dest uint32, frame []byte) bool {
	sink := b.loops.In[k]
	if sink.Publish() {
		b.loops.Wake(k)
	}
	deadline := time.Now().Add(b.cfg.SinkWait)
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Microsecond)
		if sink.Put(dest, frame) {
			return true
		}
	}
	return false
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
