package main

// TLS on -listen (-tls-cert and -tls-key). The handshake pool
// (tlshandshake) owns the listening socket: it accepts only while a
// handshake slot is free, runs crypto/tls off the loops, and hands each
// finished connection to the least-loaded loop with AdoptTLS; the loops,
// opened without a listener, run the record layer themselves (reactor,
// tls.go). Without a certificate none of this exists and -listen is the
// loops' own plaintext listener, as before.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringrelay/ringrelay/metrics"
	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
	"github.com/ringrelay/ringrelay/tlshandshake"
	"github.com/ringrelay/ringrelay/tlsrecord"
	"golang.org/x/sys/unix"
)

// tlsConfig is the TLS group of flags.
type tlsConfig struct {
	Cert, Key, ClientCA string
	HandshakeTimeout    time.Duration
	MaxHandshakes       int

	store *tlshandshake.CertStore // loaded by validateTLS when Cert is set
}

func defaultTLS() tlsConfig {
	return tlsConfig{HandshakeTimeout: tlshandshake.DefaultTimeout, MaxHandshakes: tlshandshake.DefaultMaxHandshakes}
}

func (c *Config) tlsFlags(fs *flag.FlagSet) flagGroup {
	t := &c.TLS
	return flagGroup{"TLS (TLS 1.3 only; with -tls-cert every connection on -listen must speak TLS)", []flagDef{
		{"tls-cert", bind(fs.StringVar, &t.Cert), "PEM `file` with the server's certificate chain; turns TLS on (needs -tls-key)"},
		{"tls-key", bind(fs.StringVar, &t.Key), "PEM `file` with the certificate's private key"},
		{"tls-client-ca", bind(fs.StringVar, &t.ClientCA), "PEM `file` of CA certificates: every client must present a certificate they signed (mutual TLS)"},
		{"tls-handshake-timeout", bind(fs.DurationVar, &t.HandshakeTimeout), "close a client whose handshake is not done this long after it was accepted"},
		{"tls-max-handshakes", bind(fs.IntVar, &t.MaxHandshakes), "handshakes in progress at once (`count`); beyond it connections wait in the kernel's listen backlog"},
	}}
}

// validateTLS checks the TLS flags and, with a certificate, loads the
// files, so a file that does not load is a flag error (exit 2).
func (c *Config) validateTLS() error {
	t := &c.TLS
	switch {
	case t.Cert == "" && t.Key != "":
		return errors.New("-tls-key without -tls-cert: give both to turn TLS on")
	case t.Cert != "" && t.Key == "":
		return errors.New("-tls-cert without -tls-key: give the certificate's private key too")
	case t.Cert == "" && t.ClientCA != "":
		return errors.New("-tls-client-ca without -tls-cert: client certificates need TLS on (-tls-cert, -tls-key)")
	case t.HandshakeTimeout <= 0:
		return fmt.Errorf("-tls-handshake-timeout %v: must be positive", t.HandshakeTimeout)
	case t.MaxHandshakes < 1:
		return fmt.Errorf("-tls-max-handshakes %d: must be at least 1", t.MaxHandshakes)
	case t.Cert == "":
		return nil
	}
	store, err := tlshandshake.LoadCerts(tlshandshake.CertFiles{Cert: t.Cert, Key: t.Key, ClientCA: t.ClientCA}, nil)
	if err != nil {
		return fmt.Errorf("-tls-cert %s, -tls-key %s: %w", t.Cert, t.Key, err)
	}
	t.store = store
	return nil
}

// tlsServer is the running TLS front: the pool, its listener and where it
// places connections.
type tlsServer struct {
	pool  *tlshandshake.Pool
	store *tlshandshake.CertStore
	ln    net.Listener
	log   *slog.Logger
	stop  chan struct{}
	once  sync.Once

	mu     sync.Mutex
	loops  []reactor.Loop
	placed []uint64 // connections given to each loop
}

// startTLS listens on addr and serves handshakes for g's loops. A nil
// server (TLS off) is valid and does nothing.
func startTLS(cfg Config, g *relay.Group, log *slog.Logger) (*tlsServer, error) {
	if cfg.TLS.store == nil {
		return nil, nil
	}
	t := &tlsServer{store: cfg.TLS.store, log: log, stop: make(chan struct{}), placed: make([]uint64, g.Loops())}
	for k := range g.Loops() {
		t.loops = append(t.loops, g.Loop(k))
	}
	pool, err := tlshandshake.NewPool(t.store, tlshandshake.Config{
		Timeout:       cfg.TLS.HandshakeTimeout,
		MaxHandshakes: cfg.TLS.MaxHandshakes,
		Deliver:       t.deliver,
		Logger:        log,
	})
	if err != nil {
		return nil, err
	}
	t.pool = pool
	// No keep-alive: the loops' own listener sets none, and what the
	// listener sets stays with the socket after the handover.
	lc := net.ListenConfig{KeepAlive: -1}
	if t.ln, err = lc.Listen(context.Background(), "tcp", cfg.Listen); err != nil {
		pool.Close()
		return nil, err
	}
	go func() {
		if err := pool.Serve(t.ln); err != nil {
			log.Error("TLS listener stopped", "err", err)
		}
	}()
	// SIGHUP reloads the certificate; SIGINT and SIGTERM stop new
	// handshakes at once (main's handler drains the loops).
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		defer signal.Stop(sigs)
		for {
			select {
			case s := <-sigs:
				if s != syscall.SIGHUP {
					t.close()
					return
				}
				t.reload()
			case <-t.stop:
				return
			}
		}
	}()
	return t, nil
}

// addr is the address clients connect to.
func (t *tlsServer) addr() net.Addr { return t.ln.Addr() }

// reload loads the certificate files again (SIGHUP). The store counts
// the outcome (ringrelay_tls_certificate_reloads_total); a failure keeps
// the old certificate.
func (t *tlsServer) reload() {
	if err := t.store.Reload(); err != nil {
		t.log.Error("certificate reload failed; the old certificate stays", "err", err)
		return
	}
	t.log.Info("certificates reloaded", "not_after", t.store.NotAfter().UTC().Format(time.RFC3339))
}

// deliver runs on a handshake worker: it builds the record layer and
// gives the connection to the loop with the fewest connections (what it
// was given minus what it closed, as relay places plain connections).
func (t *tlsServer) deliver(c tlshandshake.Conn) {
	rec, err := tlsrecord.NewServer(c.State.CipherSuite, c.ClientSecret, c.ServerSecret)
	if err != nil {
		t.log.Warn("TLS record layer", "err", err)
		_ = unix.Close(c.Fd)
		return
	}
	t.mu.Lock()
	best, load := 0, ^uint64(0)
	for k, l := range t.loops {
		if n := t.placed[k] - min(l.Stats().Closed.Load(), t.placed[k]); n < load {
			best, load = k, n
		}
	}
	t.placed[best]++
	t.mu.Unlock()
	t.loops[best].AdoptTLS(c.Fd, rec)
}

// close stops accepting and ends handshakes in progress. Idempotent; safe
// on a nil server.
func (t *tlsServer) close() {
	if t == nil {
		return
	}
	t.once.Do(func() {
		close(t.stop)
		t.pool.Close()
	})
}

// collectors are the TLS metrics: the pool's, and the loops' TLS
// connections and record-layer outcomes summed over loops.
func (t *tlsServer) collectors() []prometheus.Collector {
	sum := func(f func(s *reactor.Stats) float64) func() float64 {
		return func() float64 {
			v := 0.0
			for _, l := range t.loops {
				v += f(l.Stats())
			}
			return v
		}
	}
	gauge := func(name, help string, f func(s *reactor.Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ringrelay_tls_" + name, Help: help}, sum(f))
	}
	counter := func(name, help string, f func(s *reactor.Stats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ringrelay_tls_" + name, Help: help}, sum(f))
	}
	return []prometheus.Collector{
		metrics.NewTLSCollector(t.pool.Snapshot),
		gauge("connections_open", "TLS connections open on the loops (handshake done).",
			func(s *reactor.Stats) float64 { return float64(s.TLSOpen.Load()) }),
		counter("record_errors_total", "TLS connections closed because a record failed here (an alert was sent: bad_record_mac, record_overflow, ...).",
			func(s *reactor.Stats) float64 { return float64(s.TLSRecordErrors.Load()) }),
		counter("peer_alerts_total", "TLS connections the peer ended with a fatal alert.",
			func(s *reactor.Stats) float64 { return float64(s.TLSPeerAlerts.Load()) }),
		counter("close_notify_total", "close_notify alerts received (a clean end of the client's sending side).",
			func(s *reactor.Stats) float64 { return float64(s.TLSCloseNotify.Load()) }),
		counter("idle_shrinks_total", "Times an idle TLS connection's ciphers were dropped to save memory.",
			func(s *reactor.Stats) float64 { return float64(s.TLSShrinks.Load()) }),
	}
}
