package bench

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"

	"github.com/ringrelay/ringrelay/internal/frame"
	"github.com/ringrelay/ringrelay/shard"
)

// The generator's I/O engine. A few workers (one per CPU the generator may
// use, at most) each own a share of the connections as raw non-blocking
// sockets on an epoll instance of their own, level-triggered. One wait
// returns every ready connection of the worker; each gets one read of what
// is there and one write of everything it has to say, so a server that
// batches is answered in batches, and no goroutine parks or wakes per
// connection. Counters and round-trip times are kept per worker and handed
// to the meter once per wait.

// role is what one connection does with its traffic. Only its worker calls
// it.
type role interface {
	// opening appends what the connection sends before it has received
	// anything.
	opening(c *gconn, now int64)
	// received handles the complete frames c.in holds, counting them into
	// w; it may append output to c.out. An error is an integrity violation.
	received(w *worker, c *gconn, now int64) error
	// refill appends a streaming sender's next batch to c.out.
	refill(c *gconn)
	// describe names the connection in error messages.
	describe() string
}

// gconn is one generator connection.
type gconn struct {
	fd     int
	slot   int32 // index in its worker's conns, the epoll user data
	role   role
	in     *frame.Splitter // nil for a sender that never reads
	src    fdReader
	out    []byte // output; out[sent:] is not written yet
	sent   int
	tlsw   *tlsWriter // a TLS connection's sealed output (tls.go); nil for plaintext
	stream bool       // a sender that writes whenever the socket takes more
	armed  bool       // EPOLLOUT is in the interest set (readers only)
	dead   bool
}

// fdReader reads a non-blocking socket for Splitter.Fill.
type fdReader struct {
	fd  int
	tls *tlsReader // a TLS connection's record layer; nil for plaintext
}

func (r *fdReader) Read(p []byte) (int, error) {
	if r.tls != nil {
		return r.tls.read(r.fd, p)
	}
	n, err := unix.Read(r.fd, p)
	if n < 0 {
		n = 0
	}
	if n == 0 && err == nil && len(p) > 0 {
		err = io.EOF
	}
	return n, err
}

// engine is the set of workers of one workload.
type engine struct {
	workers []*worker
	wg      sync.WaitGroup
	m       *meter
}

// worker owns its connections and its epoll instance.
type worker struct {
	cpu       int // pinned to this CPU; -1: not pinned
	m         *meter
	epfd      int
	wake      int // eventfd that stop writes to
	conns     []*gconn
	measuring bool  // the window is open: record round trips
	frames    int64 // counted since the last publish
	bytes     int64
	rtt       *hdrhistogram.Histogram // nanoseconds, this worker's share
}

// wakeSlot is the epoll user data of a worker's eventfd.
const wakeSlot = -1

// newEngine makes workers workers; worker i is pinned to cpus[i] when cpus
// lists that many.
func newEngine(workers int, cpus []int) (*engine, error) {
	e := &engine{}
	for i := range max(1, workers) {
		w := &worker{cpu: -1, epfd: -1, wake: -1, rtt: newRTTHistogram()}
		if i < len(cpus) {
			w.cpu = cpus[i]
		}
		e.workers = append(e.workers, w)
		var err error
		if w.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
			e.stop()
			return nil, fmt.Errorf("generator: epoll_create: %w", err)
		}
		if w.wake, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
			e.stop()
			return nil, fmt.Errorf("generator: eventfd: %w", err)
		}
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeSlot}
		if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, w.wake, &ev); err != nil {
			e.stop()
			return nil, fmt.Errorf("generator: epoll_ctl: %w", err)
		}
	}
	return e, nil
}

// add gives connection c to worker i (modulo the worker count) and
// registers it. From here on the engine closes c.fd, even when add fails.
func (e *engine) add(i int, c *gconn) error {
	w := e.workers[i%len(e.workers)]
	c.slot = int32(len(w.conns))
	c.src.fd = c.fd
	w.conns = append(w.conns, c)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: c.slot}
	if c.stream {
		ev.Events = unix.EPOLLOUT
	}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		return fmt.Errorf("generator: epoll_ctl: %w", err)
	}
	return nil
}

// threads is the number of workers.
func (e *engine) threads() int { return len(e.workers) }

// start launches the workers, which report into m.
func (e *engine) start(m *meter) {
	e.m = m
	for _, w := range e.workers {
		w.m = m
		e.wg.Go(w.run)
	}
}

// stop wakes the workers, waits for them, hands their round trips to the
// meter and closes every descriptor.
func (e *engine) stop() {
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	for _, w := range e.workers {
		if w.wake >= 0 {
			_, _ = unix.Write(w.wake, one)
		}
	}
	e.wg.Wait()
	for _, w := range e.workers {
		if e.m != nil {
			e.m.mergeRTT(w.rtt)
		}
		for _, c := range w.conns {
			unix.Close(c.fd)
		}
		for _, fd := range []int{w.epfd, w.wake} {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}
}

func (w *worker) run() {
	if w.cpu >= 0 {
		// Never unlocked: when the worker returns, its pinned thread ends
		// with it instead of going back to the runtime's pool.
		runtime.LockOSThread()
		if err := shard.PinThread(w.cpu); err != nil {
			w.m.fail("generator: %v", err)
			return
		}
	}
	w.measuring = w.m.measuring.Load()
	now := nanotime()
	for _, c := range w.conns {
		c.role.opening(c, now)
		if len(c.out) > 0 {
			w.write(c)
		}
	}
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(w.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			w.m.fail("generator: epoll_wait: %v", err)
			return
		}
		w.measuring = w.m.measuring.Load()
		for _, ev := range events[:n] {
			if ev.Fd == wakeSlot {
				return
			}
			c := w.conns[ev.Fd]
			if !c.dead && !c.stream && ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				w.read(c)
			}
			if !c.dead && (c.stream || c.armed) && ev.Events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				w.write(c)
			}
		}
		if w.frames > 0 {
			w.m.delivered(w.frames, w.bytes)
			w.frames, w.bytes = 0, 0
		}
	}
}

// read does one read, hands the frames to the role and writes what it
// answered.
func (w *worker) read(c *gconn) {
	err := c.in.Fill(&c.src)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		err = nil // the readiness was stale; nothing was read
	}
	if rerr := c.role.received(w, c, nanotime()); rerr != nil {
		w.m.fail("%s: %v", c.role.describe(), rerr)
		w.drop(c)
		return
	}
	if err != nil {
		w.m.ioError(c.role.describe()+" read", err)
		w.drop(c)
		return
	}
	if c.sent < len(c.out) {
		w.write(c)
	}
}

// write does one write of the pending output (a streaming sender first
// builds its next batch) and watches for room when the socket took less.
func (w *worker) write(c *gconn) {
	if c.sent == len(c.out) {
		c.out, c.sent = c.out[:0], 0
		if !c.stream {
			w.arm(c, false)
			return
		}
		c.role.refill(c)
	}
	var n int
	var err error
	if c.tlsw != nil {
		n, err = c.tlsw.write(c.fd, c.out[c.sent:])
	} else {
		n, err = unix.Write(c.fd, c.out[c.sent:])
	}
	if n > 0 {
		c.sent += n
	}
	if err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
		w.m.ioError(c.role.describe()+" write", err)
		w.drop(c)
		return
	}
	if c.sent == len(c.out) {
		c.out, c.sent = c.out[:0], 0
	}
	w.arm(c, c.sent < len(c.out))
}

// arm adds or removes EPOLLOUT for a reader that has output left over.
// Streaming senders keep it all along.
func (w *worker) arm(c *gconn, on bool) {
	if c.stream || c.armed == on {
		return
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: c.slot}
	if on {
		ev.Events |= unix.EPOLLOUT
	}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev); err != nil {
		w.m.fail("%s: epoll_ctl: %v", c.role.describe(), err)
		w.drop(c)
		return
	}
	c.armed = on
}

// drop stops serving a connection after an error; stop closes it.
func (w *worker) drop(c *gconn) {
	c.dead = true
	_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
}

// delivered counts one verified frame of n payload bytes.
func (w *worker) delivered(n int) {
	w.frames++
	w.bytes += int64(n)
}

// roundTrip records one round-trip time while the window is open.
func (w *worker) roundTrip(ns int64) {
	if w.measuring {
		_ = w.rtt.RecordValue(max(ns, 1)) // out of range only past 100 s
	}
}
