package relay

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/frame"
	"github.com/ringrelay/ringrelay/internal/rawpeer"
	"github.com/ringrelay/ringrelay/internal/servertest"
	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay/client"
	"github.com/ringrelay/ringrelay/shard"
)

// joinedServer runs one relay server joined to a cluster as node 0 of 4,
// with no bridge: the test plays the bridge through the Loops' queues.
func joinedServer(t *testing.T, backend reactor.Backend) (*Server, *NodeLinks, string) {
	t.Helper()
	return joinedServerWith(t, backend, DefaultConfig())
}

func joinedServerWith(t *testing.T, backend reactor.Backend, cfg Config) (*Server, *NodeLinks, string) {
	t.Helper()
	type started struct {
		srv  *Server
		rs   *NodeLinks
		addr string
		err  error
	}
	ready := make(chan started, 1)
	done := make(chan error, 1)
	go func() {
		lc := reactor.DefaultConfig()
		lc.Backend = backend
		lc.Buffers = 64
		loop, err := reactor.Open("127.0.0.1:0", lc)
		if err != nil {
			ready <- started{err: err}
			return
		}
		srv := NewServer(loop, cfg, nil)
		rs, err := Join([]*Server{srv}, shard.Scheme{Bits: 2, Self: 0})
		if err != nil {
			loop.Close()
			ready <- started{err: err}
			return
		}
		ready <- started{srv: srv, rs: rs, addr: loop.Addr().String()}
		done <- srv.Run()
	}()
	st := <-ready
	if st.err != nil {
		t.Fatalf("start %s server: %v", backend, st.err)
	}
	t.Cleanup(func() {
		st.srv.Shutdown()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("server did not stop")
		}
	})
	return st.srv, st.rs, st.addr
}

func dialTest(t *testing.T, addr string) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestNodeOutboxFullPausesSender fills the outbox while nothing drains
// it: the sender must be paused (not a frame lost), and once the "bridge"
// drains and reports room, every frame comes out whole and in order.
func TestNodeOutboxFullPausesSender(t *testing.T) {
	for _, backend := range []reactor.Backend{reactor.Uring, reactor.Epoll} {
		t.Run(string(backend), func(t *testing.T) {
			srv, rs, addr := joinedServer(t, backend)
			a := dialTest(t, addr)
			if n := (shard.Scheme{Bits: 2}).NodeOf(a.ID()); n != 0 {
				t.Fatalf("ID %08x belongs to node %d, want 0", a.ID(), n)
			}
			remoteID := shard.Scheme{Bits: 2, Self: 3}.Stamp(0x00123456)
			const frames, size = 96, 32 << 10 // 3 MiB: three outboxes' worth
			writeErr := make(chan error, 1)
			go func() {
				var buf []byte
				for i := range frames {
					p := bytes.Repeat([]byte{byte('a' + i%26)}, size)
					copy(p, fmt.Sprintf("#%03d", i))
					buf = frame.Append(buf, remoteID, p)
				}
				_, err := a.NetConn().Write(buf)
				writeErr <- err
			}()
			loops := rs.Links()
			servertest.WaitFor(t, "the sender to be paused on the full outbox", 10*time.Second, func() bool {
				return srv.Metrics().BackpressurePauses.Load() > 0
			})
			var got int
			deadline := time.Now().Add(20 * time.Second)
			for got < frames {
				if time.Now().After(deadline) {
					t.Fatalf("drained %d of %d frames", got, frames)
				}
				n, room := loops.Out[0].Drain(256<<10, func(dest uint32, f []byte) {
					want := bytes.Repeat([]byte{byte('a' + got%26)}, size)
					copy(want, fmt.Sprintf("#%03d", got))
					if dest != remoteID || !bytes.Equal(f, append(want, 0)) {
						t.Fatalf("frame %d: dest %08x, %d bytes starting %q", got, dest, len(f), f[:min(len(f), 8)])
					}
					got++
				})
				if room {
					loops.Wake(0)
				}
				if n == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			if err := <-writeErr; err != nil {
				t.Fatal(err)
			}
			// The sender was resumed: it still talks.
			b := dialTest(t, addr)
			if err := a.Send(b.ID(), []byte("resumed")); err != nil {
				t.Fatal(err)
			}
			b.SetReadDeadline(time.Now().Add(5 * time.Second))
			if p, err := b.Recv(); err != nil || string(p) != "resumed" {
				t.Fatalf("after the outbox drained: %q, %v", p, err)
			}
		})
	}
}

// TestNodeInboxDelivers hands frames to the inbox as the bridge does:
// one for a live ID arrives whole, one for an unknown ID of this node is
// counted here.
func TestNodeInboxDelivers(t *testing.T) {
	srv, rs, addr := joinedServer(t, reactor.Epoll)
	a := dialTest(t, addr)
	loops := rs.Links()
	unknown := shard.Scheme{Bits: 2, Self: 0}.Stamp(a.ID() ^ 0x00ffffff)
	for _, f := range []struct {
		dest uint32
		data string
	}{{unknown, "lost\x00"}, {a.ID(), "from afar\x00"}} {
		if !loops.In[0].Put(f.dest, []byte(f.data)) {
			t.Fatal("inbox refused a frame")
		}
	}
	loops.In[0].Publish()
	loops.Wake(loops.Owner(a.ID()))
	a.SetReadDeadline(time.Now().Add(5 * time.Second))
	if p, err := a.Recv(); err != nil || string(p) != "from afar" {
		t.Fatalf("got %q, %v", p, err)
	}
	servertest.WaitFor(t, "the unknown ID to be counted", 10*time.Second, func() bool {
		return srv.Metrics().Dropped[DropUnknownDest].Load() == 1
	})
	// A frame for ID 0 is never handed to the bus.
	if err := a.Send(0, []byte("nobody")); err != nil {
		t.Fatal(err)
	}
	servertest.WaitFor(t, "the frame for ID 0 to be counted", 10*time.Second, func() bool {
		return srv.Metrics().Dropped[DropUnknownDest].Load() == 2
	})
	if n, _ := loops.Out[0].Drain(1<<20, func(uint32, []byte) {}); n != 0 {
		t.Fatalf("%d frames went to the outbox", n)
	}
}

// TestNodeInboxBoundedUnderBackpressure: a destination here that frames
// from other nodes take over -max-queue asks every other node to pause (a
// pause record in the outbox), renews the pause while it stays over its
// limit, and says resume once it drained. When the senders do not pause
// (here nobody reads the pause records: a lost pause), it takes remote
// frames up to -max-queue plus nodeSlack and drops (and counts) the rest:
// memory stays bounded, and what it does get is whole and in order.
func TestNodeInboxBoundedUnderBackpressure(t *testing.T) {
	for _, backend := range []reactor.Backend{reactor.Uring, reactor.Epoll} {
		t.Run(string(backend), func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.MaxQueue = 64 << 10
			srv, rs, addr := joinedServerWith(t, backend, cfg)
			stuck := rawpeer.Dial(t, addr, rawpeer.Bufs{Rcv: 4 << 10})
			loops := rs.Links()
			k := loops.Owner(stuck.ID)
			in := loops.In[k]
			w := &outboxWatch{out: loops.Out[k]}
			const size = 16 << 10
			frames := (cfg.MaxQueue+nodeSlack)/size + 1024
			payload := bytes.Repeat([]byte{'x'}, size)
			for i := 0; i < frames; {
				copy(payload, fmt.Sprintf("%08d", i)) // a NUL-free sequence number
				payload[size-1] = 0
				if in.Put(stuck.ID, payload) {
					i++
					continue
				}
				in.Publish()
				loops.Wake(loops.Owner(stuck.ID))
				time.Sleep(time.Millisecond)
			}
			in.Publish()
			loops.Wake(loops.Owner(stuck.ID))
			m := srv.Metrics()
			servertest.WaitFor(t, "every remote frame to be delivered or dropped", 10*time.Second, func() bool {
				return m.FramesRelayed.Load()+m.Dropped[DropRemoteOverLimit].Load() == uint64(frames)
			})
			dropped := m.Dropped[DropRemoteOverLimit].Load()
			queued := (uint64(frames) - dropped) * size
			// The bound in the server, plus what the kernel's socket
			// buffers took (the send buffer autotunes up to tcp_wmem's
			// maximum, 4 MiB by default; the reader's is 4 KiB).
			if dropped == 0 || queued > uint64(cfg.MaxQueue+nodeSlack)+(4<<20)+(64<<10) {
				t.Fatalf("%d of %d remote frames dropped, %d bytes kept for a reader that stopped (limit %d)",
					dropped, frames, queued, cfg.MaxQueue)
			}
			// pauses counts the pause records since the last resume (the
			// queue may dip below half its limit while the kernel's send
			// buffer grows, which is a resume and a new pause): two in a
			// row are a renewal.
			pauses := func() int {
				n := 0
				for _, c := range w.ctls {
					switch {
					case bytes.Equal(c, ctl(ctlPause, stuck.ID)):
						n++
					case bytes.Equal(c, ctl(ctlResume, stuck.ID)):
						n = 0
					default:
						t.Fatalf("unexpected control record % x", c)
					}
				}
				return n
			}
			servertest.WaitFor(t, "a pause for the stuck reader", 10*time.Second, func() bool { w.drain(); return pauses() >= 1 })
			deadline := time.Now().Add(nodeRenew + 10*time.Second)
			for w.drain(); pauses() < 2; w.drain() {
				if time.Now().After(deadline) {
					t.Fatalf("the pause was never renewed: %d records", len(w.ctls))
				}
				time.Sleep(10 * time.Millisecond)
			}
			// What was kept arrives whole and in order.
			last := -1
			for range frames - int(dropped) {
				p, err := stuck.Recv(10 * time.Second)
				if err != nil {
					t.Fatalf("after frame %d: %v", last, err)
				}
				seq, err := strconv.Atoi(string(p[:min(8, len(p))]))
				if err != nil || len(p) != size-1 || seq <= last {
					t.Fatalf("frame %d (%d bytes) after %d", seq, len(p), last)
				}
				last = seq
			}
			servertest.WaitFor(t, "a resume for the reader", 10*time.Second, func() bool {
				w.drain()
				return len(w.ctls) > 0 && bytes.Equal(w.ctls[len(w.ctls)-1], ctl(ctlResume, stuck.ID))
			})
		})
	}
}

// TestNodeIDsOwnedByLoopAndNode: with the servers of four loops joined as
// node 5 of 16, every ID a loop hands out carries node 5 in its top bits
// and is owned by the loop that drew it, so both the node and the loop of
// a frame's destination follow from its header.
func TestNodeIDsOwnedByLoopAndNode(t *testing.T) {
	const loops = 4
	scheme := shard.Scheme{Bits: 4, Self: 5}
	var servers []*Server
	for range loops {
		servers = append(servers, NewServer(nil, DefaultConfig(), nil))
	}
	links, err := Join(servers, scheme)
	if err != nil {
		t.Fatal(err)
	}
	owner := links.Links().Owner
	seen := map[uint32]bool{}
	for k, s := range servers {
		for slot := range 500 {
			id := s.routes.Add(slot)
			if id == 0 || seen[id] {
				t.Fatalf("loop %d: ID %08x is zero or repeated", k, id)
			}
			seen[id] = true
			if scheme.NodeOf(id) != 5 || owner(id) != k {
				t.Fatalf("loop %d drew %08x: node %d, owner loop %d", k, id, scheme.NodeOf(id), owner(id))
			}
		}
	}
	if _, err := Join(servers[:1], scheme); err == nil {
		t.Errorf("joining a server twice did not fail")
	}
	if _, err := Join([]*Server{NewServer(nil, DefaultConfig(), nil)}, shard.Scheme{}); err == nil {
		t.Errorf("joining with node-bits 0 did not fail")
	}
}

// TestNodeOutboxTrimmed: the outbox's 1 MiB ring, allocated by the first
// frame for another node, is given back once it has been idle for a
// trim period.
func TestNodeOutboxTrimmed(t *testing.T) {
	srv, rs, addr := joinedServer(t, reactor.Epoll)
	a := dialTest(t, addr)
	remoteID := shard.Scheme{Bits: 2, Self: 2}.Stamp(0x00abcdef)
	if err := a.Send(remoteID, []byte("across")); err != nil {
		t.Fatal(err)
	}
	out := rs.Links().Out[0]
	var got []string
	servertest.WaitFor(t, "the frame in the outbox", 10*time.Second, func() bool {
		out.Drain(1<<20, func(dest uint32, f []byte) { got = append(got, fmt.Sprintf("%08x %s", dest, f)) })
		return len(got) > 0
	})
	if want := fmt.Sprintf("%08x across\x00", remoteID); len(got) != 1 || got[0] != want {
		t.Fatalf("outbox held %q, want %q", got, want)
	}
	servertest.WaitFor(t, "the idle outbox ring to be released", 10*time.Second, func() bool {
		return srv.link.released.Load() >= nodeOutbox
	})
}

// ctl is a control record as loops and nodes exchange them (control.go).
func ctl(op byte, id uint32) []byte {
	b := []byte{op, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(b[1:], id)
	return b
}

// outboxWatch drains a loop's outbox for a test that plays the bridge,
// keeping frames and control records apart.
type outboxWatch struct {
	out    *shard.Queue
	frames []string // payloads, NUL dropped
	ctls   [][]byte
}

func (w *outboxWatch) drain() {
	w.out.Drain(1<<20, func(dest uint32, f []byte) {
		if dest == shard.ControlDest {
			w.ctls = append(w.ctls, bytes.Clone(f))
			return
		}
		w.frames = append(w.frames, string(f[:len(f)-1]))
	})
}

// TestNodePauseIsALease: a pause from another node stops a sender here
// that sends to the paused destination; a resume releases it, and a pause
// whose resume never comes (lost, or its node died) lapses after
// nodeLease, so no sender waits for ever.
func TestNodePauseIsALease(t *testing.T) {
	srv, rs, addr := joinedServer(t, reactor.Epoll)
	links := rs.Links()
	in, wake := links.In[0], func() { links.Wake(0) }
	w := &outboxWatch{out: links.Out[0]}
	a := dialTest(t, addr)
	remote := shard.Scheme{Bits: 2, Self: 2}.Stamp(0x00abcdef)
	m := srv.Metrics()

	// pause hands the loop a pause record from another node, and waits
	// until it was handled: a frame for a, behind it in the inbox, arrives.
	pause := func(op byte) {
		t.Helper()
		if !in.Put(shard.ControlDest, ctl(op, remote)) || !in.Put(a.ID(), []byte("mark\x00")) {
			t.Fatal("inbox refused a record")
		}
		in.Publish()
		wake()
		a.SetReadDeadline(time.Now().Add(10 * time.Second))
		if p, err := a.Recv(); err != nil || string(p) != "mark" {
			t.Fatalf("marker: %q, %v", p, err)
		}
	}
	// sendAndSee sends one frame to remote and waits for it in the outbox.
	sendAndSee := func(payload string) {
		t.Helper()
		if err := a.Send(remote, []byte(payload)); err != nil {
			t.Fatal(err)
		}
		servertest.WaitFor(t, payload+" in the outbox", 10*time.Second, func() bool {
			w.drain()
			return len(w.frames) > 0 && w.frames[len(w.frames)-1] == payload
		})
	}

	// Lost resume: the frame after the pause goes out, then a is paused
	// until the lease lapses.
	pause(ctlPause)
	sendAndSee("first")
	servertest.WaitFor(t, "a to be paused", 10*time.Second, func() bool { return m.BackpressurePauses.Load() == 1 })
	if err := a.Send(remote, []byte("second")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(nodeLease + 10*time.Second)
	for len(w.frames) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the pause never lapsed: outbox %q", w.frames)
		}
		time.Sleep(5 * time.Millisecond)
		w.drain()
	}
	// The loop published the lapse before it read "second" again.
	if w.frames[1] != "second" || m.PauseLeasesLapsed.Load() != 1 {
		t.Fatalf("outbox %q with %d leases lapsed: a was not held until the lease lapsed",
			w.frames, m.PauseLeasesLapsed.Load())
	}

	// A resume releases at once, lease or not.
	pause(ctlPause)
	sendAndSee("third")
	servertest.WaitFor(t, "a to be paused again", 10*time.Second, func() bool { return m.BackpressurePauses.Load() == 2 })
	if err := a.Send(remote, []byte("fourth")); err != nil {
		t.Fatal(err)
	}
	pause(ctlResume)
	sendAndSee("fourth")
	if n := m.PauseLeasesLapsed.Load(); n != 1 {
		t.Fatalf("%d leases lapsed, want the first only: the resume did not release a", n)
	}
}
