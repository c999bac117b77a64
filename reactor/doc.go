// Package reactor is ringrelay's event loop: one goroutine owns a listening
// socket (or none), every connection it accepted or adopted and every
// buffer, and learns what happened through Poll.
//
// # Contract
//
// The owner calls Poll in a loop and handles the events it returns:
//
//	n, err := loop.Poll(events, timeout)
//	for _, ev := range events[:n] { ... }
//
// Opened, Received, Drained and Closed carry the *Conn they concern. Every
// Opened connection gets exactly one Closed event, whether the peer went
// away, an I/O error happened, or the owner called Conn.Close. After Closed
// the Conn is recycled and must be forgotten.
//
// Received data is borrowed: it points into the receive buffers (the
// provided buffer ring on io_uring, the read arena on epoll) and is valid
// only until the next Poll, which gives those buffers back. An owner that
// needs bytes longer must copy them.
//
// Conn methods (Send, PauseRead, ResumeRead, NotifyDrained, Close) never
// block and never make a system call: they record the request and put the
// connection on a dirty list; the next Poll carries out all requests of the
// batch together (on io_uring, in one io_uring_enter). Send copies, so the
// owner may reuse its slice at once. At most one write is in flight per
// connection; bytes queued meanwhile go out together in the next one, in
// order.
//
// When the peer closes its sending side (EOF) the connection stops
// producing Received events, its queued output is still written, and it is
// closed (Closed with a nil error) at the start of the first Poll that finds
// nothing pending: never in the middle of a batch whose events the owner
// has not handled yet, since they may queue more output for it.
//
// A slot freed by a close is reused only from the next Poll on, so the
// owner always sees a connection's Closed before the same *Conn comes back
// in an Opened.
//
// PauseRead takes effect at the next Poll, and on io_uring only once the
// kernel has cancelled the connection's multishot recv: data it received
// before the cancel still arrives. ReadsStopped says exactly when that is
// over for every open connection (io_uring: every paused connection's
// recv cancelled and its last completion reaped; epoll: read interest
// deregistered), so no later Poll returns a Received event until the
// owner resumes reading or a connection opens. A shutdown that must know
// that nothing more will be read (relay's loops, before they leave) asks
// it instead of waiting for a quiet period.
//
// Output is queued in chunks from a loop-wide pool (outqueue.go): memory
// follows what is queued, and an idle connection holds none. Trim
// (trim.go), for an owner whose loop has been quiet, gives back the
// pool's free chunks and the pages of the receive buffers where the
// kernel cannot be filling them (the epoll arena; the io_uring ring only
// under DEFER_TASKRUN with nothing left to reap).
//
// Only Wake, AdoptTLS and Stats may be used from other goroutines. Wake
// makes the loop return a Woken event; it is how signals and shutdown
// reach the loop without any other goroutine touching its state.
//
// # TLS connections
//
// A TLS connection's handshake runs off the loop (package tlshandshake,
// on crypto/tls); the goroutine that finished it calls AdoptTLS(fd, rec)
// with the socket and its record layer (package tlsrecord). AdoptTLS puts
// both in a small mutex-protected inbox and wakes the loop; the next Poll
// opens them like adopted sockets (an Opened event) and marks them TLS.
// From then on, on both backends (tls.go):
//
//   - Received bytes are opened record by record into the loop's
//     plaintext arena, reset each Poll like the receive buffers, and the
//     plaintext of one receive is one Received event: the owner never
//     sees ciphertext. A record cut by the end of a receive waits in a
//     per-connection accumulation buffer, which exists only while the
//     record is partial.
//   - Send queues plaintext, and Pending counts plaintext. When the loop
//     starts a write it seals up to 256 KiB of the queue into as few
//     records as possible (many frames per record, each at most 2^14
//     bytes) in a pooled ciphertext buffer and writes that; one write in
//     flight per connection, as for plaintext. The plaintext leaves the
//     queue once its ciphertext is all written. Written counts ciphertext.
//   - A KeyUpdate from the peer is followed, and answered before the next
//     record when the peer asks. The peer's close_notify is a clean end of
//     its sending side (like EOF; answered with ours once the queue is
//     out). A record that fails (bad_record_mac, record_overflow, ...)
//     ends reading, drops queued output, sends the alert and closes with
//     an error wrapping ErrTLS; a fatal alert from the peer closes at once.
//     Conn.Close sends close_notify first when nothing is half written
//     (one non-blocking send on the way out), so a client the owner
//     closes, at shutdown say, sees a clean end.
//   - A TLS connection that neither received nor sent for a whole second
//     has its ciphers dropped (tlsrecord.Conn.Shrink) at the next Poll's
//     sweep; its next record rebuilds them.
//
// A plaintext connection pays a flag test: the TLS state sits in a side
// table by slot, and Conn stays 64 bytes.
//
// # Many loops
//
// Several loops, each on its own goroutine and thread, share nothing; two
// calls connect them. A loop opened with Config.HandOff does not open the
// connections it accepts: each becomes an Accepted event carrying the
// socket, which its owner passes to Adopt on whichever loop should own it
// (or closes). Adopt gives the socket what the adopting backend wants
// (TCP_NODELAY, blocking on io_uring, non-blocking on epoll) and reports it
// Opened at that loop's next Poll. Open("", cfg) makes a loop with no
// listener, which gets connections only this way.
//
// RingLoop(dst), called on one loop's goroutine, is the doorbell that makes
// dst's Poll return Woken, even from a wait with no timeout. Between two
// io_uring loops on a kernel with IORING_OP_MSG_RING it queues a data
// message on the ringing loop's ring, with IOSQE_CQE_SKIP_SUCCESS, so it
// costs no system call: it reaches the kernel with that loop's next Poll
// and posts a completion on dst's ring (uring_handoff.go). Otherwise it is
// dst.Wake(), an eventfd write. Doorbells that arrive in one Poll fold into
// one Woken, as Wake calls do (the owner may see one Woken for each kind).
// Stats counts doorbells by route on the ringing loop (RingsMsgRing,
// RingsEventfd, RingFails) and those received (DoorbellsIn).
//
// # Inside a Poll
//
// loop.go holds the one Poll; an engine (uring.go, epoll.go) supplies the
// I/O behind the engine interface. Every Poll runs these steps, in order:
//
//  1. Give back borrowed buffers: Data handed out by the previous Poll
//     returns to the engine (io_uring: the buffer ring; epoll: the arena),
//     and the TLS plaintext arena is reset.
//  2. Reuse freed slots: slots released during the previous Poll become
//     free, so a *Conn is handed out again only after the owner saw its
//     Closed. Then open what AdoptTLS queued, and, at most once a second
//     while TLS connections are open, shrink the idle ones.
//  3. Apply the owner's requests: for each connection on the dirty list,
//     close it if asked, start sending queued output (one send in flight at
//     a time), close it if the peer finished sending and nothing is left to
//     send, emit Drained if its mark is reached, and arm its reads unless
//     paused.
//  4. Arm: the listener, unless it is armed, closed, or paused after
//     descriptor exhaustion (then the wait ends when the pause does).
//  5. Wait: hand everything queued to the kernel and wait up to the
//     timeout, or not at all when events are already pending. This is the
//     only place the loop blocks.
//  6. Translate completions into events: each completion (io_uring) or
//     ready descriptor (epoll) becomes at most one event written straight
//     into the caller's slice (Opened, Accepted, Received, Woken on
//     io_uring), or queues events on the pending list (Closed, Drained, and
//     on epoll Opened, Accepted and Woken), in the order they happened.
//     Adopt queues its Opened on the pending list too.
//  7. Hand out pending events.
//
// A connection's engine state (operations in flight on io_uring, the
// registered interest set on epoll) lives in the engine's own per-slot
// table; Conn holds only what the owner asked for and what the peer did.
//
// # Backends
//
// uring.go drives io_uring through package ring: multishot accept (of
// blocking sockets, see ring.Ring.Accept), multishot recv with a provided
// buffer ring, one send per connection in flight, a generation in every
// user_data so completions for a recycled slot are ignored, and one
// handler per operation (onAccept, onRecv, onSend, onClose, onWake, and
// for hand-off onDoorbell and onRingFailed).
// epoll.go is the fallback: non-blocking sockets, level triggered, one
// loop-wide read arena, EPOLLOUT only while output is pending. open.go
// picks one (Auto probes io_uring and falls back to epoll with a reason).
package reactor
