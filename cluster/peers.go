package cluster

import (
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ringrelay/ringrelay/internal/bytesize"
)

// startupCheck announces "starting", asks every node to answer, and
// listens for StartupWait. Another instance with this node index, serving
// or starting, makes Start refuse. A process serving already keeps
// serving. Of two started together, the one that announces second
// reaches the first (subscribed by then): if the first still listens it
// refuses, if it already serves it answers and the second refuses. Both
// refuse when each hears the other. Never both serve.
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
