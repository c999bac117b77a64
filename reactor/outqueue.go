package reactor

// Output is queued in fixed-size chunks rather than in one growing slice.
// A growing slice doubles its capacity, so a queue that briefly holds N
// bytes pins up to 2N, twice over on io_uring (one buffer being sent, one
// being filled), and every growth copies everything queued so far. Chunks
// cost exactly what is queued, rounded up to one chunk; a chunk goes back
// to the loop's pool the moment its last byte is sent, so an idle
// connection holds no output memory at all.

// chunkSize is the size of one output chunk.
const chunkSize = 16 << 10

// maxSegments bounds the chunks handed to the kernel in one send
// (sendmsg iovecs): 128 x 16 KiB = 2 MiB per system call.
const maxSegments = 128

// poolKeep is how many free chunks the pool keeps for reuse (8 MiB);
// beyond that, freed chunks are left to the garbage collector.
const poolKeep = 512

type chunk struct {
	buf  []byte // chunkSize bytes
	r, w int    // sent up to r, filled up to w
	next *chunk
}

// chunkPool recycles chunks within one loop. Not safe for concurrent use.
type chunkPool struct {
	free  *chunk
	count int
}

func (p *chunkPool) get() *chunk {
	if c := p.free; c != nil {
		p.free, c.next = c.next, nil
		p.count--
		return c
	}
	return &chunk{buf: make([]byte, chunkSize)}
}

func (p *chunkPool) put(c *chunk) {
	if p.count >= poolKeep {
		return
	}
	c.r, c.w = 0, 0
	c.next, p.free = p.free, c
	p.count++
}

// outQueue is a FIFO of bytes in chunks.
type outQueue struct {
	head, tail *chunk
	n          int // bytes queued and not yet consumed
}

// push copies b to the end of the queue.
func (q *outQueue) push(b []byte, p *chunkPool) {
	q.n += len(b)
	for len(b) > 0 {
		t := q.tail
		if t == nil || t.w == len(t.buf) {
			c := p.get()
			if t == nil {
				q.head = c
			} else {
				t.next = c
			}
			q.tail, t = c, c
		}
		k := copy(t.buf[t.w:], b)
		t.w += k
		b = b[k:]
	}
}

// peek fills segs with the queued bytes, oldest first, one slice per chunk,
// and returns how many it filled. The slices alias the chunks: bytes pushed
// later go after them and never move them.
func (q *outQueue) peek(segs [][]byte) int {
	i := 0
	for c := q.head; c != nil && i < len(segs); c = c.next {
		if c.r < c.w {
			segs[i] = c.buf[c.r:c.w]
			i++
		}
	}
	return i
}

// consume drops the first n bytes, returning emptied chunks to the pool.
// On io_uring it runs only once the send covering those bytes completed,
// so no chunk goes back while the kernel may still read it.
func (q *outQueue) consume(n int, p *chunkPool) {
	q.n -= n
	for n > 0 {
		h := q.head
		k := min(n, h.w-h.r)
		h.r += k
		n -= k
		if h.r == h.w {
			q.head = h.next
			if q.head == nil {
				q.tail = nil
			}
			p.put(h)
		}
	}
}

// reset drops everything queued.
func (q *outQueue) reset(p *chunkPool) {
	for c := q.head; c != nil; {
		next := c.next
		p.put(c)
		c = next
	}
	*q = outQueue{}
}
