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
			q.push(b, &pool, false)
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
	q.push([]byte("tail"), &pool, false)
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
	if pool.large.count+pool.small.count == 0 {
		t.Fatalf("no chunk returned to the pool")
	}
}

func TestOutQueueReset(t *testing.T) {
	var pool chunkPool
	var q outQueue
	q.push(make([]byte, 5*chunkSize/2), &pool, false)
	q.reset(&pool)
	if q.n != 0 || q.head != nil || pool.large.count != 3 {
		t.Fatalf("after reset: n %d head %v pool %d", q.n, q.head != nil, pool.large.count)
	}
	for range poolKeep + 10 {
		pool.put(&chunk{buf: make([]byte, chunkSize)})
	}
	if pool.large.count != poolKeep {
		t.Fatalf("pool keeps %d chunks, want at most %d", pool.large.count, poolKeep)
	}
}

// TestOutQueueSmallFirst checks that a small write to an empty queue takes a
// small chunk, that the queue grows into a large chunk after it, and that
// each size goes back to its own free list.
func TestOutQueueSmallFirst(t *testing.T) {
	var pool chunkPool
	var q outQueue
	q.push([]byte("abcd"), &pool, false)
	if len(q.head.buf) != smallChunkSize {
		t.Fatalf("first chunk for 4 bytes is %d bytes, want %d", len(q.head.buf), smallChunkSize)
	}
	big := bytes.Repeat([]byte("x"), smallChunkSize)
	q.push(big, &pool, false)
	if q.head != q.tail || len(q.head.buf) != chunkSize || pool.small.count != 1 {
		t.Fatalf("queue did not move into one large chunk (small chunk back in the pool: %d)", pool.small.count)
	}
	segs := make([][]byte, maxSegments)
	k := q.peek(segs)
	var got []byte
	for _, s := range segs[:k] {
		got = append(got, s...)
	}
	if want := append([]byte("abcd"), big...); !bytes.Equal(got, want) {
		t.Fatalf("queued bytes differ")
	}
	q.consume(q.n, &pool)
	if pool.small.count != 1 || pool.large.count != 1 {
		t.Fatalf("free lists: small %d large %d, want 1 and 1", pool.small.count, pool.large.count)
	}
	q.push(make([]byte, smallChunkSize+1), &pool, false)
	if len(q.head.buf) != chunkSize {
		t.Fatalf("a write larger than a small chunk started in a %d-byte chunk", len(q.head.buf))
	}
}

// TestOutQueueSmallChunkGrows: a queue that starts with a small chunk and
// outgrows it before anything is in flight holds its bytes in one large
// chunk, so they leave in one buffer; while a send is in flight (pinned)
// the small chunk stays where the kernel reads it, and the bytes that do
// not fit go after it.
func TestOutQueueSmallChunkGrows(t *testing.T) {
	for _, pinned := range []bool{false, true} {
		var pool chunkPool
		var q outQueue
		var want []byte
		frame := bytes.Repeat([]byte{'f'}, 68)
		q.push(frame[:4], &pool, false) // a small first write, as the ID is
		want = append(want, frame[:4]...)
		first := q.head
		for i := range 16 {
			frame[0] = byte(i)
			q.push(frame, &pool, pinned)
			want = append(want, frame...)
		}
		segs := make([][]byte, maxSegments)
		k := q.peek(segs)
		var got []byte
		for _, s := range segs[:k] {
			got = append(got, s...)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("pinned=%v: queue holds %d bytes that differ from the %d pushed", pinned, len(got), len(want))
		}
		switch {
		case !pinned && (k != 1 || len(q.head.buf) != chunkSize):
			t.Fatalf("not pinned: %d segments, head chunk of %d bytes; want one large chunk", k, len(q.head.buf))
		case pinned && (k != 2 || q.head != first):
			t.Fatalf("pinned: %d segments, head chunk moved: %v; want the small chunk left in place and a second chunk", k, q.head != first)
		}
	}
}
