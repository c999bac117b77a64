package relay_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/cluster"
	"github.com/ringrelay/ringrelay/internal/frame"
	"github.com/ringrelay/ringrelay/internal/rawpeer"
	"github.com/ringrelay/ringrelay/internal/servertest"
	"github.com/ringrelay/ringrelay/relay"
	"github.com/ringrelay/ringrelay/relay/client"
	"github.com/ringrelay/ringrelay/shard"
)

// clusterCases is the end-to-end table with the sender and the receiver on
// different nodes. Each case gets the three nodes (already meshed) and
// may dial any of them.
var clusterCases = []struct {
	name string
	run  func(t *testing.T, nodes []*relayNode)
}{
	{"exchange", func(t *testing.T, nodes []*relayNode) {
		a, b := nodes[0].dial(t), nodes[1].dial(t)
		scheme := shard.Scheme{Bits: clusterNodeBits}
		if scheme.NodeOf(a.ID()) != 0 || scheme.NodeOf(b.ID()) != 1 {
			t.Fatalf("IDs %08x and %08x do not carry their nodes 0 and 1", a.ID(), b.ID())
		}
		if err := a.Send(b.ID(), []byte("hello, node 1")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, b, 5*time.Second); string(got) != "hello, node 1" {
			t.Fatalf("b got %q", got)
		}
		if err := b.Send(a.ID(), []byte("hello back, node 0")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, a, 5*time.Second); string(got) != "hello back, node 0" {
			t.Fatalf("a got %q", got)
		}
	}},
	{"200 frames in one write arrive in order", func(t *testing.T, nodes []*relayNode) {
		a, b := nodes[2].dial(t), nodes[0].dial(t)
		var buf []byte
		for i := range 200 {
			buf = frame.Append(buf, b.ID(), fmt.Appendf(nil, "frame %03d", i))
		}
		if _, err := a.NetConn().Write(buf); err != nil {
			t.Fatal(err)
		}
		for i := range 200 {
			if got, want := string(recv(t, b, 5*time.Second)), fmt.Sprintf("frame %03d", i); got != want {
				t.Fatalf("frame %d: got %q want %q", i, got, want)
			}
		}
	}},
	{"frame written one byte at a time", func(t *testing.T, nodes []*relayNode) {
		a, b := nodes[1].dial(t), nodes[2].dial(t)
		for _, ch := range frame.Append(nil, b.ID(), []byte("dribbled across")) {
			if _, err := a.NetConn().Write([]byte{ch}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
		if got := recv(t, b, 5*time.Second); string(got) != "dribbled across" {
			t.Fatalf("got %q", got)
		}
	}},
	{"1 MiB frame", func(t *testing.T, nodes []*relayNode) {
		a, b := nodes[0].dial(t), nodes[2].dial(t)
		payload := make([]byte, 1<<20)
		for i := range payload {
			payload[i] = byte('a' + i%26)
		}
		go a.Send(b.ID(), payload)
		if got := recv(t, b, 10*time.Second); !bytes.Equal(got, payload) {
			t.Fatalf("got %d bytes, want the 1 MiB payload", len(got))
		}
	}},
	{"unknown destination on a remote node is counted there", func(t *testing.T, nodes []*relayNode) {
		a, b := nodes[0].dial(t), nodes[1].dial(t)
		// An ID of node 1 that no connection holds.
		unknown := shard.Scheme{Bits: clusterNodeBits, Self: 1}.Stamp(b.ID() ^ 0x00a5a5a5)
		before0, before1 := nodeDrops(nodes[0], relay.DropUnknownDest), nodeDrops(nodes[1], relay.DropUnknownDest)
		if err := a.Send(unknown, []byte("into the void")); err != nil {
			t.Fatal(err)
		}
		if err := a.Send(b.ID(), []byte("still here")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, b, 5*time.Second); string(got) != "still here" {
			t.Fatalf("got %q", got)
		}
		servertest.WaitFor(t, "node 1 to count the drop", 5*time.Second, func() bool {
			return nodeDrops(nodes[1], relay.DropUnknownDest) == before1+1
		})
		if n := nodeDrops(nodes[0], relay.DropUnknownDest); n != before0 {
			t.Fatalf("the sender's node counted %d unknown destinations, want none", n-before0)
		}
	}},
	{"a reader that stops pauses its senders on other nodes", func(t *testing.T, nodes []*relayNode) {
		// a floods c, which never reads, from another node; b and d, an
		// unrelated pair on two nodes, keep talking meanwhile. The flood
		// must be paused at its source (the pause crosses the bus), not
		// dropped on c's node, and must not stall the pair.
		c := rawpeer.Dial(t, nodes[2].addr, rawpeer.Bufs{Rcv: 4 << 10})
		a, b, d := nodes[0].dial(t), nodes[1].dial(t), nodes[0].dial(t)
		pausesBefore := nodes[0].metrics().BackpressurePauses
		relayedBefore := nodes[2].metrics().BytesRelayed
		flood := bytes.Repeat([]byte{'f'}, 64<<10)
		go func() {
			for a.Send(c.ID, flood) == nil { // until a is closed
			}
		}()
		servertest.WaitFor(t, "a to be paused on its own node", 10*time.Second, func() bool {
			return nodes[0].metrics().BackpressurePauses > pausesBefore
		})
		for i := range 500 {
			msg := fmt.Appendf(nil, "ping %d", i)
			if err := b.Send(d.ID(), msg); err != nil {
				t.Fatal(err)
			}
			if got := recv(t, d, 10*time.Second); !bytes.Equal(got, msg) {
				t.Fatalf("d got %q, want %q", got, msg)
			}
			if err := d.Send(b.ID(), msg); err != nil {
				t.Fatal(err)
			}
			if got := recv(t, b, 10*time.Second); !bytes.Equal(got, msg) {
				t.Fatalf("b got %q, want %q", got, msg)
			}
		}
		for _, n := range nodes {
			if v := nodeDrops(n, relay.DropRemoteOverLimit); v != 0 {
				t.Fatalf("node %d dropped %d frames for a reader over its limit: the pause did not hold the flood", n.index, v)
			}
		}
		// What reached c's queue is its limit plus what was in flight
		// when the pause landed (at most the hard bound, 4 + 70 MiB),
		// not the flood's rate times the test's length.
		if got := nodes[2].metrics().BytesRelayed - relayedBefore; got > 80<<20 {
			t.Fatalf("%d MiB reached the reader that stopped", got>>20)
		}
		a.Close()
	}},
	{"a remote receiver that leaves", func(t *testing.T, nodes []*relayNode) {
		a, b, c := nodes[0].dial(t), nodes[1].dial(t), nodes[1].dial(t)
		if err := a.Send(b.ID(), []byte("before")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, b, 5*time.Second); string(got) != "before" {
			t.Fatalf("got %q", got)
		}
		gone := b.ID()
		open := nodes[1].open()
		b.Close()
		servertest.WaitFor(t, "node 1 to see b leave", 5*time.Second, func() bool { return nodes[1].open() < open })
		before := nodeDrops(nodes[1], relay.DropUnknownDest)
		if err := a.Send(gone, []byte("after")); err != nil {
			t.Fatal(err)
		}
		// The sender stays connected and keeps working.
		if err := a.Send(c.ID(), []byte("to c")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, c, 5*time.Second); string(got) != "to c" {
			t.Fatalf("got %q", got)
		}
		servertest.WaitFor(t, "node 1 to count the frame for the departed ID", 5*time.Second, func() bool {
			return nodeDrops(nodes[1], relay.DropUnknownDest) == before+1
		})
	}},
	{"two remote senders of 32 KiB frames never interleave", func(t *testing.T, nodes []*relayNode) {
		r := nodes[1].dial(t)
		const frames = 64
		senders := []*client.Conn{nodes[0].dial(t), nodes[2].dial(t)}
		for si, s := range senders {
			go func() {
				rng := rand.New(rand.NewPCG(uint64(si), 11))
				var buf []byte
				for range frames {
					buf = frame.Append(buf, r.ID(), repeat(string(rune('A'+si)), 32<<10))
				}
				for len(buf) > 0 {
					n := min(len(buf), 1+rng.IntN(50000))
					if _, err := s.NetConn().Write(buf[:n]); err != nil {
						return
					}
					buf = buf[n:]
				}
			}()
		}
		count := map[byte]int{}
		for range 2 * frames {
			got := recv(t, r, 10*time.Second)
			if len(got) != 32<<10 || !bytes.Equal(got, bytes.Repeat(got[:1], len(got))) {
				t.Fatalf("frame of %d bytes is not one sender's 32 KiB: starts %q", len(got), trim(got))
			}
			count[got[0]]++
		}
		if count['A'] != frames || count['B'] != frames {
			t.Fatalf("frames per sender: %v", count)
		}
	}},
	{"order per pair, three nodes at once", func(t *testing.T, nodes []*relayNode) {
		// Every node's client sends 2000 numbered frames, in many writes,
		// to each other node's client; each receiver checks that every
		// sender's numbers run 0, 1, 2, ... with no gap.
		const per = 2000
		var conns []*client.Conn
		for _, n := range nodes {
			conns = append(conns, n.dial(t))
		}
		for i, src := range conns {
			go func() {
				var buf []byte
				for seq := range per {
					for j, dst := range conns {
						if j != i {
							buf = frame.Append(buf, dst.ID(), fmt.Appendf(nil, "%d:%d:%s", i, seq, bytes.Repeat([]byte{'x'}, seq%700)))
						}
					}
					if len(buf) > 16<<10 || seq == per-1 {
						if _, err := src.NetConn().Write(buf); err != nil {
							return
						}
						buf = buf[:0]
					}
				}
			}()
		}
		for j, dst := range conns {
			next := map[int]int{}
			for range per * (len(conns) - 1) {
				got := recv(t, dst, 10*time.Second)
				var from, seq int
				if _, err := fmt.Sscanf(string(got), "%d:%d:", &from, &seq); err != nil {
					t.Fatalf("receiver %d: frame %q: %v", j, trim(got), err)
				}
				want := fmt.Appendf(nil, "%d:%d:%s", from, seq, bytes.Repeat([]byte{'x'}, seq%700))
				if seq != next[from] || !bytes.Equal(got, want) {
					t.Fatalf("receiver %d: from %d got #%d (%d bytes), want #%d", j, from, seq, len(got), next[from])
				}
				next[from]++
			}
		}
	}},
}

func TestClusterEndToEnd(t *testing.T) {
	_, nodes := startNodes(t, nil, nil)
	for _, tc := range clusterCases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, nodes) })
	}
	// Nothing the cases did may have cost a frame on the bus.
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
