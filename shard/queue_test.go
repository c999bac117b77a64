package shard

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// payloadFor builds the payload of frame seq: a readable prefix naming the
// frame, filler up to size-1 bytes, and the trailing NUL. Any byte out of
// place shows up when the receiver rebuilds it.
func payloadFor(buf []byte, seq, size int) []byte {
	buf = buf[:0]
	buf = fmt.Appendf(buf, "#%d/%d:", seq, size)
	for len(buf) < size-1 {
		buf = append(buf, byte('a'+(seq+len(buf))%26))
	}
	buf = buf[:max(size-1, 0)]
	return append(buf, 0)
}

// checker verifies that frames arrive in sequence with the right content.
type checker struct {
	t     testing.TB
	next  int
	sizes []int // size of frame seq; the destination ID is uint32(seq)
	want  []byte
	bad   int
}

func (c *checker) frame(dest uint32, payload []byte) {
	if c.next >= len(c.sizes) {
		c.fail("extra frame dest=%d len=%d", dest, len(payload))
		return
	}
	c.want = payloadFor(c.want, c.next, c.sizes[c.next])
	if dest != uint32(c.next) || !bytes.Equal(payload, c.want) {
		c.fail("frame %d: got dest %d payload %.40q (len %d), want dest %d %.40q (len %d)",
			c.next, dest, payload, len(payload), c.next, c.want, len(c.want))
	}
	c.next++
}

func (c *checker) fail(format string, args ...any) {
	c.bad++
	if c.bad <= 5 {
		c.t.Errorf(format, args...)
	}
}

func mustQueue(t testing.TB, size, maxPayload int) *Queue {
	t.Helper()
	q, err := NewQueue(QueueConfig{Size: size, MaxPayload: maxPayload})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestQueueConfigChecked(t *testing.T) {
	for _, cfg := range []QueueConfig{
		{Size: 0, MaxPayload: 10}, {Size: 63, MaxPayload: 10}, {Size: 130, MaxPayload: 10},
		{Size: 256, MaxPayload: 0}, {Size: 256, MaxPayload: 2 << 30},
	} {
		if _, err := NewQueue(cfg); err == nil {
			t.Errorf("NewQueue(%+v) accepted", cfg)
		}
	}
	q := mustQueue(t, 256, 100)
	if q.pbuf != nil {
		t.Errorf("a new queue holds a %d-byte ring before any Put", len(q.pbuf))
	}
}

func TestQueueFramesInvisibleUntilPublish(t *testing.T) {
	q := mustQueue(t, 1024, 200)
	c := &checker{t: t, sizes: []int{1, 10, 100, 5}}
	var buf []byte
	for seq := range 3 {
		if !q.Put(uint32(seq), payloadFor(buf, seq, c.sizes[seq])) {
			t.Fatalf("Put %d refused on an empty ring", seq)
		}
	}
	if n, _ := q.Drain(1<<20, c.frame); n != 0 || q.Pending() {
		t.Fatalf("consumer saw %d frames (pending %v) before Publish", n, q.Pending())
	}
	if !q.Publish() {
		t.Fatal("Publish found nothing to publish")
	}
	if !q.Put(3, payloadFor(buf, 3, c.sizes[3])) {
		t.Fatal("Put 3 refused")
	}
	if n, _ := q.Drain(1<<20, c.frame); n != 3 || c.next != 3 {
		t.Fatalf("drained %d frames (checker at %d), want the 3 published", n, c.next)
	}
	if q.Pending() {
		t.Fatal("Pending after draining everything published")
	}
	if n, _ := q.Drain(1<<20, c.frame); n != 0 {
		t.Fatalf("drained %d unpublished frames", n)
	}
	q.Publish()
	if n, _ := q.Drain(1<<20, c.frame); n != 1 || c.next != 4 {
		t.Fatalf("drained %d after the second Publish, want 1", n)
	}
	if q.Publish() {
		t.Fatal("Publish with nothing new reported something")
	}
}

func TestQueueFullThenRoom(t *testing.T) {
	q := mustQueue(t, 256, 100)
	p := make([]byte, 40) // a 48-byte record
	p[39] = 0
	for i := range 39 {
		p[i] = 'x'
	}
	n := 0
	for q.Put(uint32(n), p) {
		n++
	}
	if n != 256/48 {
		t.Fatalf("a 256-byte ring took %d records of 48 bytes, want %d", n, 256/48)
	}
	if !q.Armed() {
		t.Fatal("a refused Put did not ask to hear about room")
	}
	if q.Put(99, []byte{0}) {
		t.Fatal("a 1-byte frame overtook the refused one")
	}
	q.Publish()
	// Room for a 48-byte record after any wrap means 96 bytes free, and
	// never less than half the ring: the producer hears at 128 bytes held.
	var rooms []bool
	for range n {
		_, room := q.Drain(1, func(uint32, []byte) {})
		rooms = append(rooms, room)
	}
	want := []bool{false, false, true, false, false} // held: 192, 144, 96, 48, 0
	if fmt.Sprint(rooms) != fmt.Sprint(want) {
		t.Fatalf("room reported after each drained frame: %v, want %v", rooms, want)
	}
	if q.Armed() {
		t.Fatal("still armed after the consumer reported room")
	}
	if !q.Put(0, p) {
		t.Fatal("Put refused after the ring drained")
	}
}

func TestQueueRoomDisarms(t *testing.T) {
	q := mustQueue(t, 256, 100)
	p := bytes.Repeat([]byte{'y'}, 40)
	p[39] = 0
	for q.Put(1, p) {
	}
	q.Publish()
	if _, room := q.Drain(1<<20, func(uint32, []byte) {}); !room {
		t.Fatal("draining a full ring reported no room")
	}
	if q.Armed() {
		t.Fatal("armed after the consumer reported room")
	}
	if !q.Put(2, p) || q.Armed() {
		t.Fatalf("Put after room: armed %v", q.Armed())
	}
}

func TestQueueDrainBudget(t *testing.T) {
	q := mustQueue(t, 1024, 500)
	small := bytes.Repeat([]byte{'s'}, 40) // 48-byte records
	small[39] = 0
	for range 10 {
		q.Put(7, small)
	}
	big := bytes.Repeat([]byte{'b'}, 300)
	big[299] = 0
	q.Put(8, big)
	q.Publish()
	if n, _ := q.Drain(100, func(uint32, []byte) {}); n != 3 {
		t.Errorf("budget 100 drained %d records of 48 bytes, want 3 (stop once at or past the budget)", n)
	}
	if n, _ := q.Drain(0, func(uint32, []byte) {}); n != 1 {
		t.Errorf("budget 0 drained %d frames, want 1: every pass moves", n)
	}
	if n, _ := q.Drain(48*6, func(uint32, []byte) {}); n != 6 {
		t.Errorf("budget of 6 records drained %d", n)
	}
	var got []byte
	if n, _ := q.Drain(1, func(_ uint32, p []byte) { got = append(got, p...) }); n != 1 || !bytes.Equal(got, big) {
		t.Errorf("a frame over the budget: drained %d, %d bytes", n, len(got))
	}
}

func TestQueueWrapsWithPadding(t *testing.T) {
	q := mustQueue(t, 256, 120)
	rng := rand.New(rand.NewPCG(1, 2))
	const total = 20000
	c := &checker{t: t, sizes: make([]int, total)}
	for i := range c.sizes {
		c.sizes[i] = 1 + rng.IntN(120)
	}
	var buf []byte
	sent, pads := 0, 0
	for c.next < total {
		for k := rng.IntN(8); k >= 0 && sent < total; k-- {
			before := q.tail
			if !q.Put(uint32(sent), payloadFor(buf, sent, c.sizes[sent])) {
				break
			}
			if q.tail-before != uint64(recSize(c.sizes[sent])) {
				pads++
			}
			sent++
		}
		q.Publish()
		q.Drain(1+rng.IntN(300), c.frame)
		if c.bad > 0 {
			t.FailNow()
		}
	}
	if pads == 0 {
		t.Fatal("no record ever wrapped: the test does not cover padding")
	}
	t.Logf("%d frames, %d padded wraps", total, pads)
}

func TestQueueGrowsForBigFramesAndTrims(t *testing.T) {
	q := mustQueue(t, 256, 4000)
	c := &checker{t: t, sizes: []int{10, 20, 1000, 4000, 30, 40}}
	var buf []byte
	put := func(seq int) bool { return q.Put(uint32(seq), payloadFor(buf, seq, c.sizes[seq])) }
	drainAll := func() bool {
		q.Publish()
		_, room := q.Drain(1<<30, c.frame)
		return room
	}

	if !put(0) || len(q.pbuf) != 256 {
		t.Fatalf("first Put: ring of %d bytes, want 256", len(q.pbuf))
	}
	if put(2) {
		t.Fatal("a 1000-byte frame went into a busy 256-byte ring")
	}
	if put(1) {
		t.Fatal("a small frame overtook the big one waiting for room")
	}
	if !drainAll() {
		t.Fatal("no room reported once the ring emptied")
	}
	// The small frame comes back first, and the ring grows for the big
	// one that waits: room for two records of 1008 bytes.
	if !put(1) || len(q.pbuf) != 2048 {
		t.Fatalf("after growing: ring of %d bytes, want 2048 (256 doubled until 2*1008 fits)", len(q.pbuf))
	}
	if !put(2) {
		t.Fatal("the big frame was refused by the ring grown for it")
	}
	drainAll()
	if !put(3) || len(q.pbuf) != 2*recSize(4000) {
		t.Fatalf("largest frame: ring of %d bytes, want %d (never past two records)", len(q.pbuf), 2*recSize(4000))
	}
	drainAll()

	if freed := q.Trim(); freed != 0 {
		t.Fatalf("Trim right after a big frame freed %d bytes", freed)
	}
	if freed := q.Trim(); freed != 2*recSize(4000) || q.pbuf != nil {
		t.Fatalf("Trim of an idle grown ring freed %d bytes (ring %d)", freed, len(q.pbuf))
	}
	if !put(4) || len(q.pbuf) != 256 {
		t.Fatalf("Put after Trim: ring of %d bytes, want a fresh 256", len(q.pbuf))
	}
	if freed := q.Trim(); freed != 0 {
		t.Fatalf("Trim of a ring holding an unread frame freed %d bytes", freed)
	}
	drainAll()
	if !put(5) {
		t.Fatal("Put 5 refused")
	}
	drainAll()
	if c.next != len(c.sizes) {
		t.Fatalf("received %d of %d frames", c.next, len(c.sizes))
	}
	if freed := q.Trim(); freed != 0 {
		t.Fatalf("Trim of a small ring that talked since the last Trim freed %d", freed)
	}
	if freed := q.Trim(); freed != 256 {
		t.Fatalf("Trim of a ring idle for a whole tick freed %d, want 256", freed)
	}
}

// TestQueueBigFrameIsNotStarved: a steady stream of small frames, offered
// before the big one every pass (the worst order), faster than the
// consumer drains them, must not keep a big frame out for long.
func TestQueueBigFrameIsNotStarved(t *testing.T) {
	q := mustQueue(t, 1024, 3000)
	small := bytes.Repeat([]byte{'s'}, 40)
	small[39] = 0
	big := bytes.Repeat([]byte{'B'}, 2500)
	big[2499] = 0
	const bigs = 20
	bigSent, bigGot, round, lastBig := 0, 0, 0, 0
	count := func(dest uint32, p []byte) {
		if dest == 1 {
			bigGot++
		}
	}
	for bigGot < bigs {
		round++
		if round-lastBig > 50 {
			t.Fatalf("big frame %d still out after 50 passes (pass %d)", bigSent, round)
		}
		for range 10 {
			q.Put(0, small)
		}
		if bigSent < bigs && q.Put(1, big) {
			bigSent++
			lastBig = round
		}
		q.Publish()
		q.Drain(300, count)
	}
}

func TestQueuePutOverMaxPanics(t *testing.T) {
	q := mustQueue(t, 256, 10)
	defer func() {
		if recover() == nil {
			t.Fatal("Put of 11 bytes into a queue for 10 did not panic")
		}
	}()
	q.Put(1, make([]byte, 11))
}

// TestQueueConcurrent runs a producer and a consumer on two goroutines over
// a ring small enough to fill, wrap and grow all the time.
func TestQueueConcurrent(t *testing.T) {
	const total = 60000
	q := mustQueue(t, 1024, 3000)
	rng := rand.New(rand.NewPCG(3, 4))
	c := &checker{t: t, sizes: make([]int, total)}
	for i := range c.sizes {
		c.sizes[i] = 1 + rng.IntN(200)
		if i%500 == 0 {
			c.sizes[i] = 1500 + rng.IntN(1500) // forces a grow
		}
	}
	done := make(chan struct{})
	var gaveUp atomic.Bool // the producer waited lostWakeup for room
	go func() {
		defer close(done)
		prng := rand.New(rand.NewPCG(5, 6))
		start := time.Now()
		var buf []byte
		for seq := 0; seq < total; {
			for k := prng.IntN(64); k >= 0 && seq < total; k-- {
				if !q.Put(uint32(seq), payloadFor(buf, seq, c.sizes[seq])) {
					break
				}
				seq++
			}
			q.Publish()
			for q.Armed() { // the consumer must clear it
				if time.Since(start) > lostWakeup {
					gaveUp.Store(true)
					return
				}
				runtime.Gosched()
			}
			if seq%4096 == 0 {
				q.Trim()
			}
		}
	}()
	crng := rand.New(rand.NewPCG(7, 8))
	for c.next < total && c.bad == 0 && !gaveUp.Load() {
		if n, _ := q.Drain(1+crng.IntN(2000), c.frame); n == 0 {
			runtime.Gosched()
		}
	}
	<-done
	if gaveUp.Load() {
		t.Fatalf("the producer found the ring full and never heard of room (%d of %d frames received)", c.next, total)
	}
	if c.next != total {
		t.Fatalf("received %d of %d frames", c.next, total)
	}
}

func TestQueueSteadyStateAllocatesNothing(t *testing.T) {
	q := mustQueue(t, 4096, 100)
	p := bytes.Repeat([]byte{'z'}, 64)
	p[63] = 0
	sink := 0
	drain := func(dest uint32, payload []byte) { sink += len(payload) }
	round := func() {
		for i := range 20 {
			q.Put(uint32(i), p)
		}
		q.Publish()
		q.Drain(1<<20, drain)
	}
	round()
	if a := testing.AllocsPerRun(200, round); a != 0 {
		t.Fatalf("%v allocations per round of 20 frames", a)
	}
	if sink == 0 {
		t.Fatal("nothing drained")
	}
}

// BenchmarkQueue64B moves 64-byte frames (payload and NUL) from one
// goroutine to another through one queue: the handoff cost between loops
// without the I/O around it. Run with -cpu 2 or more to let the two sides
// run in parallel.
func BenchmarkQueue64B(b *testing.B) {
	q, err := NewQueue(QueueConfig{Size: DefaultQueueSize, MaxPayload: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	p := bytes.Repeat([]byte{'m'}, 64)
	p[63] = 0
	b.SetBytes(64)
	b.ResetTimer()
	go func() {
		for i := 0; i < b.N; {
			for k := 0; k < 32 && i < b.N; k++ {
				if !q.Put(uint32(i), p) {
					break
				}
				i++
			}
			q.Publish()
			for q.Armed() {
				runtime.Gosched()
			}
		}
	}()
	got := 0
	for got < b.N {
		n, _ := q.Drain(64<<10, func(uint32, []byte) {})
		if n == 0 {
			runtime.Gosched()
		}
		got += n
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}
