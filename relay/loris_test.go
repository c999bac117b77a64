package relay_test

// Slow-loris and memory attacks: many connections that hold partial frames,
// bare headers or nothing at all, against the relay's memory bound and its
// frame timeout, while a well-behaved pair keeps talking.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/frame"
	"github.com/ringrelay/ringrelay/internal/servertest"
	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
	"github.com/ringrelay/ringrelay/relay/client"
)

const (
	lorisHolders  = 1000 // each holds a partial frame just under MaxFrame
	lorisIdle     = 100  // connect and never send a byte
	lorisHeaders  = 100  // send a 4-byte header and nothing more
	lorisMaxFrame = 64 << 10
	// lorisConnCost bounds what one connection costs besides its partial
	// frame, on both sides of the loopback: the relay's peer record and
	// reactor.Conn (a few hundred bytes, plus an 8-byte output buffer for
	// the ID), the test's net.Conn with its poll descriptor (under 1 KiB).
	lorisConnCost = 4 << 10
)

// lorisMemoryBound is how much the process may grow while the attackers
// hold their connections:
//
//	growth <= 2 x R x (holders x MaxFrame+5 + conns x lorisConnCost) + 32 MiB
//
// The relay buffers a partial frame up to MaxFrame+5 bytes (header,
// payload, and the NUL it waits for) per connection, a header-only client
// 4 of them, an idle one nothing; lorisLive has the exact sum. Go's
// collector lets the heap grow to twice the live data (GOGC=100), which
// also covers the parser's geometric growth on the way to MaxFrame+1. R is
// 1, or 4 under the race detector, which keeps two bytes of shadow per
// byte touched plus metadata. 32 MiB of slack covers the runtime.
func lorisMemoryBound(holders, conns int) int64 {
	live := lorisLive(holders, conns)
	factor := int64(2)
	if raceEnabled() {
		factor *= 4
	}
	return factor*live + 32<<20
}

// lorisLive is what the attackers may make the relay (and this test) keep:
// MaxFrame+5 bytes per partial frame, which Go's allocator rounds up to
// whole 8 KiB pages as it does every allocation over 32 KiB, and
// lorisConnCost per connection.
func lorisLive(holders, conns int) int64 {
	const page = 8 << 10
	partial := (lorisMaxFrame + 5 + page - 1) / page * page
	return int64(holders)*int64(partial) + int64(conns)*lorisConnCost
}

func lorisEdit(frameTimeout time.Duration) func(*relay.Config, *reactor.Config) {
	return func(rc *relay.Config, _ *reactor.Config) {
		rc.MaxFrame = lorisMaxFrame
		rc.FrameTimeout = frameTimeout
	}
}

// lorisDial opens n raw connections in parallel and reads each one's ID.
func lorisDial(t *testing.T, ts *testServer, n int) ([]net.Conn, []uint32) {
	t.Helper()
	conns := make([]net.Conn, n)
	ids := make([]uint32, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				nc, err := net.DialTimeout("tcp", ts.addr, progressSlack)
				if err != nil {
					errs <- err
					continue
				}
				conns[i] = nc
				nc.SetReadDeadline(time.Now().Add(progressSlack))
				id, err := frame.ReadID(nc)
				if err != nil {
					errs <- fmt.Errorf("read id: %w", err)
					continue
				}
				nc.SetReadDeadline(time.Time{})
				ids[i] = id
			}
		}()
	}
	wg.Wait()
	close(errs)
	t.Cleanup(func() {
		for _, nc := range conns {
			if nc != nil {
				nc.Close()
			}
		}
	})
	for err := range errs {
		t.Fatalf("dial: %v", err)
	}
	return conns, ids
}

// lorisWriteAll writes b on every connection, 16 at a time.
func lorisWriteAll(t *testing.T, conns []net.Conn, b []byte) {
	t.Helper()
	errs := make(chan error, len(conns))
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < len(conns); i = int(next.Add(1) - 1) {
				conns[i].SetWriteDeadline(time.Now().Add(progressSlack))
				if _, err := conns[i].Write(b); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("write: %v", err)
	}
}

// lorisPair is a well-behaved pair that keeps exchanging frames both ways
// while an attack goes on.
type lorisPair struct {
	a, b     *client.Conn
	rounds   atomic.Int64
	stop     chan struct{}
	done     chan error
	finished bool // used by the test goroutine only
}

func lorisStartPair(t *testing.T, ts *testServer) *lorisPair {
	p := &lorisPair{a: ts.dial(t), b: ts.dial(t), stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		p.done <- p.run()
	}()
	t.Cleanup(func() { p.finish(t) })
	return p
}

func (p *lorisPair) run() error {
	for i := 0; ; i++ {
		select {
		case <-p.stop:
			return nil
		default:
		}
		for _, dir := range [2][2]*client.Conn{{p.a, p.b}, {p.b, p.a}} {
			from, to := dir[0], dir[1]
			want := fmt.Sprintf("round %d from %08x", i, from.ID())
			if err := from.Send(to.ID(), []byte(want)); err != nil {
				return fmt.Errorf("round %d: send: %w", i, err)
			}
			to.SetReadDeadline(time.Now().Add(progressSlack))
			got, err := to.Recv()
			if err != nil {
				return fmt.Errorf("round %d: recv: %w", i, err)
			}
			if string(got) != want {
				return fmt.Errorf("round %d: got %q, want %q", i, got, want)
			}
		}
		p.rounds.Add(1)
		time.Sleep(time.Millisecond)
	}
}

// finish stops the exchange and reports how it went; idempotent.
func (p *lorisPair) finish(t *testing.T) {
	t.Helper()
	if p.finished {
		return
	}
	p.finished = true
	close(p.stop)
	if err := <-p.done; err != nil {
		t.Errorf("well-behaved pair: %v", err)
	}
}

// lorisServerQueues reads /proc/net/tcp for the relay's side of every
// established connection to port: how many there are, and how many bytes
// the kernel still holds that the relay has not read.
func lorisServerQueues(t *testing.T, port int) (conns, unread int) {
	t.Helper()
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatalf("read /proc/net/tcp: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 5 || f[3] != "01" { // 01: ESTABLISHED
			continue
		}
		_, lp, _ := strings.Cut(f[1], ":")
		if p, err := strconv.ParseUint(lp, 16, 16); err != nil || int(p) != port {
			continue
		}
		_, rx, _ := strings.Cut(f[4], ":")
		n, _ := strconv.ParseUint(rx, 16, 32)
		conns++
		unread += int(n)
	}
	return conns, unread
}

// lorisPartial is a frame held just under MaxFrame: a header and
// MaxFrame-1 payload bytes, with no NUL yet.
func lorisPartial() []byte {
	return append([]byte{0x12, 0x34, 0x56, 0x78}, bytes.Repeat([]byte{'z'}, lorisMaxFrame-1)...)
}

// The frame timeout runs with one loop and with four (each loop ticks
// its own connections; the pair and the idle ones talk across loops). The
// memory case, which holds partial frames on their own loop and crosses
// nothing, runs with one loop only, to keep the suite short.
//
// The memory cases measure this whole process (heap, RSS), so the test
// does not run beside others and they run one at a time; the frame-timeout
// cases, which wait out timeouts, then run in parallel with each other.
func TestSlowLoris(t *testing.T) {
	for _, backend := range backends {
		t.Run(fmt.Sprintf("%s/loops=1/memory", backend), func(t *testing.T) { lorisMemory(t, backend, 1) })
	}
	for _, backend := range backends {
		for _, loops := range loopCounts {
			t.Run(fmt.Sprintf("%s/loops=%d/frame-timeout", backend, loops), func(t *testing.T) {
				t.Parallel()
				lorisTimeout(t, backend, loops)
			})
		}
	}
}

// lorisMemory holds every attacker at once (the frame timeout is long) and
// checks that the process grows no more than the limits allow.
func lorisMemory(t *testing.T, backend reactor.Backend, loops int) {
	ts := startServerN(t, backend, loops, lorisEdit(time.Minute))
	_, portStr, _ := net.SplitHostPort(ts.addr)
	port, _ := strconv.Atoi(portStr)
	pair := lorisStartPair(t, ts)

	// Measure from a collected heap, with the pair and the loop warm.
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapBase, liveBase := int64(ms.HeapInuse), int64(ms.HeapAlloc)
	rssBase, err := servertest.RSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	peak := watchMemory(t)

	idle, _ := lorisDial(t, ts, lorisIdle)
	headers, _ := lorisDial(t, ts, lorisHeaders)
	holders, _ := lorisDial(t, ts, lorisHolders)
	lorisWriteAll(t, headers, []byte{0, 0, 0, 0})
	lorisWriteAll(t, holders, lorisPartial())

	// Wait until the relay has read every byte the attackers sent, so the
	// peak below really has every partial frame in the relay's memory.
	want := 2 + lorisIdle + lorisHeaders + lorisHolders
	servertest.WaitFor(t, "the relay to read every attacker's bytes", progressSlack, func() bool {
		n, unread := lorisServerQueues(t, port)
		return n == want && unread == 0
	})
	rounds := pair.rounds.Load()
	servertest.WaitFor(t, "the pair to exchange while the attackers hold on", progressSlack, func() bool { return pair.rounds.Load() > rounds+10 })
	heapPeak, rssPeak := peak()
	pair.finish(t)
	// With the garbage collected, what is left is what the relay holds.
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heapLive := int64(ms.HeapAlloc) - liveBase

	if got := ts.open(); got != int64(want) {
		t.Errorf("%d connections open, want all %d: nobody broke a limit yet", got, want)
	}
	conns := lorisIdle + lorisHeaders + lorisHolders
	limit := lorisMemoryBound(lorisHolders, conns)
	t.Logf("%s, %d loops: %d partial frames of %d bytes, %d header-only, %d idle: live heap +%.1f MiB (formula %.1f MiB), heap in use peak +%.1f MiB, RSS +%.1f MiB (%.1f -> %.1f MiB, bound +%.1f MiB); the pair did %d rounds",
		backend, loops, lorisHolders, lorisMaxFrame+3, lorisHeaders, lorisIdle, mib(heapLive), mib(lorisLive(lorisHolders, conns)),
		mib(heapPeak-heapBase), mib(rssPeak-rssBase), mib(rssBase), mib(rssPeak), mib(limit), pair.rounds.Load())
	if rssPeak-rssBase > limit {
		t.Errorf("RSS grew %.1f MiB under the attack, more than the %.1f MiB the limits allow", mib(rssPeak-rssBase), mib(limit))
	}
	// Without the collector's headroom and the race detector's shadow, the
	// live heap is the formula itself (a few MiB of slack for the runtime).
	if heapLive > lorisLive(lorisHolders, conns)+4<<20 {
		t.Errorf("live heap grew %.1f MiB holding the attack, more than MaxFrame+5 (in whole pages) per partial frame and %d B per connection (%.1f MiB)",
			mib(heapLive), lorisConnCost, mib(lorisLive(lorisHolders, conns)))
	}
	for _, nc := range idle {
		nc.Close()
	}
	for _, nc := range headers {
		nc.Close()
	}
	for _, nc := range holders {
		nc.Close()
	}
}

// lorisTimeout checks the frame timeout: partial frames and bare headers
// are closed once it runs out, idle connections are not, and the pair
// keeps working throughout.
func lorisTimeout(t *testing.T, backend reactor.Backend, loops int) {
	const frameTimeout = 500 * time.Millisecond
	ts := startServerN(t, backend, loops, lorisEdit(frameTimeout))
	pair := lorisStartPair(t, ts)
	before := ts.metrics().Closed[relay.ClosedIncomplete]

	idle, idleIDs := lorisDial(t, ts, lorisIdle)
	headers, _ := lorisDial(t, ts, lorisHeaders)
	holders, _ := lorisDial(t, ts, lorisHolders)
	lorisWriteAll(t, headers, []byte{0, 0, 0, 0})
	lorisWriteAll(t, holders, lorisPartial())

	// Every attacker that started a frame sees its connection end: EOF,
	// or a reset if the relay closed with bytes still unread.
	deadline := time.Now().Add(progressSlack)
	for i, nc := range slices.Concat(headers, holders) {
		nc.SetReadDeadline(deadline)
		var b [64]byte
		n, err := nc.Read(b[:])
		if n > 0 || (err != io.EOF && !errors.Is(err, syscall.ECONNRESET)) {
			t.Fatalf("attacker %d: want EOF or reset, got %d bytes and %v", i, n, err)
		}
	}
	closedAll := time.Now()
	kicked := uint64(lorisHeaders + lorisHolders)
	servertest.WaitFor(t, "the relay to count every frame-timeout close", progressSlack, func() bool {
		return ts.metrics().Closed[relay.ClosedIncomplete]-before == kicked
	})

	// The idle connections outlived several timeouts by now; they must
	// still be open and routable.
	time.Sleep(time.Until(closedAll.Add(3 * frameTimeout)))
	for i, nc := range idle {
		nc.SetReadDeadline(time.Now().Add(time.Millisecond))
		var b [1]byte
		if n, err := nc.Read(b[:]); n > 0 || !os.IsTimeout(err) {
			t.Fatalf("idle client %d (id %08x): want nothing, got %d bytes and %v", i, idleIDs[i], n, err)
		}
	}
	pair.finish(t)
	for i, nc := range idle {
		msg := fmt.Sprintf("still there, %08x?", idleIDs[i])
		if err := pair.a.Send(idleIDs[i], []byte(msg)); err != nil {
			t.Fatal(err)
		}
		nc.SetReadDeadline(time.Now().Add(progressSlack))
		got, err := bufio.NewReader(nc).ReadString(0)
		if err != nil || got != msg+"\x00" {
			t.Fatalf("idle client %d (id %08x): got %q, %v; want %q", i, idleIDs[i], got, err, msg)
		}
	}
	if got := ts.metrics().Closed[relay.ClosedIncomplete] - before; got != kicked {
		t.Errorf("relay counted %d frame-timeout closes, want %d", got, kicked)
	}
	if n := ts.open(); n != int64(2+lorisIdle) {
		t.Errorf("%d connections open, want the pair and the %d idle ones", n, lorisIdle)
	}
	t.Logf("%s, %d loops: %d partial frames and %d bare headers closed after the %v frame timeout, %d idle kept; the pair did %d rounds",
		backend, loops, lorisHolders, lorisHeaders, frameTimeout, lorisIdle, pair.rounds.Load())
}
