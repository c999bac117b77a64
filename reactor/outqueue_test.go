package reactor

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestOutQueueFIFO pushes random-sized writes and consumes random-sized
// sends, and checks the bytes come out exactly as they went in, that the
// byte count stays right and that emptied chunks go back to the pool.
func TestOutQueueFIFO(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var pool chunkPool
	var q outQueue
	var want, got []byte
	segs := make([][]byte, maxSegments)
	next := byte(1)
	for round := range 300 {
		for range rng.IntN(4) {
			b := make([]byte, rng.IntN(3*chunkSize))
			for i := range b {
				b[i] = next
				next++
			}
			q.push(b, &pool)
			want = append(want, b...)
		}
		if q.n != len(want)-len(got) {
			t.Fatalf("round %d: n = %d, want %d", round, q.n, len(want)-len(got))
		}
		k := q.peek(segs)
		avail := 0
		for _, s := range segs[:k] {
			avail += len(s)
		}
		if k < maxSegments && avail != q.n {
			t.Fatalf("round %d: peek shows %d of %d bytes in %d segments", round, avail, q.n, k)
		}
		// Consume a prefix of what peek showed, like a short send.
		take := 0
		if avail > 0 {
			take = rng.IntN(avail + 1)
		}
		var sent []byte
		for _, s := range segs[:k] {
			sent = append(sent, s...)
		}
		got = append(got, sent[:take]...)
		q.consume(take, &pool)
	}
	q.push([]byte("tail"), &pool)
	want = append(want, "tail"...)
	for q.n > 0 {
		k := q.peek(segs)
		for _, s := range segs[:k] {
			got = append(got, s...)
			q.consume(len(s), &pool)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("bytes out differ from bytes in (%d vs %d)", len(got), len(want))
	}
	if q.head != nil || q.tail != nil {
		t.Fatalf("drained queue still holds chunks")
	}
	if pool.count == 0 {
		t.Fatalf("no chunk returned to the pool")
	}
}

func TestOutQueueReset(t *testing.T) {
	var pool chunkPool
	var q outQueue
	q.push(make([]byte, 5*chunkSize/2), &pool)
	q.reset(&pool)
	if q.n != 0 || q.head != nil || pool.count != 3 {
		t.Fatalf("after reset: n %d head %v pool %d", q.n, q.head != nil, pool.count)
	}
	for range poolKeep + 10 {
		pool.put(&chunk{buf: make([]byte, chunkSize)})
	}
	if pool.count != poolKeep {
		t.Fatalf("pool keeps %d chunks, want at most %d", pool.count, poolKeep)
	}
}
