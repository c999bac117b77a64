package reactor

import (
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/ringrelay/ringrelay/ring"
	"github.com/ringrelay/ringrelay/tlsrecord"
)

// Kind says what an Event reports.
type Kind uint8

const (
	// Opened: a new connection was accepted. Conn is valid until its Closed event.
	Opened Kind = iota + 1
	// Received: bytes arrived on Conn. Data is valid until the next Poll.
	Received
	// Drained: Conn's queued output fell to or below the mark set with
	// NotifyDrained. The mark is one-shot.
	Drained
	// Closed: Conn is gone. Err says why (nil for an orderly close). After
	// this event the Conn must not be used: its slot is recycled.
	Closed
	// Woken: Wake was called from another goroutine, or another loop rang
	// this one (RingLoop). Conn is nil. Wakes that arrive together fold
	// into one Woken, and so do doorbells.
	Woken
	// Accepted: a loop with Config.HandOff accepted a connection and did
	// not open it. Fd is the connected socket, now the owner's: it must go
	// to Adopt on exactly one loop (this one or another), or be closed.
	Accepted
)

func (k Kind) String() string {
	switch k {
	case Opened:
		return "opened"
	case Received:
		return "received"
	case Drained:
		return "drained"
	case Closed:
		return "closed"
	case Woken:
		return "woken"
	case Accepted:
		return "accepted"
	}
	return "unknown"
}

// Event is one thing that happened on the loop.
type Event struct {
	Kind Kind
	Conn *Conn
	Data []byte
	Err  error
	Fd   int // Accepted only: the accepted socket
}

// Errors carried by Closed events. Socket errors (ECONNRESET, EPIPE, ...)
// are passed through as the syscall.Errno the kernel returned.
var (
	// ErrClosedLocally: the owner called Conn.Close.
	ErrClosedLocally = errors.New("closed by the server")
	// ErrLoopClosed: the loop itself was closed.
	ErrLoopClosed = errors.New("event loop closed")
	// ErrShortEvents: Poll was given a slice with room for fewer than two
	// events (one receive can take two: see Poll).
	ErrShortEvents = errors.New("event loop: Poll needs a slice of at least two events")
)

// Loop is one event loop: a listener (or none), its connections and an I/O
// backend. Every method except Wake, AdoptTLS and Stats must be called from the
// goroutine that calls Poll; the loop is not safe for concurrent use by
// design.
type Loop interface {
	// Poll applies the state changes requested since the last call (sends,
	// pauses, closes), waits up to timeout for I/O (timeout < 0 waits for
	// ever, 0 does not wait), and fills events. It returns the number of
	// events written. Data slices handed out by the previous Poll are
	// reclaimed when it is called. events must hold at least two: the
	// bytes of one io_uring receive can come as two Received events (when
	// they wrap around the buffer ring), and both come in the same Poll.
	Poll(events []Event, timeout time.Duration) (int, error)
	// Wake makes a Poll in progress (or the next one) return with a Woken
	// event. It is the only method safe to call from another goroutine.
	Wake()
	// Adopt makes fd, a connected TCP socket (from an Accepted event of any
	// loop), a connection of this loop: it gets the socket options and the
	// blocking mode this loop's backend wants, and an Opened event at a
	// later Poll, exactly like a connection this loop accepted (it counts
	// in Stats.Accepted). The loop owns fd from the call on; on a closed
	// loop Adopt closes it.
	Adopt(fd int)
	// AdoptTLS is Adopt for a socket whose TLS 1.3 handshake finished
	// elsewhere (package tlshandshake), with rec, its record layer, made
	// from the handshake's traffic secrets. Unlike the other methods it is
	// safe from any goroutine: it queues the socket and wakes the loop,
	// which opens it at its next Poll (an Opened event, then a Woken one).
	// From then on the loop decrypts what the connection receives and
	// encrypts what it sends; the owner sees plaintext (see tls.go). The
	// loop owns fd and rec from the call on; on a closed loop AdoptTLS
	// closes fd.
	AdoptTLS(fd int, rec *tlsrecord.Conn)
	// Reject closes fd, a socket from an Accepted event that no loop will
	// adopt (the owner is shutting down, say). Like Adopt it may be called
	// on any loop; the socket is closed at once.
	Reject(fd int)
	// RingLoop wakes dst, another loop (or this one), so that dst's Poll
	// returns a Woken event, even if dst is blocked waiting. Between two
	// io_uring loops on a kernel with IORING_OP_MSG_RING, it queues a
	// message on this loop's ring that reaches dst with this loop's next
	// Poll, without a system call of its own; otherwise it is dst.Wake().
	// dst may be closed or closing: the doorbell is then lost, harmlessly.
	RingLoop(dst Loop)
	// StopAccepting closes the listening socket; open connections stay.
	// Without a listener it does nothing.
	StopAccepting()
	// ReadsStopped reports whether no Poll can hand out another Received
	// event for any open connection: each one the owner has not closed is
	// paused (PauseRead) or at EOF, and the pause has taken effect in the
	// kernel (io_uring: its multishot recv is cancelled and its last
	// completion reaped; epoll: read interest is deregistered). It stays
	// true until the owner resumes a connection or a new one opens. It
	// walks every slot; meant for shutdown, not for each Poll.
	ReadsStopped() bool
	// Trim gives back memory the loop keeps for reuse but no connection
	// holds: the free chunks of its output pool and, on epoll, the pages
	// of its read arena (zeroed, so Data from the last Poll must no
	// longer be used). Meant for a loop that has been quiet for a while:
	// the next burst pays to allocate again. Queued output, partial reads
	// and the io_uring buffer ring (the kernel may fill it at any moment)
	// stay.
	Trim()
	// Addr is the address the listener is bound to; nil without one.
	Addr() net.Addr
	// Backend names the I/O engine in use.
	Backend() Backend
	// Features describes what the backend uses, for the start-up log line.
	Features() string
	// Stats returns counters the loop keeps; they are safe to read from any
	// goroutine.
	Stats() *Stats
	// Close closes every connection, the listener and the backend. Close
	// does not emit events.
	Close() error
}

// Backend names an I/O engine.
type Backend string

const (
	Auto  Backend = "auto"
	Uring Backend = "uring"
	Epoll Backend = "epoll"
)

// Config tunes a Loop. Zero values select the defaults noted per field.
type Config struct {
	// Backend selects the engine; Auto probes io_uring and falls back to
	// epoll when it cannot be used.
	Backend Backend
	// RingEntries is the io_uring submission queue size (default 4096);
	// the completion queue is four times larger.
	RingEntries uint32
	// Buffers and BufferSize size the receive buffers: the provided buffer
	// ring on io_uring, the loop-wide read arena on epoll. Buffers must be a
	// power of two (default 1024). BufferSize 0 picks the backend's default:
	// 4 KiB on io_uring, where a multishot recv may fill many buffers of
	// one connection per wake-up (and with bundles, many in one go), so
	// small buffers waste little on small reads; 16 KiB on epoll, which
	// reads one buffer per connection per Poll and so wants larger reads.
	Buffers    int
	BufferSize int
	// NoRecvBundle turns recv bundles off. By default, where the kernel
	// has them and completes them in order (Linux 6.15+, see
	// ring.Ring.Bundles), one io_uring recv fills as many consecutive
	// buffers as the data waiting needs (up to 64 KiB, or a quarter of
	// the buffers while the loop has at most 16 connections), instead of
	// one buffer per recv: bulk streams cost a fraction of the recv calls.
	NoRecvBundle bool
	// NoDelay sets TCP_NODELAY on accepted and adopted sockets.
	// DefaultConfig turns it on.
	NoDelay bool
	// Backlog is the listen(2) backlog (default 4096).
	Backlog int
	// AcceptRetry is how long accepting pauses after EMFILE/ENFILE
	// (default 100ms).
	AcceptRetry time.Duration
	// Spin is how long an io_uring wait may watch the completion queue
	// before it blocks in the kernel (adaptively: see ring.SetSpin; held
	// off while many connections are active, see uringEngine.wait).
	// DefaultConfig sets ring.DefaultSpin; 0 never spins. epoll ignores it.
	Spin time.Duration
	// HandOff makes the loop report each accepted connection as an Accepted
	// event carrying its descriptor instead of opening it, so the owner can
	// place it on any loop with Adopt. Descriptor exhaustion pauses
	// accepting as without it.
	HandOff bool
	// Logger receives the rare loop-level messages (descriptor exhaustion).
	// nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults ringrelay ships with.
func DefaultConfig() Config {
	return Config{
		Backend:     Auto,
		RingEntries: 4096,
		Buffers:     1024,
		NoDelay:     true,
		Backlog:     4096,
		AcceptRetry: 100 * time.Millisecond,
		Spin:        ring.DefaultSpin,
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.Backend == "" {
		c.Backend = d.Backend
	}
	if c.RingEntries == 0 {
		c.RingEntries = d.RingEntries
	}
	if c.Buffers == 0 {
		c.Buffers = d.Buffers
	}
	if c.Backlog == 0 {
		c.Backlog = d.Backlog
	}
	if c.AcceptRetry == 0 {
		c.AcceptRetry = d.AcceptRetry
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Default receive buffer sizes per backend (Config.BufferSize == 0).
const (
	uringBufferSize = 4 << 10
	epollBufferSize = 16 << 10
)

// Stats are counters a loop keeps for metrics. The loop writes them with
// atomic operations; any goroutine may read them.
type Stats struct {
	Open        atomic.Int64
	Accepted    atomic.Uint64
	Closed      atomic.Uint64
	Iterations  atomic.Uint64 // waits for I/O
	Completions atomic.Uint64 // CQEs (io_uring) or ready descriptors (epoll) handled
	NoBuffers   atomic.Uint64 // io_uring recv found the buffer ring empty (ENOBUFS)
	AcceptFails atomic.Uint64 // accept failed for lack of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM)
	HandedOff   atomic.Uint64 // Accepted events (Config.HandOff); Accepted counts adoptions
	// Doorbells this loop rang with RingLoop, by route: an IORING_OP_MSG_RING
	// message from its ring, or the target's eventfd (epoll on either side,
	// or no MSG_RING). RingFails counts MSG_RING messages the kernel could
	// not post; each was followed by an eventfd wake.
	RingsMsgRing atomic.Uint64
	RingsEventfd atomic.Uint64
	RingFails    atomic.Uint64
	// DoorbellsIn counts MSG_RING doorbells this loop received (io_uring);
	// those of one Poll fold into one Woken event.
	DoorbellsIn atomic.Uint64
	// Descriptors counts the connection descriptors this loop holds: the
	// open ones and those closed to the owner whose close(2) has yet to
	// complete (io_uring closes asynchronously). Zero means every socket
	// this loop took has gone back to the kernel.
	Descriptors atomic.Int64
	// TLS connections (AdoptTLS): open now; records that failed here
	// (an alert was sent and the connection closed: bad_record_mac,
	// record_overflow, ...); fatal alerts the peer sent; close_notify
	// received; ciphers dropped from connections gone idle (Shrink).
	TLSOpen         atomic.Int64
	TLSRecordErrors atomic.Uint64
	TLSPeerAlerts   atomic.Uint64
	TLSCloseNotify  atomic.Uint64
	TLSShrinks      atomic.Uint64
	// BatchSizes is a histogram of completions per wait: bucket i counts
	// waits that returned at most BatchBounds[i] completions; the last
	// bucket counts the rest.
	BatchSizes [len(BatchBounds) + 1]atomic.Uint64
}

// BatchBounds are the upper bounds of the Stats.BatchSizes buckets.
var BatchBounds = [...]int{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}

func (s *Stats) observeBatch(n int) {
	s.Iterations.Add(1)
	s.Completions.Add(uint64(n))
	i := 0
	for i < len(BatchBounds) && n > BatchBounds[i] {
		i++
	}
	s.BatchSizes[i].Add(1)
}
