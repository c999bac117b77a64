package tlshandshake

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults for Config's zero values.
const (
	DefaultTimeout       = 2 * time.Second // as NATS
	DefaultMaxHandshakes = 128
)

// Config tunes a Pool.
type Config struct {
	// Timeout bounds one handshake, from the moment a worker takes the
	// socket to the client's Finished (default DefaultTimeout).
	Timeout time.Duration
	// MaxHandshakes bounds the handshakes in progress at once (default
	// DefaultMaxHandshakes). Beyond it Serve stops accepting, Start
	// waits and TryStart says no; connections wait in the kernel's
	// listen backlog.
	MaxHandshakes int
	// Deliver receives each finished handshake, on the worker's
	// goroutine, which holds its slot until Deliver returns: it should
	// only queue the Conn for a loop (an inbox and a Wake) and return.
	// Required.
	Deliver func(Conn)
	// Logger hears about failed handshakes (at Debug: a flood of
	// garbage must not flood the log); nil discards.
	Logger *slog.Logger
}

// Pool runs TLS 1.3 server handshakes, at most Config.MaxHandshakes at
// once, each on a goroutine of its own that exists only while it holds a
// slot.
type Pool struct {
	cfg   Config
	certs *CertStore
	base  *tls.Config // only GetConfigForClient; see configForClient

	slots  chan struct{} // a send takes a slot, a receive frees one
	ctx    context.Context
	cancel context.CancelFunc
	stats  stats

	mu     sync.Mutex // orders worker starts against Close
	closed bool
	wg     sync.WaitGroup
}

// NewPool returns a pool presenting certs' certificate.
func NewPool(certs *CertStore, cfg Config) (*Pool, error) {
	if certs == nil {
		return nil, errors.New("tls handshake pool: no certificate store")
	}
	if cfg.Deliver == nil {
		return nil, errors.New("tls handshake pool: Config.Deliver is required")
	}
	if cfg.Timeout < 0 || cfg.MaxHandshakes < 0 {
		return nil, fmt.Errorf("tls handshake pool: negative timeout (%v) or bound (%d)", cfg.Timeout, cfg.MaxHandshakes)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxHandshakes == 0 {
		cfg.MaxHandshakes = DefaultMaxHandshakes
	}
	p := &Pool{cfg: cfg, certs: certs, slots: make(chan struct{}, cfg.MaxHandshakes)}
	p.base = &tls.Config{GetConfigForClient: p.configForClient}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p, nil
}

// ErrPoolClosed is returned by Start after Close.
var ErrPoolClosed = errors.New("tls handshake pool closed")

// Start waits until a slot is free (or ctx ends, or the pool closes), then
// runs the handshake of fd, a connected socket, on a worker. The pool owns
// fd from the call on: on any failure, including an error from Start, fd
// is closed.
func (p *Pool) Start(ctx context.Context, fd int) error {
	if p.ctx.Err() != nil {
		_ = unix.Close(fd)
		return ErrPoolClosed
	}
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		_ = unix.Close(fd)
		return ctx.Err()
	case <-p.ctx.Done():
		_ = unix.Close(fd)
		return ErrPoolClosed
	}
	if !p.startFd(fd) {
		_ = unix.Close(fd)
		return ErrPoolClosed
	}
	return nil
}

// TryStart runs the handshake of fd on a worker if a slot is free, and
// then owns fd. It returns false, leaving fd to the caller, when every
// slot is taken or the pool is closed.
func (p *Pool) TryStart(fd int) bool {
	if p.ctx.Err() != nil {
		return false
	}
	select {
	case p.slots <- struct{}{}:
		return p.startFd(fd)
	default:
		return false
	}
}

// Serve accepts connections from ln and hands each to a worker. It takes
// a slot before it accepts, so while every slot is taken it does not
// accept at all and new connections wait in the kernel's backlog (or are
// refused by it when that fills). It returns nil once the pool is closed
// (Close also closes ln) or ln is closed, and the accept error otherwise.
// A lack of descriptors pauses accepting a little and retries. Socket
// options the listener gives accepted connections stay with the socket
// after the handover (net.Listen's turn on TCP keep-alive; a
// net.ListenConfig with KeepAlive -1 does not).
func (p *Pool) Serve(ln net.Listener) error {
	stop := context.AfterFunc(p.ctx, func() { ln.Close() })
	defer stop()
	backoff := time.Duration(0)
	for {
		select {
		case p.slots <- struct{}{}:
		case <-p.ctx.Done():
			return nil
		}
		c, err := ln.Accept()
		if err != nil {
			<-p.slots
			if errors.Is(err, net.ErrClosed) || p.ctx.Err() != nil {
				return nil
			}
			if !retryAccept(err) {
				return fmt.Errorf("tls: accept on %s: %w", ln.Addr(), err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			if p.cfg.Logger != nil {
				p.cfg.Logger.Warn("tls: accept failed, retrying", "err", err, "in", backoff)
			}
			select {
			case <-time.After(backoff):
			case <-p.ctx.Done():
				return nil
			}
			continue
		}
		backoff = 0
		if !p.enter() {
			c.Close()
			return nil
		}
		go p.work(c, -1)
	}
}

// retryAccept reports whether an accept error leaves the listener usable:
// descriptors or memory ran out, or the peer left before accept.
func retryAccept(err error) bool {
	for _, e := range []syscall.Errno{unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM, unix.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// startFd starts a worker on fd; the caller took a slot. After Close it
// frees the slot and returns false.
func (p *Pool) startFd(fd int) bool {
	if !p.enter() {
		return false
	}
	go p.work(nil, fd)
	return true
}

// enter registers a worker about to start on a slot already taken, unless
// the pool is closed: then it frees the slot.
func (p *Pool) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		<-p.slots
		return false
	}
	p.wg.Add(1)
	p.stats.begin()
	return true
}

// work runs one handshake on its own goroutine: over nc when Serve
// accepted it, else over fd. Whatever happens, the slot is freed and
// either the socket reaches Deliver or it is closed.
func (p *Pool) work(nc net.Conn, fd int) {
	defer p.wg.Done()
	defer func() { <-p.slots }()
	defer p.stats.inProgress.Add(-1)
	start := time.Now()
	var err error
	if nc != nil {
		if fd, err = connFd(nc); err != nil {
			nc.Close()
		}
	} else if nc, err = fdConn(fd); err != nil {
		_ = unix.Close(fd)
	}
	if err != nil {
		p.finish(Other, time.Since(start), err)
		return
	}
	c, r, err := p.run(p.ctx, nc)
	p.finish(r, time.Since(start), err)
	if r != OK {
		_ = unix.Close(fd)
		return
	}
	c.Fd = fd
	p.cfg.Deliver(c)
}

func (p *Pool) finish(r Result, d time.Duration, err error) {
	p.stats.record(r, d)
	if err != nil && p.cfg.Logger != nil {
		p.cfg.Logger.Debug("tls handshake failed", "result", r.String(), "err", err)
	}
}

// Close stops the pool: Serve returns (its listener closed), handshakes in
// progress end (their sockets closed, counted as Other), and Start and
// TryStart refuse. It returns once every worker is done; Deliver is not
// called after that.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	p.cancel()
	p.mu.Unlock()
	p.wg.Wait()
}

// Snapshot returns the pool's and its certificate store's counters. Safe
// from any goroutine.
func (p *Pool) Snapshot() Snapshot {
	s := Snapshot{
		InProgress:     p.stats.inProgress.Load(),
		Peak:           p.stats.peak.Load(),
		DurationCounts: make([]uint64, len(p.stats.buckets)),
		DurationSum:    time.Duration(p.stats.sumNs.Load()).Seconds(),
		CertNotAfter:   p.certs.NotAfter(),
	}
	for i := range s.Handshakes {
		s.Handshakes[i] = p.stats.handshakes[i].Load()
	}
	for i := range s.DurationCounts {
		s.DurationCounts[i] = p.stats.buckets[i].Load()
	}
	s.ReloadsOK, s.ReloadsFailed = p.certs.Reloads()
	return s
}
