package relay_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/frame"
	"github.com/ringrelay/ringrelay/internal/servertest"
	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
	"github.com/ringrelay/ringrelay/relay/client"
)

// e2eCases is the one table every backend runs.
var e2eCases = []struct {
	name string
	run  func(t *testing.T, ts *testServer)
}{
	{"exchange", func(t *testing.T, ts *testServer) {
		a, b := ts.dial(t), ts.dial(t)
		if a.ID() == 0 || b.ID() == 0 || a.ID() == b.ID() {
			t.Fatalf("bad IDs %08x %08x", a.ID(), b.ID())
		}
		if err := a.Send(b.ID(), []byte("hello, number 2")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, b, 5*time.Second); string(got) != "hello, number 2" {
			t.Fatalf("b got %q", got)
		}
		if err := b.Send(a.ID(), []byte("hello back, number 1")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, a, 5*time.Second); string(got) != "hello back, number 1" {
			t.Fatalf("a got %q", got)
		}
	}},
	{"1000 clients get distinct IDs", func(t *testing.T, ts *testServer) {
		const n = 1000
		conns := make([]*client.Conn, n)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				c, err := client.Dial(ctx, ts.addr)
				if err != nil {
					errs <- err
					return
				}
				conns[i] = c
			}()
		}
		wg.Wait()
		close(errs)
		defer func() {
			for _, c := range conns {
				if c != nil {
					c.Close()
				}
			}
		}()
		for err := range errs {
			t.Fatalf("dial: %v", err)
		}
		seen := make(map[uint32]bool, n)
		for _, c := range conns {
			if c.ID() == 0 || seen[c.ID()] {
				t.Fatalf("ID %08x is zero or repeated", c.ID())
			}
			seen[c.ID()] = true
		}
		// Every one of them is routable: the last sends to the first.
		if err := conns[n-1].Send(conns[0].ID(), []byte("from the last")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, conns[0], 5*time.Second); string(got) != "from the last" {
			t.Fatalf("got %q", got)
		}
	}},
	{"200 frames in one write arrive in order", func(t *testing.T, ts *testServer) {
		a, b := ts.dial(t), ts.dial(t)
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
	{"frame written one byte at a time", func(t *testing.T, ts *testServer) {
		a, b := ts.dial(t), ts.dial(t)
		// A header with zero bytes in it must not end the frame early.
		for _, ch := range frame.Append(nil, b.ID(), []byte("dribbled")) {
			if _, err := a.NetConn().Write([]byte{ch}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
		if got := recv(t, b, 5*time.Second); string(got) != "dribbled" {
			t.Fatalf("got %q", got)
		}
	}},
	{"1 MiB frame", func(t *testing.T, ts *testServer) {
		a, b := ts.dial(t), ts.dial(t)
		payload := make([]byte, 1<<20)
		for i := range payload {
			payload[i] = byte('a' + i%26)
		}
		go a.Send(b.ID(), payload)
		if got := recv(t, b, 10*time.Second); !bytes.Equal(got, payload) {
			t.Fatalf("got %d bytes, want the 1 MiB payload", len(got))
		}
	}},
	{"unknown destination dropped, sender keeps working", func(t *testing.T, ts *testServer) {
		a, b := ts.dial(t), ts.dial(t)
		unknown := a.ID() ^ b.ID() ^ 0x5a5a5a5a
		if unknown == 0 || unknown == a.ID() || unknown == b.ID() {
			unknown = a.ID() + b.ID() + 1
		}
		if err := a.Send(unknown, []byte("into the void")); err != nil {
			t.Fatal(err)
		}
		if err := a.Send(b.ID(), []byte("still here")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, b, 5*time.Second); string(got) != "still here" {
			t.Fatalf("got %q", got)
		}
		// Counted once, and the sender's connection was left alone.
		var m counters
		servertest.WaitFor(t, "the drop to be counted", 5*time.Second, func() bool {
			m = ts.metrics()
			return m.Dropped[relay.DropUnknownDest] == 1
		})
		if n := m.FramesRelayed; n != 1 {
			t.Fatalf("frames relayed = %d, want 1", n)
		}
		for _, r := range relay.CloseReasons() {
			if n := m.Closed[r]; n != 0 {
				t.Fatalf("%d connections closed (%s) after a frame to an unknown ID", n, r)
			}
		}
	}},
	{"self-send", func(t *testing.T, ts *testServer) {
		a := ts.dial(t)
		if err := a.Send(a.ID(), []byte("note to self")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, a, 5*time.Second); string(got) != "note to self" {
			t.Fatalf("got %q", got)
		}
	}},
	{"two senders of 32 KiB frames never interleave", func(t *testing.T, ts *testServer) {
		r := ts.dial(t)
		const frames = 64
		senders := []*client.Conn{ts.dial(t), ts.dial(t)}
		for si, s := range senders {
			go func() {
				rng := rand.New(rand.NewPCG(uint64(si), 7))
				var buf []byte
				for range frames {
					buf = frame.Append(buf, r.ID(), repeat(string(rune('A'+si)), 32<<10))
				}
				// Random chunking so frames straddle reads on the server.
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
	{"disconnect mid-frame delivers nothing partial", func(t *testing.T, ts *testServer) {
		a, b, c := ts.dial(t), ts.dial(t), ts.dial(t)
		partial := frame.Append(nil, b.ID(), []byte("this frame never ends"))
		if _, err := a.NetConn().Write(partial[:len(partial)-1]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		a.Close()
		if err := c.Send(b.ID(), []byte("whole")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, b, 5*time.Second); string(got) != "whole" {
			t.Fatalf("b's first payload is %q, want only the whole frame", got)
		}
		expectNothing(t, b, 100*time.Millisecond)
	}},
	{"storm of clients resetting", func(t *testing.T, ts *testServer) {
		const n = 300
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				nc, err := net.Dial("tcp", ts.addr)
				if err != nil {
					t.Errorf("dial: %v", err)
					return
				}
				// Half a frame, then RST.
				nc.Write([]byte{1, 2, 3, 4, 'x', 'y'})
				nc.(*net.TCPConn).SetLinger(0)
				nc.Close()
			}()
		}
		wg.Wait()
		servertest.WaitFor(t, "all reset connections closed", 10*time.Second, func() bool { return ts.open() == 0 })
		a, b := ts.dial(t), ts.dial(t)
		if err := a.Send(b.ID(), []byte("after the storm")); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, b, 5*time.Second); string(got) != "after the storm" {
			t.Fatalf("got %q", got)
		}
	}},
	{"no descriptor leaked after 2000 connect/close cycles", func(t *testing.T, ts *testServer) {
		warm := ts.dial(t)
		warm.Close()
		servertest.WaitFor(t, "warm-up connection closed", 5*time.Second, func() bool { return ts.open() == 0 })
		before := openFDs(t)
		for i := range 2000 {
			nc, err := net.Dial("tcp", ts.addr)
			if err != nil {
				t.Fatalf("cycle %d: %v", i, err)
			}
			if i%2 == 0 {
				var id [4]byte
				nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := nc.Read(id[:]); err != nil {
					t.Fatalf("cycle %d: read id: %v", i, err)
				}
			}
			nc.Close()
		}
		servertest.WaitFor(t, "all 2000 connections closed by the server", 20*time.Second, func() bool { return ts.open() == 0 })
		// The server closes descriptors a moment after it reports the
		// connection gone (io_uring closes asynchronously); give it that
		// moment, then insist on the exact count.
		deadline := time.Now().Add(10 * time.Second)
		for openFDs(t) != before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if after := openFDs(t); after != before {
			t.Fatalf("descriptors: %d before, %d after 2000 cycles", before, after)
		}
	}},
}

func TestEndToEnd(t *testing.T) {
	for _, backend := range backends {
		for _, loops := range loopCounts {
			for _, tc := range e2eCases {
				t.Run(fmt.Sprintf("%s/loops=%d/%s", backend, loops, tc.name), func(t *testing.T) {
					tc.run(t, startServerN(t, backend, loops, nil))
				})
			}
		}
	}
}

// TestBackendInUse guards the table above: it must really exercise both
// engines, not fall back silently.
func TestBackendInUse(t *testing.T) {
	for _, backend := range backends {
		loop, err := reactor.Open("127.0.0.1:0", reactor.Config{Backend: backend})
		if err != nil {
			t.Fatalf("%s: %v", backend, err)
		}
		if loop.Backend() != backend {
			t.Errorf("asked for %s, got %s", backend, loop.Backend())
		}
		loop.Close()
	}
}
