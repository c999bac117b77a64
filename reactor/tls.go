package reactor

// TLS connections on the loop. A connection whose handshake crypto/tls
// finished elsewhere (package tlshandshake) arrives through AdoptTLS with
// its record layer (package tlsrecord); from then on the loop decrypts
// what it receives and encrypts what it sends, and the owner sees
// plaintext exactly as on a plaintext connection.
//
// What a TLS connection adds lives in a side table indexed by slot
// (eventLoop.tls), so a plaintext connection pays one nil pointer in it
// and one flag test per operation, and Conn stays at 64 bytes.
//
// Receiving: the ciphertext the engine received (a buffer ring buffer, an
// arena chunk) is opened record by record into the loop's plaintext arena
// (tlsArena), and the plaintext of one receive becomes one Received event.
// Decrypting into the arena rather than into the receive buffer itself
// costs the same pass over the bytes (the AEAD reads ciphertext and writes
// plaintext either way), but keeps the plaintext of one receive contiguous
// even when a record spans two receives or the ring wraps, so no receive
// ever needs more events than on a plaintext connection. A record that
// does not end inside the receive is copied into the connection's
// accumulation buffer (acc), which exists only while a record is partial.
//
// Sending: Conn.Send queues plaintext as always, so Pending, NotifyDrained
// and the owner's queue limits count plaintext bytes. When the loop starts
// a send it seals what is queued (up to sealBatch bytes) into as few
// records as possible in a ciphertext buffer (ct) and sends that; the
// plaintext leaves the queue once its ciphertext is all written. One send
// is in flight per connection, as for plaintext; ct exists only while
// there is ciphertext to write.
//
// Errors: a record that fails (authentication, size, an unexpected type)
// ends reading; queued plaintext is dropped, the alert is sent, and the
// connection closes with an error that wraps ErrTLS and the
// *tlsrecord.AlertError. The peer's close_notify ends its sending side
// like EOF: queued output is still sealed and sent, then a close_notify of
// our own, then the connection closes with a nil error. A fatal alert from
// the peer closes at once with its error.

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ringrelay/ringrelay/tlsrecord"
	"golang.org/x/sys/unix"
)

// ErrTLS marks the error of a Closed event for a TLS connection whose
// record layer failed: errors.Is(err, ErrTLS); errors.As finds the
// *tlsrecord.AlertError, whose Remote says whether the peer sent the alert
// or this side did.
var ErrTLS = errors.New("tls record layer")

const (
	// sealBatch bounds the plaintext sealed for one send: 16 full records,
	// so a bulk stream still writes large sends while the ciphertext
	// buffer of one connection stays bounded.
	sealBatch = 16 * tlsrecord.MaxPlaintext
	// keyUpdateRoom is the most a pending KeyUpdate answer adds to a batch
	// (a 27-byte record), rounded up.
	keyUpdateRoom = 32
	// shrinkAfter is the sweep period: a TLS connection that neither
	// received nor sent through a whole period has its ciphers dropped
	// (tlsrecord.Conn.Shrink). Rebuilding them costs an allocation, so
	// only connections idle this long pay it, never one per frame.
	shrinkAfter = time.Second
)

// tlsState is the record-layer side of one TLS connection.
type tlsState struct {
	rec *tlsrecord.Conn
	acc []byte // a partial record, only while one is partial (from tlsBufs)

	ct      []byte // ciphertext to write (from tlsBufs); nil when none
	ctOff   int    // written up to here
	ctPlain int    // plaintext bytes of the queue that ct carries

	err      error           // reading is over: the Closed event's error (nil after close_notify)
	alert    tlsrecord.Alert // the alert owed to the peer, when owe is set
	owe      bool            // an alert (close_notify or fatal) is still to be sent
	sendOff  bool            // the final alert is sealed: no more application data
	readOff  bool            // reading is over (error, alert or close_notify)
	active   bool            // received or sent since the last sweep
	shrunken bool            // Shrink ran and nothing was used since
}

// tlsInbox is how other goroutines hand the loop finished handshakes: a
// mutex and a slice, touched once per adoption and, on the loop's side,
// only when count says something is waiting. This is the accept path, not
// the data path.
type tlsInbox struct {
	mu     sync.Mutex
	items  []tlsAdoption
	closed bool
	count  atomic.Int32
}

type tlsAdoption struct {
	fd  int
	rec *tlsrecord.Conn
}

// AdoptTLS hands the loop fd, a connected socket whose TLS handshake is
// done, with rec, its record layer; see Loop.AdoptTLS.
func (l *eventLoop) AdoptTLS(fd int, rec *tlsrecord.Conn) {
	in := &l.tlsIn
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		_ = unix.Close(fd)
		return
	}
	in.items = append(in.items, tlsAdoption{fd, rec})
	in.count.Add(1)
	in.mu.Unlock()
	l.Wake()
}

// takeTLSAdoptions opens the connections AdoptTLS queued (Poll, before it
// applies requests, so they get their Opened in this Poll).
func (l *eventLoop) takeTLSAdoptions() {
	if l.tlsIn.count.Load() == 0 {
		return
	}
	in := &l.tlsIn
	in.mu.Lock()
	items := in.items
	in.items = l.tlsSpare[:0]
	in.count.Store(0)
	in.mu.Unlock()
	for i, a := range items {
		c := l.openConn(a.fd)
		c.flags |= flagTLS
		// Active: a new connection's ciphers were just built; the first
		// sweep must not drop them before it has said anything.
		*slotState(&l.tls, c.slot) = &tlsState{rec: a.rec, active: true}
		if l.tlsConns == 0 {
			l.tlsSweep = time.Now()
		}
		l.tlsConns++
		l.stats.TLSOpen.Store(int64(l.tlsConns))
		l.io.adopt(c)
		items[i] = tlsAdoption{}
	}
	l.tlsSpare = items[:0]
}

// closeTLSInbox closes sockets still waiting in the inbox; later AdoptTLS
// calls close theirs at once.
func (l *eventLoop) closeTLSInbox() {
	in := &l.tlsIn
	in.mu.Lock()
	in.closed = true
	for _, a := range in.items {
		_ = unix.Close(a.fd)
	}
	in.items = nil
	in.count.Store(0)
	in.mu.Unlock()
}

// releaseTLS drops c's record-layer state when its slot is released.
func (l *eventLoop) releaseTLS(c *Conn) {
	ts := l.tls[c.slot]
	l.tls[c.slot] = nil
	l.tlsBufs.put(ts.acc)
	l.tlsBufs.put(ts.ct)
	l.tlsConns--
	l.stats.TLSOpen.Store(int64(l.tlsConns))
}

// tlsReceive opens what arrived for c, a then b (b follows a in the stream;
// either may be empty), and returns the plaintext, in the arena and valid
// until the next Poll, or nil when the bytes completed no application
// data. It handles what the records did: a failure or the peer's alert
// ends reading, and a KeyUpdate to answer or an end of input marks c
// dirty so the next Poll acts on it.
func (l *eventLoop) tlsReceive(c *Conn, a, b []byte) []byte {
	ts := l.tls[c.slot]
	if ts.readOff {
		return nil // after an error or close_notify, later bytes are ignored
	}
	ts.active, ts.shrunken = true, false
	dst := l.tlsPlain.take(len(ts.acc) + len(a) + len(b))
	var err error
	if dst, err = l.tlsOpenInto(ts, dst, a); err == nil && len(b) > 0 {
		dst, err = l.tlsOpenInto(ts, dst, b)
	}
	l.tlsPlain.commit(len(dst))
	if err != nil {
		l.tlsEndRead(c, ts, err)
	} else if ts.rec.Pending() {
		l.markDirty(c) // a KeyUpdate to answer: the next Poll seals it
	}
	if len(dst) == 0 {
		return nil
	}
	return dst[:len(dst):len(dst)]
}

// tlsOpenInto opens in, appending plaintext to dst: first the record being
// accumulated (if in completes it), then whole records straight from in,
// and whatever partial record is left goes to the accumulation buffer.
func (l *eventLoop) tlsOpenInto(ts *tlsState, dst, in []byte) ([]byte, error) {
	var err error
	if len(ts.acc) > 0 {
		var k, n int
		ts.acc, k = l.tlsBufs.accumulate(ts.acc, in)
		if k < 0 {
			return dst, nil // still partial; in is all in acc
		}
		in = in[k:]
		dst, n, err = ts.rec.Open(dst, ts.acc)
		if err != nil {
			return dst, err
		}
		if n != len(ts.acc) {
			// accumulate stopped at the record's end, so Open must take it
			// whole; anything else is a bug worth stopping on.
			return dst, &tlsrecord.AlertError{Alert: tlsrecord.AlertInternalError, Reason: "accumulated record not consumed whole"}
		}
		l.tlsBufs.put(ts.acc)
		ts.acc = nil
	}
	if len(in) == 0 {
		return dst, nil
	}
	dst, n, err := ts.rec.Open(dst, in)
	if err != nil {
		return dst, err
	}
	if rest := in[n:]; len(rest) > 0 {
		ts.acc, _ = l.tlsBufs.accumulate(nil, rest)
	}
	return dst, nil
}

// tlsEndRead ends reading on c after err from Open: close_notify is a
// clean end (answered by ours once queued output is out); a local failure
// drops queued output and owes the peer its alert; the peer's fatal alert
// closes without an answer. In every case the Closed event comes from the
// EOF path (applyRequests), once what is owed has been written.
func (l *eventLoop) tlsEndRead(c *Conn, ts *tlsState, err error) {
	ts.readOff = true
	l.tlsBufs.put(ts.acc)
	ts.acc = nil
	var ae *tlsrecord.AlertError
	switch {
	case errors.Is(err, tlsrecord.ErrPeerClosed):
		l.stats.TLSCloseNotify.Add(1)
		ts.owe, ts.alert = true, tlsrecord.AlertCloseNotify
	case errors.As(err, &ae) && ae.Remote:
		l.stats.TLSPeerAlerts.Add(1)
		ts.err = fmt.Errorf("%w: %w", ErrTLS, err)
		ts.sendOff = true
	default:
		l.stats.TLSRecordErrors.Add(1)
		ts.err = fmt.Errorf("%w: %w", ErrTLS, err)
		if ae == nil {
			ae = &tlsrecord.AlertError{Alert: tlsrecord.AlertInternalError}
		}
		ts.owe, ts.alert = true, ae.Alert
		if ts.ctOff == len(ts.ct) {
			// Nothing in flight carries queued plaintext: drop it now. (With a
			// send in flight, tlsSent drops it when that send is done.)
			c.out.reset(&l.pool)
			ts.ctPlain = 0
		}
	}
	c.flags |= flagEOF
	l.markDirty(c)
}

// tlsHasOutput reports whether c has ciphertext to write, plaintext to
// seal, a KeyUpdate to answer or an alert to send.
func (l *eventLoop) tlsHasOutput(c *Conn) bool {
	ts := l.tls[c.slot]
	if ts.ctOff < len(ts.ct) {
		return true
	}
	if ts.sendOff {
		return false
	}
	if ts.err != nil {
		return ts.owe // a failure sends only its alert
	}
	return c.out.n > 0 || ts.rec.Pending() || ts.owe
}

// hasOutput reports whether c has anything left to write.
func (l *eventLoop) hasOutput(c *Conn) bool {
	if c.flags&flagTLS != 0 {
		return l.tlsHasOutput(c)
	}
	return c.out.n > 0
}

// endErr is the error of the Closed event the EOF path emits.
func (l *eventLoop) endErr(c *Conn) error {
	if c.flags&flagTLS != 0 {
		return l.tls[c.slot].err
	}
	return nil
}

// tlsOutput returns the ciphertext c should write next: what is left of
// the current batch, or a new batch sealed from the queue (then the
// owed alert), or nil when there is nothing to write. A sealing failure
// (a sequence number exhausted) ends c as a failed record would.
func (l *eventLoop) tlsOutput(c *Conn) []byte {
	ts := l.tls[c.slot]
	if ts.ctOff < len(ts.ct) {
		return ts.ct[ts.ctOff:]
	}
	if ts.sendOff {
		return nil
	}
	failed := ts.err != nil
	plain := 0
	if !failed {
		plain = min(c.out.n, sealBatch)
	}
	alert := ts.owe && (failed || c.out.n == plain)
	if plain == 0 && !alert && !ts.rec.Pending() {
		return nil
	}
	ts.active, ts.shrunken = true, false
	need := tlsrecord.SealedLen(plain) + keyUpdateRoom
	if alert {
		need += tlsrecord.Overhead + 2
	}
	ct := l.tlsBufs.get(need)
	var err error
	if plain > 0 {
		ct, err = l.sealQueued(c, ts, ct, plain)
	} else if !alert {
		ct, err = ts.rec.Seal(ct, nil) // only the KeyUpdate answer
	}
	if err == nil && alert {
		ct, err = ts.rec.SealAlert(ct, ts.alert)
		ts.owe, ts.sendOff = false, true
	}
	if err != nil {
		l.tlsBufs.put(ct)
		ts.ctPlain = 0
		l.tlsEndRead(c, ts, err)
		ts.owe, ts.sendOff = false, true // this side can seal nothing more
		return nil
	}
	ts.ct, ts.ctOff, ts.ctPlain = ct, 0, plain
	return ct
}

// sealQueued seals the first n queued plaintext bytes into records of up
// to MaxPlaintext bytes, written straight from the output chunks into ct
// (BeginRecord, SealRecord): many frames share a record and an AEAD call.
func (l *eventLoop) sealQueued(c *Conn, ts *tlsState, ct []byte, n int) ([]byte, error) {
	k := c.out.peek(l.segs[:])
	segs := l.segs[:k]
	defer clear(segs)
	si, so := 0, 0 // position in segs
	for n > 0 {
		var start int
		var err error
		if ct, start, err = ts.rec.BeginRecord(ct); err != nil {
			return ct, err
		}
		room := min(n, tlsrecord.MaxPlaintext)
		n -= room
		for room > 0 {
			s := segs[si][so:]
			m := min(len(s), room)
			ct = append(ct, s[:m]...)
			room -= m
			if so += m; so == len(segs[si]) {
				si, so = si+1, 0
			}
		}
		if ct, err = ts.rec.SealRecord(ct, start); err != nil {
			return ct, err
		}
	}
	return ct, nil
}

// tlsSent records that the kernel took n bytes of c's ciphertext. Once
// the batch is all written its plaintext leaves the queue and its buffer
// goes back to the pool. Written counts ciphertext: what the kernel took.
func (l *eventLoop) tlsSent(c *Conn, n int) {
	ts := l.tls[c.slot]
	ts.ctOff += n
	c.written += uint64(n)
	if ts.ctOff < len(ts.ct) {
		return
	}
	if ts.ctPlain > 0 {
		c.out.consume(ts.ctPlain, &l.pool)
	}
	l.tlsBufs.put(ts.ct)
	ts.ct, ts.ctOff, ts.ctPlain = nil, 0, 0
	if ts.err != nil || ts.sendOff {
		c.out.reset(&l.pool) // nothing queued will ever be sent
	}
}

// tlsGoodbye sends close_notify, best effort, on a TLS connection the
// owner closes (Conn.Close: a limit, or shutdown once output drained), so
// that the client sees a clean end rather than a truncated stream. Only
// when nothing is in flight or half written: an alert must follow whole
// records. It is one small non-blocking send(2) on a path that closes
// the socket anyway; if the socket buffer is full it is simply skipped.
func (l *eventLoop) tlsGoodbye(c *Conn) {
	ts := l.tls[c.slot]
	if ts.sendOff || ts.ctOff < len(ts.ct) {
		return
	}
	var buf [tlsrecord.Overhead + 2]byte
	b, err := ts.rec.SealAlert(buf[:0], tlsrecord.AlertCloseNotify)
	ts.sendOff = true
	if err != nil {
		return
	}
	_, _, _ = unix.Syscall6(unix.SYS_SENDTO, uintptr(c.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 0, 0)
}

// sweepTLS drops the ciphers of TLS connections idle for a whole period
// (see shrinkAfter), and arena blocks that went unused as long. Poll runs
// it at most once a period, and only while TLS connections are open or
// the arena still holds blocks.
func (l *eventLoop) sweepTLS() {
	now := time.Now()
	if now.Sub(l.tlsSweep) < shrinkAfter {
		return
	}
	l.tlsSweep = now
	for _, ts := range l.tls {
		switch {
		case ts == nil, ts.shrunken:
		case ts.active:
			ts.active = false
		case len(ts.acc) == 0 && ts.ct == nil:
			ts.rec.Shrink()
			ts.shrunken = true
			l.stats.TLSShrinks.Add(1)
		}
	}
	l.tlsPlain.trim()
}

// tlsArena is the loop's plaintext arena: blocks reused from Poll to Poll
// (reset when the previous Poll's Data is given back), so decrypting
// allocates nothing once the blocks exist. What one Poll needs is bounded
// by what it received, itself bounded by the receive buffers.
type tlsArena struct {
	blocks [][]byte
	cur    int // block being filled
	off    int // filled up to here in blocks[cur]
	used   int // most blocks one Poll used since the last trim
}

const tlsArenaBlock = 256 << 10

// recordApplicationData is the outer content type of every TLS 1.3
// record after the handshake (RFC 8446 §5.2).
const recordApplicationData = 23

// take returns an empty slice with room for n bytes.
func (a *tlsArena) take(n int) []byte {
	for ; a.cur < len(a.blocks); a.cur, a.off = a.cur+1, 0 {
		if b := a.blocks[a.cur]; len(b)-a.off >= n {
			return b[a.off:a.off:len(b)]
		}
	}
	a.blocks = append(a.blocks, make([]byte, max(n, tlsArenaBlock)))
	a.off = 0
	return a.blocks[a.cur][:0]
}

// commit marks n bytes of the last take as handed out.
func (a *tlsArena) commit(n int) {
	a.off += n
	a.used = max(a.used, a.cur+1)
}

// reset makes every block free again (the Data they held is dead).
func (a *tlsArena) reset() { a.cur, a.off = 0, 0 }

// trim lets go of the blocks no Poll needed since the last trim.
func (a *tlsArena) trim() {
	clear(a.blocks[a.used:])
	a.blocks = a.blocks[:a.used]
	a.used = 0
}

// tlsBufPool recycles accumulation and ciphertext buffers by power-of-two
// size class, so a partial record or a batch in flight borrows memory only
// while it exists. Not safe for concurrent use; one per loop.
type tlsBufPool struct {
	free [tlsClasses][][]byte
}

const (
	tlsMinClass = 9 // 512 bytes
	tlsClasses  = 12
	// tlsPoolKeep bounds what one class keeps for reuse, in bytes (at
	// least four buffers): a few MiB per loop in all, in practice two
	// classes (records being accumulated, batches being sent).
	tlsPoolKeep = 1 << 20
)

func tlsClass(n int) int {
	c := bits.Len(uint(max(n, 1)-1)) - tlsMinClass
	return max(c, 0)
}

// get returns an empty buffer with room for at least n bytes.
func (p *tlsBufPool) get(n int) []byte {
	c := tlsClass(n)
	if c >= tlsClasses {
		return make([]byte, 0, n)
	}
	if f := p.free[c]; len(f) > 0 {
		b := f[len(f)-1]
		f[len(f)-1] = nil
		p.free[c] = f[:len(f)-1]
		return b
	}
	return make([]byte, 0, 1<<(c+tlsMinClass))
}

// put takes a buffer back (nil is ignored).
func (p *tlsBufPool) put(b []byte) {
	if b == nil {
		return
	}
	c := tlsClass(cap(b))
	if c >= tlsClasses || cap(b) != 1<<(c+tlsMinClass) {
		return
	}
	if size := cap(b); len(p.free[c])*size >= max(tlsPoolKeep, 4*size) {
		return
	}
	p.free[c] = append(p.free[c], b[:0])
}

// accumulate appends to acc (nil: start one) the bytes of in that belong
// to the record acc holds the start of: up to its end once its header is
// known. It returns acc and how many bytes of in it took, or -1 when it
// took all of in and the record is still partial. The buffer is sized to
// the record from its header (at most tlsrecord.MaxRecord; a header that
// claims more is refused by Open as soon as it has the header, so a
// bogus length costs no more than MaxRecord).
func (p *tlsBufPool) accumulate(acc, in []byte) ([]byte, int) {
	const hdr = 5
	took := 0
	if len(acc) < hdr {
		k := min(hdr-len(acc), len(in))
		if acc == nil {
			acc = p.get(max(hdr, min(len(in), tlsrecord.MaxRecord)))
		}
		acc = append(acc, in[:k]...)
		in, took = in[k:], k
		if len(acc) < hdr {
			return acc, -1
		}
	}
	body := int(acc[3])<<8 | int(acc[4])
	if acc[0] != recordApplicationData || body < tlsrecord.Overhead-hdr || body > tlsrecord.MaxCiphertext {
		return acc, took // a header Open refuses: hand it over now
	}
	total := hdr + body
	if cap(acc) < total {
		bigger := append(p.get(total), acc...)
		p.put(acc)
		acc = bigger
	}
	k := min(total-len(acc), len(in))
	acc = append(acc, in[:k]...)
	took += k
	if len(acc) < total {
		return acc, -1
	}
	return acc, took
}
