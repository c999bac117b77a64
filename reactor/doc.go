// Package reactor is ringrelay's event loop: one goroutine owns a listening
// socket, every accepted connection and every buffer, and learns what
// happened through Poll.
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
// Output is queued in chunks from a loop-wide pool (outqueue.go): memory
// follows what is queued, and an idle connection holds none.
//
// Only Wake and Stats may be used from other goroutines. Wake makes the
// loop return a Woken event; it is how signals and shutdown reach the loop
// without any other goroutine touching its state.
//
// # Backends
//
// uring.go drives io_uring through package ring: multishot accept,
// multishot recv with a provided buffer ring, one send per connection in
// flight, a generation in every user_data so completions for a recycled
// slot are ignored. epoll.go is the fallback: non-blocking sockets, level
// triggered, one loop-wide read arena, EPOLLOUT only while output is
// pending. open.go picks one (Auto probes io_uring and falls back to epoll
// with a reason).
package reactor
