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
//
// This file holds the engine's state and one run from start to the final
// checks; chaos_client_test.go what each client does, chaos_oracle_test.go
// how received frames and the server's counters are checked, soak_test.go
// the long form.

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	// chaosMaxBatch caps the bytes one client writes in one go.
	chaosMaxBatch = 256 << 10
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

// chaosTraffic is how long TestChaos lets the clients loose per case
// (draining and the closing checks add a second or two): 2 s in `make
// test`, which runs four cases at a time (-parallel 4), or
// RINGRELAY_CHAOS_TRAFFIC (a duration) for a longer look; `make soak`
// runs the same engine in rounds for minutes.
func chaosTraffic(t testing.TB, def time.Duration) time.Duration {
	t.Helper()
	s := os.Getenv("RINGRELAY_CHAOS_TRAFFIC")
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		t.Fatalf("RINGRELAY_CHAOS_TRAFFIC=%q: want a positive duration such as 30s", s)
	}
	return d
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

	// addrs, when set, are the nodes of a cluster: slot k dials
	// addrs[k%len(addrs)] instead of ts.
	addrs []string
	// remoteDrops, in a cluster, counts the frames the nodes dropped as
	// remote_over_limit since the run began.
	remoteDrops func() uint64
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

	// The counters' baseline, once the server is warm.
	warm := ts.dial(t)
	warm.Close()
	ts.waitQuiet(t, "warm-up connection closed")
	before := chaosMetrics(ts.metrics())

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
	if !chaosWait(&workers, progressSlack) {
		ch.fail("workers still busy %v after the stop: a write is stuck (server metrics %s)", progressSlack, chaosMetrics(ts.metrics()))
		ch.abort()
		workers.Wait()
	}

	rep := ch.settle(ts)

	// Every client connection is closed: the server must have seen every
	// close. Whether it also gave back every descriptor and goroutine is
	// the caller's check (processMark), made where nothing else runs.
	ts.waitQuiet(t, ch.tag+" server to see every connection closed")
	ch.checkMetrics(before, chaosMetrics(ts.metrics()), rep)
	return rep
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
	// Under backpressure the relay drops nothing between clients of one
	// node, so nothing owed between them may be missing. Between nodes it
	// drops, by design and counted as remote_over_limit, what arrives for a
	// destination already over twice -max-queue (the sender, on another
	// node, cannot be paused): owed frames between nodes may be missing up
	// to that count, and no more.
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
	crossNode := func(src *chaosInc, r *chaosRec) bool {
		k := len(ch.addrs)
		return k > 0 && src.slot%k != incs[r.destInc-1].slot%k
	}
	// missing counts the owed frames not delivered yet: n in all, cross
	// of them between nodes.
	missing := func() (n, cross int, first string) {
		for i, r := range owed {
			src := incs[owedFrom[i]-1]
			src.mu.Lock()
			if !r.delivered {
				if n == 0 {
					seq := 1 + (chaosIndex(src.sent, r))
					first = fmt.Sprintf("incarnation %d seq %d -> incarnation %d (id %08x, %d bytes)", src.n, seq, r.destInc, r.dest, r.size)
				}
				n++
				if crossNode(src, r) {
					cross++
				}
			}
			src.mu.Unlock()
		}
		return n, cross, first
	}
	deadline := time.Now().Add(progressSlack)
	for ch.failures.Load() == 0 {
		n, cross, first := missing()
		var drops uint64
		if ch.remoteDrops != nil {
			drops = ch.remoteDrops()
		}
		if n == 0 || n == cross && uint64(cross) <= drops {
			break
		}
		if time.Now().After(deadline) {
			ch.fail("%d of %d owed frames never arrived within %v after the traffic stopped (%d between nodes, against %d dropped as remote_over_limit); first: %s (server metrics %s)",
				n, len(owed), progressSlack, cross, drops, first, chaosMetrics(ts.metrics()))
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The orderly goodbye: half-close, then read until the server closes.
	// Frames that were not owed may still come in meanwhile, and are
	// checked like any other.
	for _, inc := range final {
		if inc.end.CompareAndSwap(chaosOpen, chaosFinal) {
			if err := closeWrite(inc.c); err != nil {
				ch.fail("incarnation %d: CloseWrite: %v", inc.n, err)
			}
		}
	}
	for _, inc := range final {
		select {
		case <-inc.readDone:
		case <-time.After(progressSlack):
			ch.fail("incarnation %d (id %08x) half-closed at the end, the server did not close it within %v", inc.n, inc.id, progressSlack)
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

// TestChaos runs the engine against one server per backend and loop
// count, over plain TCP and over TLS (the same clients, resets,
// half-closes, as close_notify, and oracle, through the handshake pool and
// the loops' record layer). The cases run side by side, each with its own
// server, for a fixed time each; the test itself is not parallel, so that
// when every case is over this process must hold exactly the descriptors
// and goroutines it held before: a server that leaked one fails here.
func TestChaos(t *testing.T) {
	base := chaosBaseSeed(t)
	t.Logf("chaos seed %d (replay with RINGRELAY_CHAOS_SEED=%d)", base, base)
	type chaosCase struct {
		backend reactor.Backend
		loops   int
		tls     bool
	}
	var cases []chaosCase
	for _, backend := range backends {
		for _, loops := range loopCounts {
			cases = append(cases, chaosCase{backend, loops, false})
		}
		for _, loops := range []int{1, 2} {
			cases = append(cases, chaosCase{backend, loops, true})
		}
	}
	mark := markProcess(t)
	t.Run("cases", func(t *testing.T) {
		for _, c := range cases {
			name := fmt.Sprintf("%s/loops=%d", c.backend, c.loops)
			if c.tls {
				name = "tls/" + name
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				var ts *testServer
				if c.tls {
					ts = startServerTLS(t, c.backend, c.loops, tlsOptions{}, chaosEdit)
				} else {
					ts = startServerN(t, c.backend, c.loops, chaosEdit)
				}
				rep := runChaos(t, ts, c.backend, base, 0, chaosTraffic(t, 2*time.Second))
				t.Logf("%s: %s", name, rep)
			})
		}
	})
	mark.settle(t, "every chaos server stopped")
}
