package reactor

import "syscall"

// Output is queued in fixed-size chunks rather than in one growing slice.
// A growing slice doubles its capacity, so a queue that briefly holds N
// bytes pins up to 2N, twice over on io_uring (one buffer being sent, one
// being filled), and every growth copies everything queued so far. Chunks
// cost exactly what is queued, rounded up to one chunk; a chunk goes back
// to the loop's pool the moment its last byte is sent, so an idle
// connection holds no output memory at all.

// chunkSize is the size of one output chunk. A queue that starts empty
// with a write of at most smallChunkSize bytes (a 4-byte ID, a chat-sized
// frame) starts with a small chunk instead: ten thousand connections that
// are each sent their ID in the same batch then borrow 5 MiB, not 160.
const (
	chunkSize      = 16 << 10
	smallChunkSize = 512
)

// maxSegments bounds the chunks handed to the kernel in one send
// (sendmsg iovecs): 128 x 16 KiB = 2 MiB per system call.
const maxSegments = 128

// poolKeep is how many free chunks of each size the pool keeps for reuse
// (8 MiB of large ones, 256 KiB of small ones); beyond that, freed chunks
// are left to the garbage collector.
const poolKeep = 512

type chunk struct {
	buf  []byte // chunkSize or smallChunkSize bytes
	r, w int    // sent up to r, filled up to w
	next *chunk
}

// chunkPool recycles chunks within one loop. Not safe for concurrent use.
type chunkPool struct {
	large, small freeList
}

type freeList struct {
	head  *chunk
	count int
}

func (p *chunkPool) get(size int) *chunk {
	l := &p.large
	if size == smallChunkSize {
		l = &p.small
	}
	if c := l.head; c != nil {
		l.head, c.next = c.next, nil
		l.count--
		return c
	}
	return &chunk{buf: make([]byte, size)}
}

func (p *chunkPool) put(c *chunk) {
	l := &p.large
	if len(c.buf) == smallChunkSize {
		l = &p.small
	}
	if l.count >= poolKeep {
		return
	}
	c.r, c.w = 0, 0
	c.next, l.head = l.head, c
	l.count++
}

// outQueue is a FIFO of bytes in chunks.
type outQueue struct {
	head, tail *chunk
	n          int // bytes queued and not yet consumed
}

// push copies b to the end of the queue. pinned says the kernel may be
// reading the queued chunks (an io_uring send is in flight), so none may
// move.
func (q *outQueue) push(b []byte, p *chunkPool, pinned bool) {
	q.n += len(b)
	for len(b) > 0 {
		t := q.tail
		if t != nil && t == q.head && len(t.buf) == smallChunkSize && t.w+len(b) > smallChunkSize && !pinned {
			// A queue that started small outgrows its small chunk before
			// anything of it is in flight: move what it holds into a large
			// chunk, so that the send that follows is one buffer (send)
			// rather than two (sendmsg, which costs the kernel more).
			c := p.get(chunkSize)
			c.w = copy(c.buf, t.buf[t.r:t.w])
			p.put(t)
			q.head, q.tail, t = c, c, c
		}
		if t == nil || t.w == len(t.buf) {
			size := chunkSize
			if t == nil && len(b) <= smallChunkSize {
				size = smallChunkSize
			}
			c := p.get(size)
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

// sendVec holds a sendmsg header and one iovec per queued chunk, where the
// kernel reads them: at once on epoll, until the send completes on
// io_uring.
type sendVec struct {
	msg syscall.Msghdr
	iov [maxSegments]syscall.Iovec
}

// set points the vector at segs and returns the header.
func (v *sendVec) set(segs [][]byte) *syscall.Msghdr {
	for i, s := range segs {
		v.iov[i] = syscall.Iovec{Base: &s[0], Len: uint64(len(s))}
	}
	v.msg = syscall.Msghdr{Iov: &v.iov[0], Iovlen: uint64(len(segs))}
	return &v.msg
}

// reset drops the pointers into chunks, so that an idle vector keeps none
// alive.
func (v *sendVec) reset() {
	clear(v.iov[:v.msg.Iovlen])
	v.msg = syscall.Msghdr{}
}
