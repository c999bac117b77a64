package shard

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lostWakeup bounds every wait in these tests. A loop that sleeps this long
// while work is waiting for it has lost a wake-up: a correctness failure,
// not a slow machine.
const lostWakeup = 30 * time.Second

type countBell struct{ n atomic.Int64 }

func (b *countBell) Ring() { b.n.Add(1) }

type ringRecorder struct{ dsts []int }

func (r *ringRecorder) Ring(dst int) { r.dsts = append(r.dsts, dst) }

func countBells(n int) ([]*countBell, []Doorbell) {
	cs := make([]*countBell, n)
	ds := make([]Doorbell, n)
	for i := range cs {
		cs[i] = &countBell{}
		ds[i] = cs[i]
	}
	return cs, ds
}

func eventBells(t testing.TB, n int) ([]*EventFD, []Doorbell) {
	t.Helper()
	es := make([]*EventFD, n)
	ds := make([]Doorbell, n)
	for i := range es {
		e, err := NewEventFD()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		es[i], ds[i] = e, e
	}
	return es, ds
}

func mustMesh(t testing.TB, size int, bells []Doorbell) *Mesh {
	t.Helper()
	m, err := NewMesh(QueueConfig{Size: size, MaxPayload: 4096}, bells)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var hello = []byte("hello\x00")

func TestNewMeshChecks(t *testing.T) {
	if _, err := NewMesh(QueueConfig{Size: 256, MaxPayload: 10}, nil); err == nil {
		t.Error("a mesh of no loops was made")
	}
	if _, err := NewMesh(QueueConfig{Size: 256, MaxPayload: 10}, []Doorbell{&countBell{}, nil}); err == nil {
		t.Error("a loop without a doorbell was accepted")
	}
	if _, err := NewMesh(QueueConfig{Size: 1, MaxPayload: 10}, []Doorbell{&countBell{}}); err == nil {
		t.Error("a bad queue size was accepted")
	}
}

func TestMeshQueuesOnlyForPairsThatTalk(t *testing.T) {
	_, bells := countBells(4)
	m := mustMesh(t, 1024, bells)
	m.Port(2).Send(1, 5, hello)
	m.Port(2).Flush()
	for i := range m.queues {
		src, dst := i/4, i%4
		if got := m.queues[i].Load() != nil; got != (src == 2 && dst == 1) {
			t.Errorf("queue %d->%d exists: %v", src, dst, got)
		}
	}
	if got := m.Port(2).RingBytes(); got != 1024 {
		t.Errorf("loop 2 holds %d bytes of ring, want 1024", got)
	}
	var got []string
	m.Port(1).Drain(1<<20, func(src int, dest uint32, p []byte) { got = append(got, fmt.Sprintf("%d %d %s", src, dest, p)) })
	if fmt.Sprint(got) != fmt.Sprint([]string{"2 5 hello\x00"}) {
		t.Errorf("loop 1 drained %q", got)
	}
}

func TestMeshOneRingPerSleep(t *testing.T) {
	const producers = 8
	cs, bells := countBells(producers + 1)
	m := mustMesh(t, 64<<10, bells)
	sleeper := m.Port(0)
	if !sleeper.Sleep() {
		t.Fatal("Sleep refused with nothing pending")
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for k := 1; k <= producers; k++ {
		wg.Go(func() {
			<-start
			p := m.Port(k)
			for range 50 {
				p.Send(0, uint32(k), hello)
				p.Flush()
			}
		})
	}
	close(start)
	wg.Wait()
	if n := cs[0].n.Load(); n != 1 {
		t.Fatalf("%d producers rang a sleeping loop %d times, want once", producers, n)
	}
	rings := uint64(0)
	for k := 1; k <= producers; k++ {
		rings += m.Port(k).Stats().Rings
	}
	if rings != 1 {
		t.Fatalf("ports counted %d rings, want 1", rings)
	}

	sleeper.Awake()
	if n := sleeper.Drain(1<<20, func(int, uint32, []byte) {}); n != producers*50 {
		t.Fatalf("drained %d frames, want %d", n, producers*50)
	}
	m.Port(3).Send(0, 1, hello)
	m.Port(3).Flush()
	if n := cs[0].n.Load(); n != 1 {
		t.Fatalf("a producer rang an awake loop (%d rings)", n)
	}
	if sleeper.Sleep() {
		t.Fatal("Sleep let the loop block over a published frame")
	}
	sleeper.Drain(1<<20, func(int, uint32, []byte) {})
	if !sleeper.Sleep() {
		t.Fatal("Sleep refused after draining everything")
	}
	m.Port(4).Send(0, 1, hello)
	m.Port(4).Flush()
	if n := cs[0].n.Load(); n != 2 {
		t.Fatalf("second sleep: %d rings in all, want 2", n)
	}
}

func TestMeshRingerReplacesDoorbell(t *testing.T) {
	cs, bells := countBells(3)
	m := mustMesh(t, 1024, bells)
	rec := &ringRecorder{}
	m.Port(0).SetRinger(rec)
	m.Port(2).Sleep()
	m.Port(0).Send(2, 9, hello)
	m.Port(0).Send(1, 9, hello) // loop 1 is awake: no ring
	m.Port(0).Flush()
	if fmt.Sprint(rec.dsts) != "[2]" || cs[2].n.Load() != 0 || cs[1].n.Load() != 0 {
		t.Fatalf("ringer got %v, doorbells 1 and 2 got %d and %d; want [2], 0, 0",
			rec.dsts, cs[1].n.Load(), cs[2].n.Load())
	}
}

func TestMeshFullQueueWakesProducerWhenRoom(t *testing.T) {
	cs, bells := countBells(2)
	m := mustMesh(t, 256, bells)
	p0, p1 := m.Port(0), m.Port(1)
	sent := 0
	for p0.Send(1, uint32(sent+1), hello) {
		sent++
	}
	if p0.Stats().Full != 1 || p0.Stats().FramesOut != uint64(sent) {
		t.Fatalf("stats after filling: %+v (sent %d)", p0.Stats(), sent)
	}
	if !p0.Sleep() {
		t.Fatal("a full queue without room kept its producer awake")
	}
	if n := p1.Drain(1<<20, func(int, uint32, []byte) {}); n != sent {
		t.Fatalf("consumer drained %d of %d", n, sent)
	}
	if n := cs[0].n.Load(); n != 1 {
		t.Fatalf("the sleeping producer was rung %d times when room appeared, want 1", n)
	}
	p0.Awake()
	var resumed []int
	p0.Writable(func(dst int) { resumed = append(resumed, dst) })
	p0.Writable(func(dst int) { resumed = append(resumed, dst) })
	if fmt.Sprint(resumed) != "[1]" {
		t.Fatalf("Writable named %v, want [1] once", resumed)
	}

	// The same with the producer awake: no ring, but Sleep must notice.
	for p0.Send(1, 0, hello) {
	}
	p0.Flush()
	p1.Drain(1<<20, func(int, uint32, []byte) {})
	if p0.Sleep() {
		t.Fatal("Sleep let the loop block though its full queue has room")
	}
	if n := cs[0].n.Load(); n != 1 {
		t.Fatalf("an awake producer was rung (%d rings)", n)
	}
}

func TestMeshWake(t *testing.T) {
	cs, bells := countBells(2)
	m := mustMesh(t, 1024, bells)
	m.Wake(1)
	if cs[1].n.Load() != 0 {
		t.Fatal("Wake rang an awake loop")
	}
	m.Port(1).Sleep()
	m.Wake(1)
	m.Wake(1)
	if n := cs[1].n.Load(); n != 1 {
		t.Fatalf("two Wakes of a sleeping loop rang %d times, want 1", n)
	}
}

// TestMeshWakeRounds has one loop sleep on an eventfd whenever it runs
// dry, while another sends it one frame at a time, sometimes at once,
// sometimes after it has fallen asleep: every frame must get through, in
// order, without the sleeper ever waiting out lostWakeup.
func TestMeshWakeRounds(t *testing.T) {
	const rounds = 3000
	efds, bells := eventBells(t, 2)
	m := mustMesh(t, 4096, bells)
	done := make(chan error, 1)
	var sleeps atomic.Int64
	var stopped atomic.Bool // the consumer gave up: stop waiting for it to sleep
	// asleep: Sleep said yes and the consumer has not woken yet. Sleep
	// stores sleeping before it looks at its queues and takes it back if
	// a frame is there, so the state alone can be a sleep that never was.
	var asleep atomic.Bool
	go func() {
		defer stopped.Store(true)
		p := m.Port(1)
		got := 0
		var bad error
		for got < rounds && bad == nil {
			if p.Drain(1<<16, func(src int, dest uint32, payload []byte) {
				if src != 0 || dest != uint32(got) || !bytes.Equal(payload, hello) {
					bad = fmt.Errorf("frame %d: from %d dest %d %q", got, src, dest, payload)
				}
				got++
			}) > 0 {
				continue
			}
			if p.Sleep() {
				sleeps.Add(1)
				asleep.Store(true)
				woken, err := efds[1].Wait(lostWakeup)
				asleep.Store(false)
				if err != nil || !woken {
					bad = fmt.Errorf("asleep for %v with %d of %d frames received: wake-up lost (err %v)", lostWakeup, got, rounds, err)
				}
				p.Awake()
			}
		}
		done <- bad
	}()
	rng := rand.New(rand.NewPCG(9, 10))
	p := m.Port(0)
	waited := 0
	for i := range rounds {
		switch rng.IntN(3) {
		case 0:
			// Wait until the consumer sleeps and nobody has rung it yet
			// (a ring takes the state from sleeping to rung).
			for !(asleep.Load() && m.loops[1].state.Load() == sleeping) && !stopped.Load() {
				runtime.Gosched()
			}
			waited++
		case 1:
			runtime.Gosched()
		}
		if !p.Send(1, uint32(i), hello) {
			t.Fatal("a 4 KiB queue refused a frame")
		}
		p.Flush()
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Every frame sent to a sleeping consumer rang it.
	if waited == 0 || p.Stats().Rings < uint64(waited) {
		t.Fatalf("the producer sent %d frames to a sleeping consumer and rang it %d times (it slept %d times)",
			waited, p.Stats().Rings, sleeps.Load())
	}
}

// TestMeshWakeFromAnyGoroutine: a goroutine with no port stores a request
// and calls Mesh.Wake; the loop checks its requests after Sleep.
func TestMeshWakeFromAnyGoroutine(t *testing.T) {
	const rounds = 2000
	efds, bells := eventBells(t, 1)
	m := mustMesh(t, 1024, bells)
	var requests atomic.Int64
	done := make(chan error, 1)
	var stopped atomic.Bool
	go func() {
		defer stopped.Store(true)
		p := m.Port(0)
		handled := int64(0)
		for handled < rounds {
			if r := requests.Load(); r > handled {
				handled = r
				continue
			}
			if !p.Sleep() {
				continue
			}
			if requests.Load() > handled {
				p.Awake()
				continue
			}
			if woken, err := efds[0].Wait(lostWakeup); err != nil || !woken {
				done <- fmt.Errorf("asleep for %v with %d of %d requests handled: wake-up lost (err %v)", lostWakeup, handled, rounds, err)
				return
			}
			p.Awake()
		}
		done <- nil
	}()
	rng := rand.New(rand.NewPCG(11, 12))
	for range rounds {
		if rng.IntN(2) == 0 {
			for m.loops[0].state.Load() != sleeping && !stopped.Load() {
				runtime.Gosched()
			}
		}
		requests.Add(1)
		m.Wake(0)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestMeshStress runs four loops on four goroutines, each sending frames
// of random sizes to every other through rings small enough to be full
// most of the time, holding refused frames until Writable, and sleeping on
// an eventfd whenever a pass does nothing. Every pair's frames must arrive
// complete and in order, and every loop must finish.
func TestMeshStress(t *testing.T) {
	const (
		n       = 4
		perPair = 3000
	)
	efds, bells := eventBells(t, n)
	m := mustMesh(t, 512, bells)
	size := func(src, dst, seq int) int { return 1 + (src*7919+dst*104729+seq*31)%300 }

	errs := make(chan error, n)
	stats := make([]PortStats, n)
	for k := range n {
		go func() {
			err := stressLoop(m, efds[k], k, n, perPair, size)
			stats[k] = m.Port(k).Stats()
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		return
	}
	var full, rings, sleeps uint64
	for _, s := range stats {
		full, rings, sleeps = full+s.Full, rings+s.Rings, sleeps+s.Sleeps
		if s.FramesIn != perPair*(n-1) || s.FramesOut != perPair*(n-1) {
			t.Errorf("a loop counted %d frames in and %d out, want %d each", s.FramesIn, s.FramesOut, perPair*(n-1))
		}
	}
	t.Logf("refused sends %d, rings %d, sleeps %d", full, rings, sleeps)
	if full == 0 {
		t.Error("no queue was ever full: the test does not cover backpressure")
	}
}

func stressLoop(m *Mesh, bell *EventFD, k, n, perPair int, size func(src, dst, seq int) int) error {
	p := m.Port(k)
	rng := rand.New(rand.NewPCG(uint64(k), 13))
	nextSend := make([]int, n)
	nextRecv := make([]int, n)
	blocked := make([]bool, n)
	var want, buf []byte
	var bad error
	received, sent, total := 0, 0, perPair*(n-1)
	deliver := func(src int, dest uint32, payload []byte) {
		seq := nextRecv[src]
		want = payloadFor(want, seq, size(src, k, seq))
		if bad == nil && (dest != uint32(src+1)<<24|uint32(seq) || !bytes.Equal(payload, want)) {
			bad = fmt.Errorf("loop %d, frame %d from loop %d: dest %#x, %d bytes %.30q; want %d bytes %.30q",
				k, seq, src, dest, len(payload), payload, len(want), want)
		}
		nextRecv[src]++
		received++
	}
	for received < total || sent < total {
		progress := false
		for range rng.IntN(40) {
			dst := rng.IntN(n)
			seq := nextSend[dst]
			if dst == k || blocked[dst] || seq == perPair {
				continue
			}
			if !p.Send(dst, uint32(k+1)<<24|uint32(seq), // never 0, ControlDest
				payloadFor(buf, seq, size(k, dst, seq))) {
				blocked[dst] = true
				continue
			}
			nextSend[dst]++
			sent++
			progress = true
		}
		if p.Drain(1+rng.IntN(1024), deliver) > 0 {
			progress = true
		}
		p.Writable(func(dst int) { blocked[dst], progress = false, true })
		p.Flush()
		if bad != nil {
			return bad
		}
		if progress || canSend(k, nextSend, blocked, perPair) {
			continue
		}
		if p.Sleep() {
			if woken, err := bell.Wait(lostWakeup); err != nil || !woken {
				return fmt.Errorf("loop %d asleep for %v: received %d of %d, sent %d of %d (err %v)",
					k, lostWakeup, received, total, sent, total, err)
			}
			p.Awake()
		}
	}
	return nil
}

func canSend(k int, next []int, blocked []bool, perPair int) bool {
	for dst := range next {
		if dst != k && !blocked[dst] && next[dst] < perPair {
			return true
		}
	}
	return false
}

func TestPortSteadyStateAllocatesNothing(t *testing.T) {
	_, bells := countBells(2)
	m := mustMesh(t, 64<<10, bells)
	p0, p1 := m.Port(0), m.Port(1)
	frame := bytes.Repeat([]byte{'q'}, 64)
	frame[63] = 0
	sink := 0
	deliver := func(src int, dest uint32, payload []byte) { sink += len(payload) }
	round := func() {
		for i := range 20 {
			p0.Send(1, uint32(i), frame)
		}
		p0.Flush()
		p1.Drain(1<<20, deliver)
		p1.Sleep()
		p1.Awake()
	}
	round()
	if a := testing.AllocsPerRun(200, round); a != 0 {
		t.Fatalf("%v allocations per pass of 20 frames", a)
	}
	if sink == 0 {
		t.Fatal("nothing delivered")
	}
}

func TestPortTrimReleasesIdleRings(t *testing.T) {
	_, bells := countBells(3)
	m := mustMesh(t, 1024, bells)
	p := m.Port(0)
	p.Send(1, 1, hello)
	p.Send(2, 1, hello)
	p.Flush()
	if p.RingBytes() != 2048 || p.Unread() == 0 {
		t.Fatalf("ring bytes %d, unread %d", p.RingBytes(), p.Unread())
	}
	m.Port(1).Drain(1<<20, func(int, uint32, []byte) {})
	p.Trim() // both talked this tick: kept
	if p.RingBytes() != 2048 {
		t.Fatalf("Trim released rings that talked this tick: %d left", p.RingBytes())
	}
	p.Send(2, 1, hello) // 0->2 still holds its first frame, and another
	p.Flush()
	if freed := p.Trim(); freed != 1024 || p.RingBytes() != 1024 {
		t.Fatalf("second Trim freed %d (holding %d); want only the idle, empty 0->1 ring", freed, p.RingBytes())
	}
	if n := m.Port(2).Drain(1<<20, func(int, uint32, []byte) {}); n != 2 {
		t.Fatalf("loop 2 drained %d frames, want 2", n)
	}
	if p.Unread() != 0 {
		t.Fatalf("unread %d after everything was drained", p.Unread())
	}
}

// BenchmarkMesh64B moves 64-byte frames from loop 0 to loop 1 on two
// goroutines through a Mesh, with the whole protocol a loop runs: batches
// of 32 frames per pass, Flush, Writable, and Sleep on an eventfd whenever
// a side has nothing to do. rings/frame shows how often a doorbell was
// needed.
func BenchmarkMesh64B(b *testing.B) {
	efds, bells := eventBells(b, 2)
	m, err := NewMesh(QueueConfig{Size: DefaultQueueSize, MaxPayload: 1 << 20}, bells)
	if err != nil {
		b.Fatal(err)
	}
	frame := bytes.Repeat([]byte{'m'}, 64)
	frame[63] = 0
	b.SetBytes(64)
	b.ResetTimer()
	done := make(chan struct{})
	go func() {
		defer close(done)
		p := m.Port(0)
		blocked := false
		for i := 0; i < b.N; {
			for k := 0; k < 32 && i < b.N && !blocked; k++ {
				if !p.Send(1, uint32(i), frame) {
					blocked = true
					break
				}
				i++
			}
			p.Writable(func(int) { blocked = false })
			p.Flush()
			if blocked && p.Sleep() {
				efds[0].Wait(-1)
				p.Awake()
			}
		}
		p.Flush()
	}()
	p := m.Port(1)
	got := 0
	for got < b.N {
		n := p.Drain(64<<10, func(int, uint32, []byte) {})
		got += n
		if n == 0 && p.Sleep() {
			efds[1].Wait(-1)
			p.Awake()
		}
	}
	<-done
	rings := m.Port(0).Stats().Rings + m.Port(1).Stats().Rings
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
	b.ReportMetric(float64(rings)/float64(b.N), "rings/frame")
}
