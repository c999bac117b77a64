package relay_test

// The limits of docs/protocol.md ("Limits, and what bad input gets") over
// real loopback sockets, on both backends. Each case checks a number it
// measured: frames counted and sequence-checked at the receiver, bytes the
// senders got past Write, the relay's own counters. The limits are set
// small so that each case fills them in well under a second.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringrelay/ringrelay/internal/frame"
	"github.com/ringrelay/ringrelay/internal/payload"
	"github.com/ringrelay/ringrelay/internal/rawpeer"
	"github.com/ringrelay/ringrelay/internal/servertest"
	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
	"github.com/ringrelay/ringrelay/shard"
)

// drain hands payloads to take until want() of them have arrived. want
// returns -1 while the total is not known yet. It fails when nothing
// arrives for within.
func limDrain(p *rawpeer.Peer, within time.Duration, want func() int64, take func([]byte) error) (got int64, err error) {
	last := time.Now()
	for {
		if w := want(); w >= 0 && got >= w {
			return got, nil
		}
		b, err := p.Recv(50 * time.Millisecond)
		switch {
		case err == nil:
			got++
			if err := take(b); err != nil {
				return got, err
			}
			last = time.Now()
		case os.IsTimeout(err) && time.Since(last) < within:
		default:
			return got, fmt.Errorf("after %d frames: %w", got, err)
		}
	}
}

// readToEnd reads until the relay ends the stream and returns how it
// ended and the payloads seen on the way. A relay that closes a slow
// destination discards what it had queued, and the kernel may already
// hold the first part of a frame: the stream can end mid-frame.
func limReadToEnd(p *rawpeer.Peer, within time.Duration, take func([]byte) error) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		b, err := p.Recv(time.Until(deadline))
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
				return nil
			}
			return err
		}
		if take != nil {
			if err := take(b); err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("connection still open after %v", within)
}

func limPort(p *rawpeer.Peer) int { return p.NC.LocalAddr().(*net.TCPAddr).Port }

// sockBufs returns the buffer sizes the kernel gave this socket.
func limSockBufs(p *rawpeer.Peer, t testing.TB) (snd, rcv int) {
	t.Helper()
	rc, err := p.NC.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var e1, e2 error
	rc.Control(func(fd uintptr) {
		snd, e1 = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
		rcv, e2 = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	})
	if err := errors.Join(e1, e2); err != nil {
		t.Fatalf("getsockopt: %v", err)
	}
	return snd, rcv
}

// limRelayBufs finds the relay's end of each client's connection among
// this process's descriptors (the relay runs in-process) and returns its
// kernel buffer sizes {snd, rcv}, keyed by the client's port. It only
// reads: getsockname, getpeername, getsockopt. The relay's sockets
// autotune, so this is the size now, not a constant.
func limRelayBufs(t testing.TB, relayAddr string, clients []*rawpeer.Peer) map[int][2]int {
	t.Helper()
	_, portStr, _ := net.SplitHostPort(relayAddr)
	relayPort, _ := strconv.Atoi(portStr)
	want := make(map[int]bool, len(clients))
	for _, c := range clients {
		want[limPort(c)] = true
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[int][2]int, len(clients))
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if link, _ := os.Readlink("/proc/self/fd/" + e.Name()); !strings.HasPrefix(link, "socket:") {
			continue
		}
		local, err1 := unix.Getsockname(fd)
		peer, err2 := unix.Getpeername(fd)
		if err1 != nil || err2 != nil {
			continue
		}
		l4, ok1 := local.(*unix.SockaddrInet4)
		p4, ok2 := peer.(*unix.SockaddrInet4)
		if !ok1 || !ok2 || l4.Port != relayPort || !want[p4.Port] {
			continue
		}
		snd, err1 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
		rcv, err2 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
		if err1 == nil && err2 == nil {
			out[p4.Port] = [2]int{snd, rcv}
		}
	}
	if len(out) != len(clients) {
		t.Fatalf("found the relay's end of %d of %d connections", len(out), len(clients))
	}
	return out
}

// Payloads come from the shared codec: each says who sent it, where it
// stands in that sender's stream and how long it is, so a frame cut,
// spliced or corrupted anywhere fails to decode.
var limCodec = func() *payload.Codec {
	c, err := payload.NewCodec(0x6c696d697473, 4<<10)
	if err != nil {
		panic(err)
	}
	return c
}()

// limPayload builds sender's frame seq, of size bytes, in buf.
func limPayload(buf []byte, sender, seq, size int) []byte {
	return limCodec.Append(buf[:0], uint32(sender), uint64(seq), size)
}

// limParse verifies p and returns who sent it and its sequence number.
func limParse(p []byte) (sender, seq int, err error) {
	s, q, err := limCodec.Decode(p)
	if err != nil {
		return 0, 0, fmt.Errorf("%v (payload starts %q)", err, trim(p))
	}
	return int(s), int(q), nil
}

// limFixed is a frame size function: every payload is n bytes.
func limFixed(n int) func(int) int { return func(int) int { return n } }

// limMixed varies payload sizes from just over the codec's header to about
// 1 KiB, so frames straddle the relay's reads at every offset.
func limMixed(seq int) int { return payload.MinSize + 1 + (seq*7919)%1009 }

// limFlood is a set of senders, each writing numbered frames to one
// destination in its own goroutine.
type limFlood struct {
	stop    atomic.Bool
	wg      sync.WaitGroup
	offered atomic.Int64   // wire bytes handed to Write, counted before the call
	sent    []atomic.Int64 // frames whose Write returned, per sender
	errs    chan error
}

// limStartFlood starts the senders. Sender i writes frames numbered from 0
// with payloads of size(seq) bytes, until stopped or, when limit > 0,
// until it has written limit frames. A write error ends that sender and
// is reported by finish unless the flood was stopped first.
func limStartFlood(senders []*rawpeer.Peer, dest uint32, limit int, size func(seq int) int) *limFlood {
	f := &limFlood{sent: make([]atomic.Int64, len(senders)), errs: make(chan error, len(senders))}
	for i, s := range senders {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			var payload []byte
			for seq := 0; !f.stop.Load() && (limit == 0 || seq < limit); seq++ {
				payload = limPayload(payload, i, seq, size(seq))
				f.offered.Add(int64(len(payload) + 5))
				if err := s.Send(dest, payload); err != nil {
					if !f.stop.Load() {
						f.errs <- fmt.Errorf("sender %d, frame %d: %w", i, seq, err)
					}
					return
				}
				f.sent[i].Add(1)
			}
		}()
	}
	return f
}

// finish stops the senders and waits for them, and returns how many
// frames they wrote in all. A sender blocked in Write returns once the
// relay takes its frame, so finish needs the destination to be reading.
func (f *limFlood) finish(t testing.TB, within time.Duration) (total int64) {
	t.Helper()
	f.stop.Store(true)
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(within):
		t.Fatalf("senders still blocked %v after the flood was stopped", within)
	}
	select {
	case err := <-f.errs:
		t.Fatalf("flood: %v", err)
	default:
	}
	for i := range f.sent {
		total += f.sent[i].Load()
	}
	return total
}

// waitPlateau waits until no sender has got a byte past Write for quiet,
// and returns the bytes offered by then. Held senders reach such a
// plateau; unthrottled ones never do.
func (f *limFlood) waitPlateau(t testing.TB, quiet, within time.Duration) int64 {
	t.Helper()
	deadline := time.Now().Add(within)
	last, since := f.offered.Load(), time.Now()
	for {
		time.Sleep(10 * time.Millisecond)
		now := f.offered.Load()
		switch {
		case now != last:
			last, since = now, time.Now()
		case time.Since(since) >= quiet:
			return now
		}
		if time.Now().After(deadline) {
			t.Fatalf("senders still getting bytes through after %v (%d offered): they are not being held", within, now)
		}
	}
}

// limOrder checks that each sender's frames arrive in order.
type limOrder struct {
	next  []int // lowest sequence number still acceptable, per sender
	got   []int // frames received, per sender
	total int
	gaps  int // frames skipped; legal only where the policy drops
	first int // first frame received from sender 0, -1 before any
	run   int // frames of sender 0 received before its first gap
}

func newLimOrder(senders int) *limOrder {
	return &limOrder{next: make([]int, senders), got: make([]int, senders), first: -1}
}

// take checks one payload; with lossless set a gap is an error.
func (o *limOrder) take(p []byte, lossless bool) error {
	sender, seq, err := limParse(p)
	if err != nil {
		return err
	}
	if sender >= len(o.next) {
		return fmt.Errorf("payload from unknown sender %d", sender)
	}
	switch {
	case seq < o.next[sender]:
		return fmt.Errorf("sender %d: frame %d arrived after frame %d (reordered or repeated)", sender, seq, o.next[sender]-1)
	case seq > o.next[sender] && lossless:
		return fmt.Errorf("sender %d: frame %d arrived but frames %d..%d are missing", sender, seq, o.next[sender], seq-1)
	}
	if sender == 0 {
		if o.first < 0 {
			o.first = seq
		}
		if o.gaps == 0 && seq == o.next[0] {
			o.run++
		}
	}
	o.gaps += seq - o.next[sender]
	o.next[sender] = seq + 1
	o.got[sender]++
	o.total++
	return nil
}

// limPingPong keeps an unrelated pair exchanging messages until stop is
// closed. reached(n) holds once n round trips are done (or the exchange
// ended on an error); the result reports the round trips made, the slowest
// one and the error.
func limPingPong(t testing.TB, ts *testServer, stop <-chan struct{}) (reached func(n int64) bool, result func() (int, time.Duration, error)) {
	a, b := ts.dial(t), ts.dial(t)
	var (
		n     int
		worst time.Duration
		err   error
		done  = make(chan struct{})
	)
	var rounds atomic.Int64
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			msg := fmt.Appendf(nil, "ping %d", i)
			start := time.Now()
			a.SetReadDeadline(start.Add(10 * time.Second))
			b.SetReadDeadline(start.Add(10 * time.Second))
			if err = a.Send(b.ID(), msg); err != nil {
				return
			}
			var got []byte
			if got, err = b.Recv(); err != nil {
				return
			}
			if err = b.Send(a.ID(), got); err != nil {
				return
			}
			if got, err = a.Recv(); err != nil {
				return
			}
			if string(got) != string(msg) {
				err = fmt.Errorf("round trip %d came back as %q", i, got)
				return
			}
			worst = max(worst, time.Since(start))
			n++
			rounds.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	reached = func(n int64) bool {
		select {
		case <-done: // ended by an error: result says which
			return true
		default:
			return rounds.Load() >= n
		}
	}
	return reached, func() (int, time.Duration, error) {
		<-done
		return n, worst, err
	}
}

// limBufferSize is the receive buffer size a loop configured with lc
// uses: BufferSize, or when that is 0 the backend's default, which
// reactor.Config documents as 4 KiB on io_uring and 16 KiB on epoll.
func limBufferSize(backend reactor.Backend, lc *reactor.Config) int {
	switch {
	case lc.BufferSize != 0:
		return lc.BufferSize
	case backend == reactor.Uring:
		return 4 << 10
	}
	return 16 << 10
}

// limReadBatch is how many bytes the relay may already hold from a sender
// when it pauses it: what the backend read before the pause reached the
// kernel. epoll reads once per connection per Poll, one buffer. io_uring's
// multishot recv fills up to 32 more buffers of the same connection in the
// wake-up that delivered the frame over the limit (the kernel's
// MULTISHOT_MAX_RETRY); the loop re-arms an ended recv only at its next
// flush, where the pause is already known, so there is no second batch.
func limReadBatch(backend reactor.Backend, bufferSize int) int {
	if backend == reactor.Uring {
		return 33 * bufferSize
	}
	return bufferSize
}

func TestLimitBackpressure(t *testing.T) {
	t.Parallel()
	eachLoopCount(t, testBackpressure)
}

// testBackpressure floods a receiver that reads nothing from 50 senders.
// With several loops most senders live on other loops than the receiver:
// the pause reaches them as a control record, and what they sent before
// it took effect waits in the queues between loops.
func testBackpressure(t *testing.T, backend reactor.Backend, loops int) {
	const (
		maxQueue = 256 << 10
		senders  = 50
		payload  = 1000 // bytes; 1005 on the wire, 1001 queued for the receiver
		minStall = 1500 * time.Millisecond
	)
	var bufferSize int
	ts := startServerN(t, backend, loops, func(rc *relay.Config, lc *reactor.Config) {
		rc.MaxQueue = maxQueue
		bufferSize = limBufferSize(backend, lc)
	})
	recv := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{Rcv: 64 << 10})
	ss := make([]*rawpeer.Peer, senders)
	for i := range ss {
		ss[i] = rawpeer.Dial(t, ts.addr, rawpeer.Bufs{Snd: 32 << 10})
	}

	stopPing := make(chan struct{})
	pinged, pings := limPingPong(t, ts, stopPing)
	start := time.Now()
	flood := limStartFlood(ss, recv.ID, 0, limFixed(payload))

	// Held senders stop getting bytes through. Unthrottled ones (about
	// 20 MB/s in all, measured under -race on two cores) never stand still
	// for 300ms: this is what tells them apart, more sharply than the byte
	// bound below.
	atPlateau := flood.waitPlateau(t, 300*time.Millisecond, 10*time.Second)
	plateauAfter := time.Since(start)
	time.Sleep(minStall - time.Since(start))
	// The unrelated pair keeps moving while the receiver reads nothing:
	// ten round trips, however long a loaded machine takes for them (each
	// within the 10 s read deadline of limPingPong).
	servertest.WaitFor(t, "ten round trips of the unrelated pair during the flood", progressSlack, func() bool { return pinged(10) })
	offered := flood.offered.Load()
	close(stopPing)
	rounds, worst, err := pings()
	if err != nil {
		t.Fatalf("unrelated pair during the flood: %v", err)
	}

	// The bound on what the senders got past Write while the receiver read
	// nothing. Every such byte sits in one of these places:
	//  - the sender's socket send buffer or the relay's receive buffer for
	//    it: their sizes as the kernel reports them now (the relay's grow by
	//    autotuning). A size counts the kernel's overhead too, so it
	//    over-states the payload it can hold, but the kernel checks it
	//    before queueing a segment, not after: allow one loopback segment
	//    (64 KiB) over each;
	//  - the receiver's queue in the relay: MaxQueue, plus one read batch
	//    per sender (limReadBatch), the bytes the relay had already taken
	//    from a sender when it paused it;
	//  - the relay's send buffer towards the receiver, and the receiver's
	//    receive buffer;
	//  - the frame each sender was writing, counted before Write returned;
	//  - with several loops, the queue from each other loop towards the
	//    receiver's: the receiver's loop delivers what it drains even over
	//    MaxQueue, and a sender on another loop pauses only when the pause
	//    record reaches its loop, or when that queue is full. A queue
	//    holds at most DefaultCrossQueue bytes of records (frames of 1001
	//    bytes never make it grow), each more than its frame on the wire.
	// Queue bytes have no 4-byte header, wire bytes do: scale by 1005/1001.
	relayBufs := limRelayBufs(t, ts.addr, append([]*rawpeer.Peer{recv}, ss...))
	const segment = 64 << 10
	kernel := 0
	for _, s := range ss {
		snd, _ := limSockBufs(s, t)
		kernel += snd + relayBufs[limPort(s)][1] + 2*segment
	}
	_, recvRcv := limSockBufs(recv, t)
	kernel += relayBufs[limPort(recv)][0] + recvRcv + 2*segment
	queue := maxQueue + senders*limReadBatch(backend, bufferSize)
	bound := int64(kernel) + int64(queue)*(payload+5)/(payload+1) + senders*(payload+5) + int64(loops-1)*relay.DefaultCrossQueue
	t.Logf("%s, %d loops: senders got %d bytes past Write (%d at the plateau, %v after the flood began); bound %d = kernel buffers %d + queue allowance %d; unrelated pair: %d round trips, slowest %v",
		backend, loops, offered, atPlateau, plateauAfter.Round(time.Millisecond), bound, kernel, queue, rounds, worst.Round(time.Millisecond))
	if offered > bound {
		t.Errorf("senders got %d bytes through to a receiver that reads nothing, over the bound of %d", offered, bound)
	}
	// Liveness, not speed: the pair must keep moving while the flood is
	// on, not wait behind the stalled receiver (which would end a round
	// trip in its 10 s read deadline, an error above). How fast it moved
	// is a benchmark's business; the log has the slowest round trip.
	if rounds < 10 {
		t.Errorf("unrelated pair: %d round trips, want at least 10", rounds)
	}
	if ts.metrics().BackpressurePauses == 0 {
		t.Errorf("no backpressure pause counted")
	}

	// Now read: every frame arrives, each sender's in order.
	order := newLimOrder(senders)
	var want atomic.Int64
	want.Store(-1)
	readErr := make(chan error, 1)
	go func() {
		_, err := limDrain(recv, 10*time.Second, want.Load, func(p []byte) error { return order.take(p, true) })
		readErr <- err
	}()
	total := flood.finish(t, 20*time.Second)
	want.Store(total)
	if err := <-readErr; err != nil {
		t.Fatalf("receiver: %v", err)
	}
	if p, err := recv.Recv(100 * time.Millisecond); !os.IsTimeout(err) {
		t.Fatalf("after all %d frames: got %q, %v; want nothing more", total, trim(p), err)
	}
	for i, n := range order.got {
		if int64(n) != flood.sent[i].Load() {
			t.Errorf("sender %d: wrote %d frames, %d arrived", i, flood.sent[i].Load(), n)
		}
	}
	t.Logf("%s: %d frames delivered, none lost; %d backpressure pauses", backend, total, ts.metrics().BackpressurePauses)
}

func TestLimitDropPolicy(t *testing.T) {
	t.Parallel()
	for _, backend := range backends {
		t.Run(string(backend), func(t *testing.T) {
			const (
				maxQueue = 256 << 10
				frames   = 10000
				payload  = 1000
			)
			ts := startServer(t, backend, func(rc *relay.Config, _ *reactor.Config) {
				rc.MaxQueue = maxQueue
				rc.SlowConsumer = relay.Drop
			})
			recv := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{Rcv: 64 << 10})
			sender := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})

			// 10 MB to a receiver that reads nothing: far more than its
			// queue and kernel buffers hold. The relay must keep reading the
			// sender, so every write goes through.
			var batch []byte
			var p []byte
			sender.NC.SetWriteDeadline(time.Now().Add(20 * time.Second))
			for seq := range frames {
				p = limPayload(p, 0, seq, payload)
				batch = frame.Append(batch, recv.ID, p)
				if len(batch) >= 16<<10 || seq == frames-1 {
					if _, err := sender.NC.Write(batch); err != nil {
						t.Fatalf("sender held at frame %d: %v", seq, err)
					}
					batch = batch[:0]
				}
			}
			var m counters
			servertest.WaitFor(t, "every frame relayed or dropped", 10*time.Second, func() bool {
				m = ts.metrics()
				return m.FramesRelayed+m.Dropped[relay.DropSlowConsumer] == frames
			})
			relayed, dropped := m.FramesRelayed, m.Dropped[relay.DropSlowConsumer]
			if dropped == 0 {
				t.Fatalf("no frame dropped although %d bytes went to a receiver that reads nothing", frames*(payload+1))
			}
			if n := m.BackpressurePauses; n != 0 {
				t.Errorf("the sender was paused %d times under the drop policy", n)
			}

			order := newLimOrder(1)
			got, err := limDrain(recv, 5*time.Second, func() int64 { return int64(relayed) }, func(p []byte) error { return order.take(p, false) })
			if err != nil {
				t.Fatalf("receiver: %v", err)
			}
			if p, err := recv.Recv(100 * time.Millisecond); !os.IsTimeout(err) {
				t.Fatalf("after the %d relayed frames: got %q, %v; want nothing more", got, trim(p), err)
			}
			// What arrives is the start of the stream, whole, until the queue
			// filled, then whatever squeezed in as the kernel took bytes,
			// still in order (take checked that).
			if order.first != 0 || order.run < maxQueue/(payload+1) {
				t.Errorf("first frame %d, then %d in a row; want 0 and at least a queue's worth (%d)", order.first, order.run, maxQueue/(payload+1))
			}
			// Every frame that did not arrive was counted, and no other.
			if missing := order.gaps + (frames - order.next[0]); uint64(missing) != dropped {
				t.Errorf("%d frames missing at the receiver, %d counted as dropped", missing, dropped)
			}
			t.Logf("%s: %d frames sent, %d delivered in order (%d before the first gap), %d dropped and counted", backend, frames, got, order.run, dropped)
		})
	}
}

func TestLimitDisconnectPolicy(t *testing.T) {
	t.Parallel()
	for _, backend := range backends {
		t.Run(string(backend), func(t *testing.T) {
			const maxQueue = 256 << 10
			ts := startServer(t, backend, func(rc *relay.Config, _ *reactor.Config) {
				rc.MaxQueue = maxQueue
				rc.SlowConsumer = relay.Disconnect
			})
			slow := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{Rcv: 64 << 10})
			other := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
			sender := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})

			flood := limStartFlood([]*rawpeer.Peer{sender}, slow.ID, 0, limFixed(1000))
			servertest.WaitFor(t, "the slow destination closed", 10*time.Second, func() bool { return ts.metrics().Closed[relay.ClosedSlow] > 0 })
			flood.finish(t, 10*time.Second)

			// The slow destination gets a whole, in-order start of the stream
			// and then the end of it.
			order := newLimOrder(1)
			if err := limReadToEnd(slow, 10*time.Second, func(p []byte) error { return order.take(p, true) }); err != nil {
				t.Fatalf("slow destination: %v", err)
			}
			// The sender is untouched: it goes on with another destination.
			for seq := range 100 {
				if err := sender.Send(other.ID, limPayload(nil, 1, seq, limMixed(seq))); err != nil {
					t.Fatalf("sender after the disconnect: %v", err)
				}
			}
			order2 := newLimOrder(2)
			if _, err := limDrain(other, 5*time.Second, func() int64 { return 100 }, func(p []byte) error { return order2.take(p, true) }); err != nil {
				t.Fatalf("other destination: %v", err)
			}
			if n := ts.metrics().Closed[relay.ClosedSlow]; n != 1 {
				t.Errorf("%d connections closed as slow, want 1", n)
			}
			t.Logf("%s: slow destination read %d frames, then its end; sender and other destination unaffected", backend, order.total)
		})
	}
}

func TestLimitFanIn(t *testing.T) {
	t.Parallel()
	for _, backend := range backends {
		t.Run(string(backend), func(t *testing.T) {
			const (
				senders = 100
				frames  = 300 // per sender
			)
			ts := startServer(t, backend, func(rc *relay.Config, _ *reactor.Config) {
				rc.MaxQueue = 256 << 10
			})
			recv := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
			ss := make([]*rawpeer.Peer, senders)
			for i := range ss {
				ss[i] = rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
			}
			order := newLimOrder(senders)
			flood := limStartFlood(ss, recv.ID, frames, limMixed)
			got, err := limDrain(recv, 10*time.Second, func() int64 { return senders * frames }, func(p []byte) error { return order.take(p, true) })
			if err != nil {
				t.Fatalf("receiver: %v", err)
			}
			flood.finish(t, 5*time.Second)
			if p, err := recv.Recv(100 * time.Millisecond); !os.IsTimeout(err) {
				t.Fatalf("after %d frames: got %q, %v; want nothing more", got, trim(p), err)
			}
			if n := ts.metrics().FramesRelayed; n != senders*frames {
				t.Errorf("relay counted %d frames, want %d", n, senders*frames)
			}
			t.Logf("%s: %d frames from %d senders, none lost, each sender in order; %d backpressure pauses",
				backend, got, senders, ts.metrics().BackpressurePauses)
		})
	}
}

// With four loops the four connections land on four loops (placement
// is by fewest), so both floods cross loops: the stuck receiver's pause
// reaches its sender as a control record, and its close releases it.
func TestLimitWriteTimeout(t *testing.T) {
	// Beside the other parallel tests, one case at a time: the slow reader
	// must be scheduled at least once per write timeout, and four cases at
	// once are eight floods on two cores.
	t.Parallel()
	eachLoopCount(t, func(t *testing.T, backend reactor.Backend, loops int) {
		const (
			// Fifty times the reader's pace. At 300 ms the slow reader
			// was closed once in a few runs, on a quiet machine too
			// (TCP can hold a loopback sender back for a 200 ms
			// persist probe even while the reader keeps up); at 1 s
			// on a loaded two-core machine, where this process (race
			// detector, two floods, four loops) can leave the
			// reader's goroutine unscheduled for longer than that.
			// The slow reader is watched for two timeouts: a relay
			// that closed a connection for having output pending
			// that long, progress or not, would close it.
			writeTimeout = 2500 * time.Millisecond
			watch        = 2 * writeTimeout
			chunk        = 16 << 10 // what the slow reader takes each time
			pace         = 50 * time.Millisecond
		)
		ts := startServerN(t, backend, loops, func(rc *relay.Config, _ *reactor.Config) {
			rc.MaxQueue = 256 << 10
			rc.WriteTimeout = writeTimeout
		})
		stuck := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{Rcv: 64 << 10})
		// Default buffers for the slow reader: a receive buffer of one
		// loopback segment (64 KiB) makes TCP itself stall for its 200ms
		// persist timer, which is not what this case is about.
		slow := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
		s1 := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
		s2 := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
		if loops > 1 && (shard.Owner(s1.ID, loops) == shard.Owner(stuck.ID, loops) || shard.Owner(s2.ID, loops) == shard.Owner(slow.ID, loops)) {
			t.Fatal("a sender shares its receiver's loop: the case would not cross loops")
		}
		start := time.Now()
		toStuck := limStartFlood([]*rawpeer.Peer{s1}, stuck.ID, 0, limFixed(1000))
		toSlow := limStartFlood([]*rawpeer.Peer{s2}, slow.ID, 0, limFixed(1000))

		// The slow reader takes 16 KiB every 50ms, about 330 kB/s: far
		// behind the flood, but it never stands still for more than a
		// fiftieth of the timeout. So slow, the relay's send buffer
		// (autotuned to megabytes) takes nothing new for seconds at a
		// time: a relay that counted what the kernel took as progress,
		// not what the reader acknowledged, closes this reader within
		// the watch (checked). Once told to catch up it reads as fast
		// as it can until it has every frame (want, once known). It
		// never pauses in between: a reader that stops is stuck.
		order := newLimOrder(1)
		var catchUp atomic.Bool
		var want atomic.Int64
		want.Store(-1)
		slowErr := make(chan error, 1)
		go func() {
			fail := func(err error) {
				slowErr <- fmt.Errorf("after %d frames (%v into the flood): %w", order.total, time.Since(start).Round(time.Millisecond), err)
			}
			for !catchUp.Load() {
				time.Sleep(pace)
				for n := 0; n < chunk; {
					p, err := slow.Recv(5 * time.Second)
					if err != nil {
						fail(err)
						return
					}
					n += len(p) + 1
					if err := order.take(p, true); err != nil {
						fail(err)
						return
					}
				}
			}
			before := int64(order.total)
			if _, err := limDrain(slow, 5*time.Second, func() int64 {
				if w := want.Load(); w >= 0 {
					return w - before
				}
				return -1
			}, func(p []byte) error { return order.take(p, true) }); err != nil {
				fail(err)
				return
			}
			slowErr <- nil
		}()

		stuckCloses := func() uint64 { return ts.metrics().Closed[relay.ClosedStuck] }
		servertest.WaitFor(t, "a write-timeout close", progressSlack, func() bool { return stuckCloses() > 0 })
		// The flood at the stuck receiver has done its work; left
		// running, it would spend the rest of the watch sending to
		// an ID that is gone, on the CPUs the slow reader needs.
		toStuck.finish(t, 5*time.Second)
		time.Sleep(watch - time.Since(start))
		if n := stuckCloses(); n != 1 {
			// Find out whether it was the slow reader: its stream ends
			// once it has read what its kernel buffer still held.
			catchUp.Store(true)
			err := <-slowErr
			t.Fatalf("%d connections closed for write timeout, want only the stuck one; the slow but steady reader (%d KiB every %v): %v", n, chunk>>10, pace, err)
		}
		// Only now touch the stuck receiver: its reads reach the end.
		if err := limReadToEnd(stuck, 5*time.Second, nil); err != nil {
			t.Fatalf("stuck receiver: %v", err)
		}

		// The slow reader is still connected: it gets the rest, in order.
		catchUp.Store(true)
		want.Store(toSlow.finish(t, 10*time.Second))
		if err := <-slowErr; err != nil {
			t.Fatalf("slow but steady reader: %v; write-timeout closes counted: %d", err, stuckCloses())
		}
		if n := stuckCloses(); n != 1 {
			t.Fatalf("%d connections closed for write timeout, want only the stuck one", n)
		}
		t.Logf("%s, %d loops: stuck receiver closed; slow reader read for %v without being closed, %d frames in all, in order", backend, loops, watch, order.total)
	})
}

func TestLimitMaxFrame(t *testing.T) {
	t.Parallel()
	for _, backend := range backends {
		t.Run(string(backend), func(t *testing.T) {
			const maxFrame = 1024
			ts := startServer(t, backend, func(rc *relay.Config, _ *reactor.Config) {
				rc.MaxFrame = maxFrame
			})
			a, b := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{}), rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
			bad := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})

			// A payload of exactly max-frame bytes is fine.
			if err := a.Send(b.ID, limPayload(nil, 0, 0, maxFrame)); err != nil {
				t.Fatal(err)
			}
			order := newLimOrder(1)
			if _, err := limDrain(b, 5*time.Second, func() int64 { return 1 }, func(p []byte) error {
				if len(p) != maxFrame {
					return fmt.Errorf("got %d bytes, want %d", len(p), maxFrame)
				}
				return order.take(p, true)
			}); err != nil {
				t.Fatal(err)
			}

			// One byte more, still no NUL: the sender is closed.
			over := append(binary.BigEndian.AppendUint32(nil, b.ID), limPayload(nil, 1, 0, maxFrame+1)...)
			if _, err := bad.NC.Write(over); err != nil {
				t.Fatal(err)
			}
			if err := limReadToEnd(bad, 5*time.Second, nil); err != nil {
				t.Fatalf("oversize sender: %v", err)
			}
			servertest.WaitFor(t, "the oversize frame counted", 5*time.Second, func() bool {
				m := ts.metrics()
				return m.Dropped[relay.DropOversize] == 1 && m.Closed[relay.ClosedOversize] == 1
			})

			// Nothing of it reached b, and a and b carry on.
			if err := a.Send(b.ID, limPayload(nil, 0, 1, 100)); err != nil {
				t.Fatal(err)
			}
			if _, err := limDrain(b, 5*time.Second, func() int64 { return 1 }, func(p []byte) error { return order.take(p, true) }); err != nil {
				t.Fatalf("after the oversize frame: %v", err)
			}
			if err := b.Send(a.ID, limPayload(nil, 0, 0, 100)); err != nil {
				t.Fatal(err)
			}
			if _, err := limDrain(a, 5*time.Second, func() int64 { return 1 }, func(p []byte) error { return newLimOrder(1).take(p, true) }); err != nil {
				t.Fatalf("b to a after the oversize frame: %v", err)
			}
			if n := ts.metrics().Closed[relay.ClosedOversize]; n != 1 {
				t.Errorf("%d connections closed as oversize, want 1", n)
			}
		})
	}
}

func TestLimitFrameTimeout(t *testing.T) {
	t.Parallel()
	eachLoopCount(t, func(t *testing.T, backend reactor.Backend, loops int) {
		t.Parallel() // mostly waits out frame timeouts
		const frameTimeout = 300 * time.Millisecond
		ts := startServerN(t, backend, loops, func(rc *relay.Config, _ *reactor.Config) {
			rc.FrameTimeout = frameTimeout
		})
		a := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
		idle := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
		partial := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})

		// A header and part of a payload, then nothing.
		start := time.Now()
		half := append(binary.BigEndian.AppendUint32(nil, a.ID), "never finished"...)
		if _, err := partial.NC.Write(half); err != nil {
			t.Fatal(err)
		}
		time.Sleep(frameTimeout / 3)
		if n := ts.metrics().Closed[relay.ClosedIncomplete]; n != 0 && time.Since(start) < frameTimeout {
			t.Fatalf("a partial frame was cut off before frame-timeout")
		}
		if err := limReadToEnd(partial, 5*time.Second, nil); err != nil {
			t.Fatalf("connection holding a partial frame: %v", err)
		}
		if held := time.Since(start); held < frameTimeout {
			t.Errorf("closed after %v, before frame-timeout (%v)", held, frameTimeout)
		}
		servertest.WaitFor(t, "the incomplete frame counted", 5*time.Second, func() bool { return ts.metrics().Closed[relay.ClosedIncomplete] == 1 })

		// The idle connection held no partial frame for three timeouts:
		// still open, and it still receives. Nothing partial reached a.
		time.Sleep(3*frameTimeout - time.Since(start))
		if err := a.Send(idle.ID, limPayload(nil, 0, 0, 64)); err != nil {
			t.Fatal(err)
		}
		if _, err := limDrain(idle, 5*time.Second, func() int64 { return 1 }, func(p []byte) error { return newLimOrder(1).take(p, true) }); err != nil {
			t.Fatalf("idle connection: %v", err)
		}
		if p, err := a.Recv(100 * time.Millisecond); !os.IsTimeout(err) {
			t.Fatalf("a got %q, %v from the abandoned frame", trim(p), err)
		}
		if n := ts.metrics().Closed[relay.ClosedIncomplete]; n != 1 {
			t.Errorf("%d connections closed for an incomplete frame, want 1", n)
		}
	})
}

func TestLimitMaxConns(t *testing.T) {
	t.Parallel()
	// With several loops the limit counts the connections of all loops.
	eachLoopCount(t, func(t *testing.T, backend reactor.Backend, loops int) {
		ts := startServerN(t, backend, loops, func(rc *relay.Config, _ *reactor.Config) {
			rc.MaxConns = 3
		})
		c1, c2 := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{}), rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
		rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})

		// The fourth is accepted and closed before any ID is sent.
		nc, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(nc)
		if len(b) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
			t.Fatalf("connection over max-conns read %d bytes (%x), %v; want nothing, then its end", len(b), b, err)
		}
		servertest.WaitFor(t, "the refused connection counted", 5*time.Second, func() bool { return ts.metrics().Closed[relay.ClosedOverLimit] == 1 })

		// One leaves; a newcomer gets an ID and can talk.
		c1.NC.Close()
		servertest.WaitFor(t, "two connections left", 5*time.Second, func() bool { return ts.open() == 2 })
		c4 := rawpeer.Dial(t, ts.addr, rawpeer.Bufs{})
		if err := c4.Send(c2.ID, limPayload(nil, 0, 0, 64)); err != nil {
			t.Fatal(err)
		}
		if _, err := limDrain(c2, 5*time.Second, func() int64 { return 1 }, func(p []byte) error { return newLimOrder(1).take(p, true) }); err != nil {
			t.Fatalf("newcomer to c2: %v", err)
		}
		if n := ts.metrics().Closed[relay.ClosedOverLimit]; n != 1 {
			t.Errorf("%d connections refused, want 1", n)
		}
	})
}
