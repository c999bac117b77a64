package relay_test

// TestChaos and TestSoak share one engine: many in-process clients connect
// to a relay and do random things at once (frames of random sizes written
// in random pieces, to live, unknown, stale and their own IDs; resets,
// half-closes, plain closes and reconnects; readers that stall for a
// while), and an oracle that knows every frame each client wrote checks
// every frame each client reads.
//
// The randomness is seeded. The seed is logged at the start and carried in
// every failure message; RINGRELAY_CHAOS_SEED=<seed> replays the same
// choices (which frames, which sizes, which cuts, which actions), though
// not the same interleaving, which is up to the scheduler and the kernel.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
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
	"unsafe"

	"github.com/ringrelay/ringrelay/internal/frame"
	"github.com/ringrelay/ringrelay/internal/payload"
	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
	"github.com/ringrelay/ringrelay/relay/client"
)

const (
	chaosClients = 60
	// chaosStable client slots keep their first connection for the whole
	// run (they still send, stall and receive like the others), so that a
	// good share of all frames is owed and its delivery checked.
	chaosStable   = 20
	chaosMaxFrame = 64 << 10
	chaosMaxQueue = 256 << 10
	// chaosTraffic is how long TestChaos lets the clients loose per backend;
	// draining and the closing checks add a second or two.
	chaosTraffic = 6 * time.Second
	// chaosMaxBatch caps the bytes one client writes in one go.
	chaosMaxBatch = 256 << 10
	// chaosSlack bounds every wait that depends on the server making
	// progress; hitting one is a failure, not a timing measurement.
	chaosSlack = 30 * time.Second
)

// How an incarnation (one connection of one client slot) ended, from the
// client's side. It is stored before the close call, so the reader always
// knows whether the error it sees was its own doing.
const (
	chaosOpen  int32 = iota // still open
	chaosReset              // SetLinger(0) + Close: the kernel sends RST
	chaosClose              // plain Close, with no half-close first
	chaosHalf               // CloseWrite mid-run, then read until EOF
	chaosFinal              // CloseWrite at the end of the run, then read until EOF
)

func chaosEdit(rc *relay.Config, _ *reactor.Config) {
	rc.MaxFrame = chaosMaxFrame
	rc.MaxQueue = chaosMaxQueue
	rc.SlowConsumer = relay.Backpressure
}

// chaosBaseSeed is RINGRELAY_CHAOS_SEED when set, a fresh seed otherwise.
func chaosBaseSeed(t testing.TB) uint64 {
	if s := os.Getenv("RINGRELAY_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			t.Fatalf("RINGRELAY_CHAOS_SEED=%q: %v", s, err)
		}
		return v
	}
	return rand.Uint64()
}

// chaosMix derives the seed of one run (backend, round) from the base seed.
func chaosMix(base uint64, backend, round int) uint64 {
	x := base ^ uint64(backend+1)*0x9e3779b97f4a7c15 ^ uint64(round+1)*0xbf58476d1ce4e5b9
	x ^= x >> 31
	x *= 0x94d049bb133111eb
	return x ^ x>>29
}

// chaosRec is the oracle's record of one frame a client wrote.
type chaosRec struct {
	dest    uint32
	destInc int32 // incarnation the frame was addressed to; 0 for an unknown ID
	size    int32 // payload bytes, NUL excluded
	// truncated frames were written only in part (no NUL) just before a
	// reset: they must never be delivered.
	truncated bool
	written   bool // every byte, NUL included, was accepted by the socket
	delivered bool
}

// chaosInc is one incarnation: one connection of one client slot.
type chaosInc struct {
	n    int32 // incarnation number, from 1
	slot int
	id   uint32
	// c is dropped (under chaos.mu) once the connection is over, so that
	// the oracle does not keep every ended client's read buffers alive.
	c   *client.Conn
	end atomic.Int32

	mu   sync.Mutex // guards sent
	sent []chaosRec // index seq-1
	next uint32     // next sequence number; only the slot's worker uses it

	readDone chan struct{}
	lastSeq  map[int32]uint32 // reader-owned: sender incarnation -> last seq seen
}

type chaosReport struct {
	frames          int64 // frames received and verified
	owed, sent      int64
	conns           int64 // connections opened (incarnations)
	resets, halfs   int64
	closes, stalls  int64
	truncated       int64
	reusedDelivered int64
	records         int64 // oracle records, the largest of any round
}

func (r *chaosReport) add(o chaosReport) {
	r.frames += o.frames
	r.owed += o.owed
	r.sent += o.sent
	r.conns += o.conns
	r.resets += o.resets
	r.halfs += o.halfs
	r.closes += o.closes
	r.stalls += o.stalls
	r.truncated += o.truncated
	r.reusedDelivered += o.reusedDelivered
	r.records = max(r.records, o.records)
}

func (r chaosReport) String() string {
	return fmt.Sprintf("%d frames checked at receivers (%d written whole, %d of them owed), %d connections churned "+
		"(%d resets, %d half-closes, %d plain closes; %d frames cut short by a reset), %d reader stalls, %d deliveries to a reused ID",
		r.frames, r.sent, r.owed, r.conns, r.resets, r.halfs, r.closes, r.truncated, r.stalls, r.reusedDelivered)
}

type chaos struct {
	t    testing.TB
	ts   *testServer
	seed uint64
	tag  string // goes in front of every failure
	// codec builds every payload from (sender incarnation, seq, size),
	// with filler bytes drawn from the run's seed.
	codec *payload.Codec

	mu     sync.Mutex
	incs   []*chaosInc          // index n-1
	live   []*chaosInc          // open, not ending: picked as destinations
	byID   map[uint32]*chaosInc // latest incarnation that held each ID
	recent []*chaosInc          // recently ended: picked as stale destinations
	final  []*chaosInc          // incarnations the workers left open

	stop     atomic.Bool
	failures atomic.Int32

	checked, reused, stalls, resets, halfs, closes, truncs atomic.Int64
}

func (ch *chaos) fail(format string, args ...any) {
	if ch.failures.Add(1) <= 20 {
		ch.t.Errorf("%s: %s", ch.tag, fmt.Sprintf(format, args...))
	}
	ch.stop.Store(true)
}

// runChaos lets chaosClients clients loose on ts for traffic, then drains,
// closes everything and checks the oracle and the server's resources.
func runChaos(t testing.TB, ts *testServer, backend reactor.Backend, base uint64, round int, traffic time.Duration) chaosReport {
	t.Helper()
	seed := chaosMix(base, slices.Index(backends, backend), round)
	ch := &chaos{
		t:    t,
		ts:   ts,
		seed: seed,
		tag:  fmt.Sprintf("[%s round %d, RINGRELAY_CHAOS_SEED=%d]", backend, round, base),
		byID: make(map[uint32]*chaosInc),
	}
	t.Logf("%s: %d clients for %v, run seed %#x", ch.tag, chaosClients, traffic, seed)
	var err error
	if ch.codec, err = payload.NewCodec(seed, chaosMaxFrame); err != nil {
		t.Fatal(err)
	}

	// Baselines, once the server and this process's poller are warm: a
	// first dial creates the runtime's epoll descriptor.
	warm := ts.dial(t)
	warm.Close()
	chaosQuiet(t, ts, "warm-up connection closed")
	fdBase := openFDs(t)
	grBase := runtime.NumGoroutine()
	before := chaosMetrics(ts.srv.Metrics())

	var workers sync.WaitGroup
	for slot := range chaosClients {
		workers.Add(1)
		go func() {
			defer workers.Done()
			ch.worker(slot)
		}()
	}
	stopAt := time.Now().Add(traffic)
	for time.Now().Before(stopAt) && !ch.stop.Load() {
		time.Sleep(10 * time.Millisecond)
	}
	ch.stop.Store(true)
	if !chaosWait(&workers, chaosSlack) {
		ch.fail("workers still busy %v after the stop: a write is stuck (server metrics %s)", chaosSlack, chaosMetrics(ts.srv.Metrics()))
		ch.abort()
		workers.Wait()
	}

	rep := ch.settle(ts)

	// Every client connection is closed: the server must be back where it
	// started.
	chaosQuiet(t, ts, ch.tag+" server to see every connection closed")
	deadline := time.Now().Add(10 * time.Second)
	for openFDs(t) != fdBase && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := openFDs(t); n != fdBase {
		t.Errorf("%s: %d descriptors open after the run, %d before", ch.tag, n, fdBase)
	}
	deadline = time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > grBase && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > grBase {
		t.Errorf("%s: %d goroutines after the run, %d before", ch.tag, n, grBase)
	}
	t.Logf("%s: final descriptors %d (baseline %d), goroutines %d (baseline %d)", ch.tag, openFDs(t), fdBase, runtime.NumGoroutine(), grBase)
	ch.checkMetrics(before, chaosMetrics(ts.srv.Metrics()), rep)
	return rep
}

// chaosQuiet waits until the server has no connection left and its
// metrics account for every close the loop reported.
func chaosQuiet(t testing.TB, ts *testServer, what string) {
	t.Helper()
	waitFor(t, what, chaosSlack, func() bool {
		if ts.stats.Open.Load() != 0 {
			return false
		}
		var closed uint64
		for _, r := range relay.CloseReasons() {
			closed += ts.srv.Metrics().Closed[r].Load()
		}
		return closed == ts.stats.Closed.Load()
	})
}

// settle runs once the workers have stopped: every write is over, so the
// oracle is final. It waits for every owed frame, then closes the
// surviving connections the orderly way and checks they end cleanly.
func (ch *chaos) settle(ts *testServer) chaosReport {
	ch.mu.Lock()
	incs := slices.Clone(ch.incs)
	final := slices.Clone(ch.final)
	ch.mu.Unlock()

	// A frame is owed, that is, must have been delivered, when the
	// exchange between its sender and its receiver stayed connected:
	//
	//   - the sender wrote every byte of it, NUL included, and its
	//     connection never ended abruptly: it is still open, or it ended
	//     with a half-close (the server reads to EOF, so every complete
	//     frame it sent is routed). A reset, or a plain close that the
	//     server's next write turns into a reset, lets the kernel throw
	//     away bytes the server had not read yet, so frames from such a
	//     sender are checked when they arrive but not owed;
	//   - it was addressed to a live incarnation (not an unknown or stale
	//     ID), and that receiver stayed open from its dial until it had
	//     read everything, here at the end of the run. A receiver that
	//     closes mid-run cannot be ordered against the server routing a
	//     frame still in a sender's socket buffer: the server may rightly
	//     drop it as addressed to an unknown ID.
	//
	// Under backpressure the relay drops nothing, so nothing owed may be
	// missing.
	var owed []*chaosRec
	var owedFrom []int32
	var sent, records int64
	for _, src := range incs {
		e := src.end.Load()
		src.mu.Lock()
		records += int64(len(src.sent))
		for i := range src.sent {
			r := &src.sent[i]
			if r.written {
				sent++
			}
			if !r.written || r.truncated || r.destInc == 0 || (e != chaosOpen && e != chaosHalf) {
				continue
			}
			if incs[r.destInc-1].end.Load() == chaosOpen {
				owed = append(owed, r)
				owedFrom = append(owedFrom, src.n)
			}
		}
		src.mu.Unlock()
	}
	missing := func() (n int, first string) {
		for i, r := range owed {
			src := incs[owedFrom[i]-1]
			src.mu.Lock()
			if !r.delivered {
				if n == 0 {
					seq := 1 + (chaosIndex(src.sent, r))
					first = fmt.Sprintf("incarnation %d seq %d -> incarnation %d (id %08x, %d bytes)", src.n, seq, r.destInc, r.dest, r.size)
				}
				n++
			}
			src.mu.Unlock()
		}
		return n, first
	}
	deadline := time.Now().Add(chaosSlack)
	for ch.failures.Load() == 0 {
		n, first := missing()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			ch.fail("%d of %d owed frames never arrived within %v after the traffic stopped; first: %s (server metrics %s)",
				n, len(owed), chaosSlack, first, chaosMetrics(ts.srv.Metrics()))
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The orderly goodbye: half-close, then read until the server closes.
	// Frames that were not owed may still come in meanwhile, and are
	// checked like any other.
	for _, inc := range final {
		if inc.end.CompareAndSwap(chaosOpen, chaosFinal) {
			if err := inc.c.NetConn().(*net.TCPConn).CloseWrite(); err != nil {
				ch.fail("incarnation %d: CloseWrite: %v", inc.n, err)
			}
		}
	}
	for _, inc := range final {
		select {
		case <-inc.readDone:
		case <-time.After(chaosSlack):
			ch.fail("incarnation %d (id %08x) half-closed at the end, the server did not close it within %v", inc.n, inc.id, chaosSlack)
			inc.end.Store(chaosReset)
			inc.c.Close()
			<-inc.readDone
		}
		inc.c.Close()
	}
	return chaosReport{
		frames:          ch.checked.Load(),
		owed:            int64(len(owed)),
		sent:            sent,
		conns:           int64(len(incs)),
		resets:          ch.resets.Load(),
		halfs:           ch.halfs.Load(),
		closes:          ch.closes.Load(),
		stalls:          ch.stalls.Load(),
		truncated:       ch.truncs.Load(),
		reusedDelivered: ch.reused.Load(),
		records:         records,
	}
}

// chaosIndex finds r's index in recs (only used to name a missing frame).
func chaosIndex(recs []chaosRec, r *chaosRec) int {
	for i := range recs {
		if &recs[i] == r {
			return i
		}
	}
	return -1
}

// abort tears every connection down after a failure, so the goroutines end.
func (ch *chaos) abort() {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for _, inc := range ch.incs {
		inc.end.CompareAndSwap(chaosOpen, chaosReset)
		if inc.c != nil {
			inc.c.Close()
		}
	}
}

func chaosWait(wg *sync.WaitGroup, within time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(within):
		return false
	}
}

// worker plays one client slot until the stop.
func (ch *chaos) worker(slot int) {
	rng := rand.New(rand.NewPCG(ch.seed, uint64(slot)+1))
	stable := slot < chaosStable
	var cur *chaosInc
	var buf []byte
	for ordinal := 0; !ch.stop.Load(); {
		if cur == nil {
			if cur = ch.dial(slot, ordinal); cur == nil {
				return
			}
			ordinal++
		}
		r := rng.IntN(1000)
		if stable && r >= 920 {
			r = 0 // stable slots never end their connection
		}
		switch {
		case r < 880:
			buf = ch.sendBatch(cur, rng, buf)
		case r < 900:
			time.Sleep(time.Duration(rng.IntN(5000)) * time.Microsecond)
		case r < 920:
			ch.drip(cur, rng)
		case r < 935:
			ch.reset(cur, rng)
			ch.forget(cur)
			cur = nil
		case r < 950:
			ch.halfClose(cur)
			ch.forget(cur)
			cur = nil
		case r < 960:
			ch.plainClose(cur)
			ch.forget(cur)
			cur = nil
		default:
			buf = ch.sendBatch(cur, rng, buf)
		}
	}
	if cur != nil {
		ch.mu.Lock()
		ch.final = append(ch.final, cur)
		ch.mu.Unlock()
	}
}

func (ch *chaos) dial(slot, ordinal int) *chaosInc {
	ctx, cancel := context.WithTimeout(context.Background(), chaosSlack)
	defer cancel()
	c, err := client.Dial(ctx, ch.ts.addr)
	if err != nil {
		ch.fail("slot %d: dial: %v", slot, err)
		return nil
	}
	inc := &chaosInc{slot: slot, id: c.ID(), c: c, next: 1, readDone: make(chan struct{}), lastSeq: make(map[int32]uint32)}
	ch.mu.Lock()
	inc.n = int32(len(ch.incs) + 1)
	ch.incs = append(ch.incs, inc)
	ch.live = append(ch.live, inc)
	ch.byID[inc.id] = inc
	ch.mu.Unlock()
	rrng := rand.New(rand.NewPCG(ch.seed^0x7265616465720000, uint64(slot)<<20|uint64(ordinal)))
	go ch.reader(inc, rrng)
	return inc
}

// retire takes inc off the list of destinations and remembers it as a
// stale one, before its connection is closed.
func (ch *chaos) retire(inc *chaosInc, how int32) {
	inc.end.Store(how)
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if i := slices.Index(ch.live, inc); i >= 0 {
		ch.live[i] = ch.live[len(ch.live)-1]
		ch.live = ch.live[:len(ch.live)-1]
	}
	ch.recent = append(ch.recent, inc)
	if len(ch.recent) > 32 {
		ch.recent = ch.recent[1:]
	}
}

// forget drops an ended incarnation's connection; its oracle records stay.
func (ch *chaos) forget(inc *chaosInc) {
	ch.mu.Lock()
	inc.c = nil
	ch.mu.Unlock()
}

// reset ends inc with an RST, sometimes in the middle of a frame.
func (ch *chaos) reset(inc *chaosInc, rng *rand.Rand) {
	ch.retire(inc, chaosReset)
	ch.resets.Add(1)
	if rng.IntN(2) == 0 {
		dest, destInc := ch.pickDest(rng, inc)
		fr, _ := ch.record(inc, dest, destInc, ch.frameSize(rng), true)
		cut := 1 + rng.IntN(len(fr)-1) // never the NUL
		inc.c.SetWriteDeadline(time.Now().Add(time.Second))
		inc.c.NetConn().Write(fr[:cut]) // may block on backpressure: the deadline ends it
		ch.truncs.Add(1)
	}
	inc.c.NetConn().(*net.TCPConn).SetLinger(0)
	inc.c.Close()
	<-inc.readDone
}

// halfClose ends inc the orderly way mid-run: the server must relay what
// it sent, write out what it queued for it, and close.
func (ch *chaos) halfClose(inc *chaosInc) {
	ch.retire(inc, chaosHalf)
	ch.halfs.Add(1)
	if err := inc.c.NetConn().(*net.TCPConn).CloseWrite(); err != nil {
		ch.fail("incarnation %d: CloseWrite: %v", inc.n, err)
	}
	select {
	case <-inc.readDone:
	case <-time.After(chaosSlack):
		ch.fail("incarnation %d (id %08x) half-closed, the server did not close it within %v", inc.n, inc.id, chaosSlack)
		inc.end.Store(chaosReset)
		inc.c.Close()
		<-inc.readDone
	}
	inc.c.Close()
}

func (ch *chaos) plainClose(inc *chaosInc) {
	ch.retire(inc, chaosClose)
	ch.closes.Add(1)
	inc.c.Close()
	<-inc.readDone
}

// pickDest chooses a destination: mostly live clients, some to itself,
// some to IDs no one holds (0 and IDs with NUL bytes among them), some
// to incarnations that just went away.
func (ch *chaos) pickDest(rng *rand.Rand, me *chaosInc) (uint32, int32) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	r := rng.IntN(100)
	switch {
	case r < 70 && len(ch.live) > 0:
		d := ch.live[rng.IntN(len(ch.live))]
		return d.id, d.n
	case r < 80:
		return me.id, me.n
	case r < 90 && len(ch.recent) > 0:
		d := ch.recent[rng.IntN(len(ch.recent))]
		return d.id, d.n
	}
	for {
		var id uint32
		switch rng.IntN(3) {
		case 0:
			id = 0
		case 1:
			id = rng.Uint32() & 0x00ff00ff
		default:
			id = rng.Uint32()
		}
		if _, known := ch.byID[id]; !known {
			return id, 0
		}
	}
}

// frameSize draws a payload size: mostly small, some medium, some up to
// MaxFrame, a few exactly MaxFrame.
func (ch *chaos) frameSize(rng *rand.Rand) int {
	switch r := rng.IntN(100); {
	case r < 60:
		return payload.MinSize + rng.IntN(200)
	case r < 85:
		return payload.MinSize + rng.IntN(4096)
	case r < 98:
		return payload.MinSize + rng.IntN(chaosMaxFrame-payload.MinSize+1)
	default:
		return chaosMaxFrame
	}
}

// record builds the next frame of inc, header to NUL, and enters it in the
// oracle before a byte of it is written. The payload comes from the shared
// codec: it carries the sender's incarnation, the sequence number and the
// size, and a receiver can check every byte of it. Where it was addressed
// is in the oracle's record.
func (ch *chaos) record(inc *chaosInc, dest uint32, destInc int32, size int, truncated bool) ([]byte, uint32) {
	seq := inc.next
	inc.next++
	fr := make([]byte, 0, frame.HeaderLen+size+1)
	fr = binary.BigEndian.AppendUint32(fr, dest)
	fr = ch.codec.Append(fr, uint32(inc.n), uint64(seq), size)
	fr = append(fr, frame.End)
	inc.mu.Lock()
	inc.sent = append(inc.sent, chaosRec{dest: dest, destInc: destInc, size: int32(size), truncated: truncated})
	inc.mu.Unlock()
	return fr, seq
}

// sendBatch writes one to six frames in one buffer, cut at random points.
func (ch *chaos) sendBatch(inc *chaosInc, rng *rand.Rand, buf []byte) []byte {
	buf = buf[:0]
	first := inc.next
	for k := 1 + rng.IntN(6); k > 0 && len(buf) < chaosMaxBatch; k-- {
		dest, destInc := ch.pickDest(rng, inc)
		fr, _ := ch.record(inc, dest, destInc, ch.frameSize(rng), false)
		buf = append(buf, fr...)
	}
	if err := ch.writeCut(inc, rng, buf); err != nil {
		if inc.end.Load() == chaosOpen {
			ch.fail("incarnation %d (id %08x): write: %v", inc.n, inc.id, err)
		}
		return buf
	}
	inc.mu.Lock()
	for seq := first; seq < inc.next; seq++ {
		inc.sent[seq-1].written = true
	}
	inc.mu.Unlock()
	return buf
}

// writeCut writes buf in pieces: sometimes whole, otherwise at up to four
// random cut points, one of them often inside the first header.
func (ch *chaos) writeCut(inc *chaosInc, rng *rand.Rand, buf []byte) error {
	inc.c.SetWriteDeadline(time.Now().Add(chaosSlack))
	var cuts []int
	if rng.IntN(5) != 0 {
		for range 1 + rng.IntN(4) {
			cuts = append(cuts, 1+rng.IntN(len(buf)-1))
		}
		if rng.IntN(3) == 0 {
			cuts = append(cuts, 1+rng.IntN(3))
		}
		slices.Sort(cuts)
		cuts = slices.Compact(cuts)
	}
	cuts = append(cuts, len(buf))
	at := 0
	for _, c := range cuts {
		if _, err := inc.c.NetConn().Write(buf[at:c]); err != nil {
			return err
		}
		at = c
		if rng.IntN(4) == 0 {
			time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond)
		}
	}
	return nil
}

// drip writes one small frame a byte at a time.
func (ch *chaos) drip(inc *chaosInc, rng *rand.Rand) {
	dest, destInc := ch.pickDest(rng, inc)
	fr, seq := ch.record(inc, dest, destInc, payload.MinSize+rng.IntN(16), false)
	inc.c.SetWriteDeadline(time.Now().Add(chaosSlack))
	for i := range fr {
		if _, err := inc.c.NetConn().Write(fr[i : i+1]); err != nil {
			ch.fail("incarnation %d: dribbled write: %v", inc.n, err)
			return
		}
		time.Sleep(50 * time.Microsecond)
	}
	inc.mu.Lock()
	inc.sent[seq-1].written = true
	inc.mu.Unlock()
}

// reader receives for inc until its connection ends, checking each frame
// and now and then stalling, which backs the relay up onto the senders.
func (ch *chaos) reader(inc *chaosInc, rng *rand.Rand) {
	defer close(inc.readDone)
	for {
		p, err := inc.c.Recv()
		if err != nil {
			switch e := inc.end.Load(); {
			case e == chaosOpen:
				ch.fail("incarnation %d (id %08x) never closed, yet its connection ended: %v", inc.n, inc.id, err)
			case (e == chaosHalf || e == chaosFinal) && err != io.EOF:
				ch.fail("incarnation %d (id %08x) half-closed: want a clean EOF from the server, got %v", inc.n, inc.id, err)
			}
			return
		}
		ch.check(inc, p)
		if rng.IntN(300) == 0 {
			ch.stalls.Add(1)
			time.Sleep(time.Duration(20+rng.IntN(280)) * time.Millisecond)
		}
	}
}

// check verifies one received payload against the oracle.
func (ch *chaos) check(inc *chaosInc, p []byte) {
	sender, seq64, err := ch.codec.Decode(p)
	if err != nil {
		ch.fail("incarnation %d got a payload that is no whole frame (%d bytes, %q): %v", inc.n, len(p), trim(p), err)
		return
	}
	src, seq := int32(sender), uint32(seq64)
	what := fmt.Sprintf("incarnation %d (id %08x) got frame %d of incarnation %d", inc.n, inc.id, seq64, sender)
	if sender > math.MaxInt32 || seq64 > math.MaxUint32 {
		ch.fail("%s, which does not exist", what)
		return
	}
	ch.mu.Lock()
	var from *chaosInc
	if src >= 1 && int(src) <= len(ch.incs) {
		from = ch.incs[src-1]
	}
	ch.mu.Unlock()
	if from == nil {
		ch.fail("%s, which does not exist", what)
		return
	}
	from.mu.Lock()
	var bad string
	var destInc int32
	switch {
	case seq < 1 || int(seq) > len(from.sent):
		bad = "which was never sent"
	case from.sent[seq-1].size != int32(len(p)):
		bad = fmt.Sprintf("of %d bytes, which the oracle's record says had %d", len(p), from.sent[seq-1].size)
	case from.sent[seq-1].dest != inc.id:
		bad = fmt.Sprintf("addressed to id %08x", from.sent[seq-1].dest)
	case from.sent[seq-1].truncated:
		bad = "which was never finished: its sender reset mid-frame"
	case from.sent[seq-1].delivered:
		bad = "twice"
	default:
		from.sent[seq-1].delivered = true
		destInc = from.sent[seq-1].destInc
	}
	from.mu.Unlock()
	if bad != "" {
		ch.fail("%s, %s", what, bad)
		return
	}
	if last := inc.lastSeq[src]; seq <= last {
		ch.fail("%s after frame %d: out of order", what, last)
		return
	}
	inc.lastSeq[src] = seq
	if destInc != inc.n {
		// Addressed to an unknown or stale ID that the server has since
		// handed to this connection: IDs are unique among open
		// connections only, so this is a correct delivery. Not so if the
		// incarnation it was meant for never closed: then its ID was
		// never free.
		ch.mu.Lock()
		meant := ch.incs[max(destInc, 1)-1]
		ch.mu.Unlock()
		if destInc != 0 && meant.end.Load() == chaosOpen {
			ch.fail("%s, meant for incarnation %d, which is still open with that ID", what, destInc)
			return
		}
		ch.reused.Add(1)
	}
	ch.checked.Add(1)
}

// chaosCounts is a snapshot of the server metrics the engine checks.
type chaosCounts struct {
	closed  []uint64 // by relay.CloseReason
	dropped []uint64 // by relay.DropReason
	frames  uint64
}

func chaosMetrics(m *relay.Metrics) chaosCounts {
	c := chaosCounts{closed: make([]uint64, len(relay.CloseReasons())), dropped: make([]uint64, len(relay.DropReasons()))}
	for _, r := range relay.CloseReasons() {
		c.closed[r] = m.Closed[r].Load()
	}
	for _, r := range relay.DropReasons() {
		c.dropped[r] = m.Dropped[r].Load()
	}
	c.frames = m.FramesRelayed.Load()
	return c
}

func (c chaosCounts) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "relayed=%d", c.frames)
	for _, r := range relay.CloseReasons() {
		if c.closed[r] != 0 {
			fmt.Fprintf(&b, " closed_%s=%d", r, c.closed[r])
		}
	}
	for _, r := range relay.DropReasons() {
		if c.dropped[r] != 0 {
			fmt.Fprintf(&b, " dropped_%s=%d", r, c.dropped[r])
		}
	}
	return b.String()
}

// checkMetrics holds the server's own account of the run against what the
// clients did: no client broke a limit, so no limit may have fired, and
// every connection (the warm-up one excluded) ended by the peer's doing.
func (ch *chaos) checkMetrics(before, after chaosCounts, rep chaosReport) {
	d := chaosMetrics(new(relay.Metrics))
	for i := range d.closed {
		d.closed[i] = after.closed[i] - before.closed[i]
	}
	for i := range d.dropped {
		d.dropped[i] = after.dropped[i] - before.dropped[i]
	}
	d.frames = after.frames - before.frames
	for _, r := range []relay.CloseReason{relay.ClosedOversize, relay.ClosedSlow, relay.ClosedStuck, relay.ClosedIncomplete, relay.ClosedOverLimit, relay.ClosedShutdown} {
		if d.closed[r] != 0 {
			ch.fail("server closed %d well-behaved connections for %s", d.closed[r], r)
		}
	}
	for _, r := range []relay.DropReason{relay.DropSlowConsumer, relay.DropOversize} {
		if d.dropped[r] != 0 {
			ch.fail("server dropped %d frames for %s under backpressure", d.dropped[r], r)
		}
	}
	byPeer, byError := d.closed[relay.ClosedByPeer], d.closed[relay.ClosedByError]
	if got := byPeer + byError; got != uint64(rep.conns) {
		ch.fail("server counted %d connections closed (peer %d, error %d), clients opened %d", got, byPeer, byError, rep.conns)
	}
	// Half-closes (mid-run and final) are orderly: the server sees EOF.
	if orderly := uint64(rep.conns - rep.resets - rep.closes); byPeer < orderly {
		ch.fail("server counted %d orderly closes, clients half-closed %d connections", byPeer, orderly)
	}
	if d.frames < uint64(rep.frames) {
		ch.fail("server relayed %d frames, clients verified %d", d.frames, rep.frames)
	}
	ch.t.Logf("%s: server %s", ch.tag, d)
}

func TestChaos(t *testing.T) {
	base := chaosBaseSeed(t)
	t.Logf("chaos seed %d (replay with RINGRELAY_CHAOS_SEED=%d)", base, base)
	for _, backend := range backends {
		t.Run(string(backend), func(t *testing.T) {
			ts := startServer(t, backend, chaosEdit)
			rep := runChaos(t, ts, backend, base, 0, chaosTraffic)
			t.Logf("%s: %s", backend, rep)
		})
	}
}

// TestSoak runs the chaos engine in rounds against one server per backend
// for RINGRELAY_SOAK (a duration, per backend; `make soak` sets it), and 1s
// when it is unset, so that it always runs. Each round ends with every
// connection closed and the oracle, descriptor and goroutine checks; the
// server stays up across rounds. It reports peak Go heap and process RSS
// and holds the RSS to a bound derived from the limits.
func TestSoak(t *testing.T) {
	dur := time.Second
	if s := os.Getenv("RINGRELAY_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("RINGRELAY_SOAK=%q: want a positive duration such as 10m", s)
		}
		dur = d
	}
	base := chaosBaseSeed(t)
	t.Logf("soak seed %d (replay with RINGRELAY_CHAOS_SEED=%d), %v per backend", base, base, dur)
	for _, backend := range backends {
		t.Run(string(backend), func(t *testing.T) {
			ts := startServer(t, backend, chaosEdit)
			runtime.GC()
			debug.FreeOSMemory()
			rssBase, err := chaosRSS()
			if err != nil {
				t.Fatal(err)
			}
			peak := chaosWatchMemory(t)

			var total chaosReport
			rounds := 0
			for end := time.Now().Add(dur); rounds == 0 || time.Until(end) > 0; {
				traffic := min(10*time.Second, max(time.Until(end), time.Second))
				total.add(runChaos(t, ts, backend, base, rounds, traffic))
				rounds++
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				rss, _ := chaosRSS()
				t.Logf("%s: after round %d: Go heap in use %.1f MiB, RSS %.1f MiB", backend, rounds, mib(int64(ms.HeapInuse)), mib(rss))
				if t.Failed() {
					break
				}
			}
			heapPeak, rssPeak := peak()

			limit := chaosRSSBound(total.records)
			t.Logf("%s: %d rounds: %s", backend, rounds, total)
			t.Logf("%s: peak Go heap in use %.1f MiB; peak RSS %.1f MiB (%.1f MiB before, growth %.1f MiB, bound %.1f MiB)",
				backend, mib(heapPeak), mib(rssPeak), mib(rssBase), mib(rssPeak-rssBase), mib(limit))
			if rssPeak > rssBase+limit {
				t.Errorf("[%s, RINGRELAY_CHAOS_SEED=%d] peak RSS %.1f MiB grew %.1f MiB over the %.1f MiB before the soak, beyond the bound of %.1f MiB",
					backend, base, mib(rssPeak), mib(rssPeak-rssBase), mib(rssBase), mib(limit))
			}
		})
	}
}

// chaosRSSBound is how far the process may grow during a soak whose
// largest round kept records oracle records.
//
// What the limits let the relay hold, per connection: up to MaxQueue of
// queued output, plus what the read that crossed the limit carried (at
// most a frame being completed, MaxFrame+1, and the rest of one 16 KiB
// receive buffer); both output buffers of a connection (the one in flight
// and the one filling) keep their capacity while traffic flows, so that
// counts twice; and a partial frame of up to MaxFrame+5 in the parser.
// The receive buffers are fixed: 256 x 16 KiB here.
//
// The clients live in the same process: each has a 64 KiB read buffer, up
// to MaxFrame more for a payload longer than that, and one batch of at
// most chaosMaxBatch plus a frame being written. The oracle keeps one
// record per frame (twice that while its slice grows) and the payload
// codec's filler template (MaxFrame and 4 KiB).
//
// Go's collector lets the heap reach twice the live data (GOGC=100). The
// race detector keeps two bytes of shadow per byte of memory touched plus
// metadata: call it four times. 64 MiB of slack covers the runtime,
// goroutine stacks and the test binary itself.
func chaosRSSBound(records int64) int64 {
	const conns = chaosClients
	perConn := 2*(chaosMaxQueue+chaosMaxFrame+1+16<<10) + chaosMaxFrame + 5
	server := int64(conns*perConn + 256*16<<10)
	clients := int64(conns * (64<<10 + chaosMaxFrame + chaosMaxBatch + chaosMaxFrame))
	oracle := 2*records*int64(unsafe.Sizeof(chaosRec{})) + 2*chaosMaxFrame
	factor := int64(2)
	if chaosRace() {
		factor *= 4
	}
	return factor*(server+clients+oracle) + 64<<20
}

func chaosRace() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// chaosRSS reads VmRSS from /proc/self/status, in bytes.
func chaosRSS() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmRSS %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmRSS line in /proc/self/status")
}

// chaosWatchMemory samples the Go heap in use and the process RSS every
// 100ms until the returned function is called, which stops the sampler
// and returns both peaks.
func chaosWatchMemory(t testing.TB) (peaks func() (heap, rss int64)) {
	stop := make(chan struct{})
	done := make(chan struct{})
	var heap, rss int64
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap = max(heap, int64(ms.HeapInuse))
		if n, err := chaosRSS(); err == nil {
			rss = max(rss, n)
		}
	}
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	var once sync.Once
	peaks = func() (int64, int64) {
		once.Do(func() {
			close(stop)
			<-done
			sample()
		})
		return heap, rss
	}
	t.Cleanup(func() { peaks() })
	return peaks
}

// Slow-loris and memory attacks.

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
	if chaosRace() {
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
				nc, err := net.DialTimeout("tcp", ts.addr, chaosSlack)
				if err != nil {
					errs <- err
					continue
				}
				conns[i] = nc
				var id [4]byte
				nc.SetReadDeadline(time.Now().Add(chaosSlack))
				if _, err := io.ReadFull(nc, id[:]); err != nil {
					errs <- fmt.Errorf("read id: %w", err)
					continue
				}
				nc.SetReadDeadline(time.Time{})
				ids[i] = binary.BigEndian.Uint32(id[:])
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
				conns[i].SetWriteDeadline(time.Now().Add(chaosSlack))
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
			to.SetReadDeadline(time.Now().Add(chaosSlack))
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

func TestSlowLoris(t *testing.T) {
	for _, backend := range backends {
		t.Run(string(backend), func(t *testing.T) {
			t.Run("memory", func(t *testing.T) { lorisMemory(t, backend) })
			t.Run("frame-timeout", func(t *testing.T) { lorisTimeout(t, backend) })
		})
	}
}

// lorisMemory holds every attacker at once (the frame timeout is long) and
// checks that the process grows no more than the limits allow.
func lorisMemory(t *testing.T, backend reactor.Backend) {
	ts := startServer(t, backend, lorisEdit(time.Minute))
	_, portStr, _ := net.SplitHostPort(ts.addr)
	port, _ := strconv.Atoi(portStr)
	pair := lorisStartPair(t, ts)

	// Measure from a collected heap, with the pair and the loop warm.
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapBase, liveBase := int64(ms.HeapInuse), int64(ms.HeapAlloc)
	rssBase, err := chaosRSS()
	if err != nil {
		t.Fatal(err)
	}
	peak := chaosWatchMemory(t)

	idle, _ := lorisDial(t, ts, lorisIdle)
	headers, _ := lorisDial(t, ts, lorisHeaders)
	holders, _ := lorisDial(t, ts, lorisHolders)
	lorisWriteAll(t, headers, []byte{0, 0, 0, 0})
	lorisWriteAll(t, holders, lorisPartial())

	// Wait until the relay has read every byte the attackers sent, so the
	// peak below really has every partial frame in the relay's memory.
	want := 2 + lorisIdle + lorisHeaders + lorisHolders
	waitFor(t, "the relay to read every attacker's bytes", chaosSlack, func() bool {
		n, unread := lorisServerQueues(t, port)
		return n == want && unread == 0
	})
	rounds := pair.rounds.Load()
	waitFor(t, "the pair to exchange while the attackers hold on", chaosSlack, func() bool { return pair.rounds.Load() > rounds+10 })
	heapPeak, rssPeak := peak()
	pair.finish(t)
	// With the garbage collected, what is left is what the relay holds.
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heapLive := int64(ms.HeapAlloc) - liveBase

	if got := ts.stats.Open.Load(); got != int64(want) {
		t.Errorf("%d connections open, want all %d: nobody broke a limit yet", got, want)
	}
	conns := lorisIdle + lorisHeaders + lorisHolders
	limit := lorisMemoryBound(lorisHolders, conns)
	t.Logf("%s: %d partial frames of %d bytes, %d header-only, %d idle: live heap +%.1f MiB (formula %.1f MiB), heap in use peak +%.1f MiB, RSS +%.1f MiB (%.1f -> %.1f MiB, bound +%.1f MiB); the pair did %d rounds",
		backend, lorisHolders, lorisMaxFrame+3, lorisHeaders, lorisIdle, mib(heapLive), mib(lorisLive(lorisHolders, conns)),
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
func lorisTimeout(t *testing.T, backend reactor.Backend) {
	const frameTimeout = 500 * time.Millisecond
	ts := startServer(t, backend, lorisEdit(frameTimeout))
	pair := lorisStartPair(t, ts)
	before := ts.srv.Metrics().Closed[relay.ClosedIncomplete].Load()

	idle, idleIDs := lorisDial(t, ts, lorisIdle)
	headers, _ := lorisDial(t, ts, lorisHeaders)
	holders, _ := lorisDial(t, ts, lorisHolders)
	lorisWriteAll(t, headers, []byte{0, 0, 0, 0})
	lorisWriteAll(t, holders, lorisPartial())

	// Every attacker that started a frame sees its connection end: EOF,
	// or a reset if the relay closed with bytes still unread.
	deadline := time.Now().Add(chaosSlack)
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
	waitFor(t, "the relay to count every frame-timeout close", chaosSlack, func() bool {
		return ts.srv.Metrics().Closed[relay.ClosedIncomplete].Load()-before == kicked
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
		nc.SetReadDeadline(time.Now().Add(chaosSlack))
		got, err := bufio.NewReader(nc).ReadString(0)
		if err != nil || got != msg+"\x00" {
			t.Fatalf("idle client %d (id %08x): got %q, %v; want %q", i, idleIDs[i], got, err, msg)
		}
	}
	if got := ts.srv.Metrics().Closed[relay.ClosedIncomplete].Load() - before; got != kicked {
		t.Errorf("relay counted %d frame-timeout closes, want %d", got, kicked)
	}
	if n := ts.stats.Open.Load(); n != int64(2+lorisIdle) {
		t.Errorf("%d connections open, want the pair and the %d idle ones", n, lorisIdle)
	}
	t.Logf("%s: %d partial frames and %d bare headers closed after the %v frame timeout, %d idle kept; the pair did %d rounds",
		backend, lorisHolders, lorisHeaders, frameTimeout, lorisIdle, pair.rounds.Load())
}
