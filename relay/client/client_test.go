package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeRelay is just enough of a relay to test the client against: it assigns
// IDs (with zero bytes in them, on purpose) and forwards each frame's payload
// and NUL to the destination.
type fakeRelay struct {
	ln    net.Listener
	mu    sync.Mutex // guards conns and serialises writes to them
	conns map[uint32]net.Conn
	last  uint32
	wg    sync.WaitGroup
}

func startFakeRelay(t *testing.T) *fakeRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &fakeRelay{ln: ln, conns: make(map[uint32]net.Conn), last: 0x00010000}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(func() {
		ln.Close()
		r.mu.Lock()
		for _, nc := range r.conns {
			nc.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return r
}

func (r *fakeRelay) addr() string { return r.ln.Addr().String() }

func (r *fakeRelay) accept() {
	defer r.wg.Done()
	for {
		nc, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		r.last += 0x100
		id := r.last
		r.conns[id] = nc
		r.mu.Unlock()
		r.wg.Add(1)
		go r.serve(id, nc)
	}
}

func (r *fakeRelay) serve(id uint32, nc net.Conn) {
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.conns, id)
		r.mu.Unlock()
		nc.Close()
	}()
	if _, err := nc.Write(binary.BigEndian.AppendUint32(nil, id)); err != nil {
		return
	}
	br := bufio.NewReader(nc)
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return
		}
		frame, err := br.ReadBytes(0)
		if err != nil {
			return
		}
		r.mu.Lock()
		if dst, ok := r.conns[binary.BigEndian.Uint32(hdr[:])]; ok {
			dst.Write(frame)
		}
		r.mu.Unlock()
	}
}

// scriptedServer accepts one connection and hands it to script, which plays
// the relay's part byte by byte. Cleanup waits for script to return.
func scriptedServer(t *testing.T, script func(nc net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		defer nc.Close()
		script(nc)
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func idBytes(id uint32) []byte { return binary.BigEndian.AppendUint32(nil, id) }

func recv(t *testing.T, c *Conn) string {
	t.Helper()
	p, err := c.Recv()
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	return string(p)
}

func TestDialReadsID(t *testing.T) {
	addr := scriptedServer(t, func(nc net.Conn) {
		nc.Write(idBytes(0x00ab00cd))
		io.Copy(io.Discard, nc) // hold the connection until the client closes
	})
	c := dial(t, addr)
	if c.ID() != 0x00ab00cd {
		t.Fatalf("ID = %#x, want 0x00ab00cd", c.ID())
	}
}

func TestDialRejectsZeroID(t *testing.T) {
	addr := scriptedServer(t, func(nc net.Conn) {
		nc.Write(idBytes(0))
		io.Copy(io.Discard, nc)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := Dial(ctx, addr); err == nil {
		c.Close()
		t.Fatal("Dial accepted ID 0")
	}
}

func TestDialIDCutShort(t *testing.T) {
	addr := scriptedServer(t, func(nc net.Conn) { nc.Write([]byte{1, 2}) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Dial(ctx, addr)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Dial = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestSendRecvThroughRelay(t *testing.T) {
	r := startFakeRelay(t)
	one, two := dial(t, r.addr()), dial(t, r.addr())
	if one.ID() == two.ID() || one.ID() == 0 || two.ID() == 0 {
		t.Fatalf("IDs %#x and %#x", one.ID(), two.ID())
	}

	if err := one.Send(two.ID(), []byte("hello, number 2")); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, two); got != "hello, number 2" {
		t.Fatalf("two got %q", got)
	}
	if err := two.Send(one.ID(), []byte("hello back, number 1")); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, one); got != "hello back, number 1" {
		t.Fatalf("one got %q", got)
	}

	// Self, empty, high bytes, and a payload bigger than the read buffer,
	// all in order.
	big := strings.Repeat("0123456789", 3*readBufSize/10)
	payloads := []string{"to myself", "", "\xff\xfe\x01", big, "after big"}
	for _, p := range payloads {
		if err := one.Send(one.ID(), []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range payloads {
		if got := recv(t, one); got != want {
			t.Fatalf("payload %d: got %d bytes, want %d", i, len(got), len(want))
		}
	}
}

func TestSendRejectsNULWithoutWriting(t *testing.T) {
	got := make(chan []byte, 1)
	addr := scriptedServer(t, func(nc net.Conn) {
		nc.Write(idBytes(1))
		b, _ := io.ReadAll(nc)
		got <- b
	})
	c := dial(t, addr)
	for _, p := range []string{"\x00", "a\x00b", "abc\x00"} {
		if err := c.Send(2, []byte(p)); !errors.Is(err, ErrNULInPayload) {
			t.Fatalf("Send(%q) = %v, want ErrNULInPayload", p, err)
		}
	}
	if err := c.Send(0x00000300, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if b, want := <-got, "\x00\x00\x03\x00ok\x00"; string(b) != want {
		t.Fatalf("server read %q, want only %q", b, want)
	}
}

// countingConn counts Write calls.
type countingConn struct {
	net.Conn
	writes int
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes++
	return c.Conn.Write(b)
}

func TestSendIsOneWrite(t *testing.T) {
	got := make(chan []byte, 1)
	addr := scriptedServer(t, func(nc net.Conn) {
		nc.Write(idBytes(1))
		b, _ := io.ReadAll(nc)
		got <- b
	})
	c := dial(t, addr)
	cc := &countingConn{Conn: c.nc}
	c.nc = cc
	if err := c.Send(7, []byte("payload")); err != nil {
		t.Fatal(err)
	}
	if cc.writes != 1 {
		t.Errorf("Send made %d writes, want 1", cc.writes)
	}
	c.Close()
	if b, want := <-got, "\x00\x00\x00\x07payload\x00"; string(b) != want {
		t.Fatalf("server read %q, want %q", b, want)
	}
}

func TestRecvSeveralFramesInOneWrite(t *testing.T) {
	addr := scriptedServer(t, func(nc net.Conn) {
		// The ID and four frames in a single segment.
		nc.Write([]byte("\x00\x00\x00\x09one\x00two\x00\x00three\x00"))
	})
	c := dial(t, addr)
	if c.ID() != 9 {
		t.Fatalf("ID = %d, want 9", c.ID())
	}
	for _, want := range []string{"one", "two", "", "three"} {
		if got := recv(t, c); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if _, err := c.Recv(); err != io.EOF {
		t.Fatalf("Recv after the server closed = %v, want io.EOF", err)
	}
}

func TestRecvFrameSplitAcrossWrites(t *testing.T) {
	big := bytes.Repeat([]byte("xyz"), readBufSize)
	addr := scriptedServer(t, func(nc net.Conn) {
		pieces := [][]byte{
			idBytes(5)[:1], idBytes(5)[1:],
			[]byte("hel"), []byte("lo, wor"), []byte("ld\x00sec"), []byte("ond\x00"),
			big[:1000], big[1000 : readBufSize+7], append(big[readBufSize+7:], 0),
			[]byte("cut sho"),
		}
		for _, p := range pieces {
			nc.Write(p)
			// Give the client a chance to read each piece on its own;
			// nothing depends on it happening.
			time.Sleep(5 * time.Millisecond)
		}
	})
	c := dial(t, addr)
	if c.ID() != 5 {
		t.Fatalf("ID = %d, want 5", c.ID())
	}
	for _, want := range []string{"hello, world", "second", string(big)} {
		if got := recv(t, c); got != want {
			t.Fatalf("got %d bytes, want %d", len(got), len(want))
		}
	}
	if _, err := c.Recv(); err != io.ErrUnexpectedEOF {
		t.Fatalf("Recv of a frame cut by close = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestDialTimesOutWithoutID(t *testing.T) {
	addr := scriptedServer(t, func(nc net.Conn) {
		io.Copy(io.Discard, nc) // never send an ID; wait for the client to give up
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	c, err := Dial(ctx, addr)
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded without an ID")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial = %v, want context.DeadlineExceeded", err)
	}
}

func TestDialCanceledWithoutID(t *testing.T) {
	addr := scriptedServer(t, func(nc net.Conn) { io.Copy(io.Discard, nc) })
	ctx, cancel := context.WithCancel(context.Background())
	timer := time.AfterFunc(20*time.Millisecond, cancel)
	defer timer.Stop()
	c, err := Dial(ctx, addr)
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded without an ID")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial = %v, want context.Canceled", err)
	}
}

func TestRecvReadDeadline(t *testing.T) {
	timedOut := make(chan struct{})
	addr := scriptedServer(t, func(nc net.Conn) {
		nc.Write(idBytes(1))
		<-timedOut
		nc.Write([]byte("late\x00"))
		io.Copy(io.Discard, nc)
	})
	c := dial(t, addr)
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := c.Recv()
	close(timedOut)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Recv = %v, want os.ErrDeadlineExceeded", err)
	}
	// The connection survives a timeout once the deadline is lifted.
	c.SetReadDeadline(time.Time{})
	if got := recv(t, c); got != "late" {
		t.Fatalf("got %q, want %q", got, "late")
	}
}

func TestSendRecvAllocateNothing(t *testing.T) {
	// An echo server that allocates nothing either, since AllocsPerRun
	// counts every goroutine's allocations. The header comes back as part
	// of the payload; 0x01 bytes keep it free of NULs.
	addr := scriptedServer(t, func(nc net.Conn) {
		nc.Write(idBytes(1))
		buf := make([]byte, 4096)
		for {
			n, err := nc.Read(buf)
			if err != nil {
				return
			}
			if _, err := nc.Write(buf[:n]); err != nil {
				return
			}
		}
	})
	c := dial(t, addr)
	payload := []byte("ping ping ping")
	want := "\x01\x01\x01\x01" + string(payload)
	roundTrip := func() {
		if err := c.Send(0x01010101, payload); err != nil {
			t.Fatal(err)
		}
		if got, err := c.Recv(); err != nil || string(got) != want {
			t.Fatalf("Recv = %q, %v", got, err)
		}
	}
	roundTrip()
	if allocs := testing.AllocsPerRun(200, roundTrip); allocs != 0 {
		t.Errorf("%v allocations per Send+Recv, want 0", allocs)
	}
}
