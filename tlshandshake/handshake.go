package tlshandshake

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Conn is a finished handshake, ready for a loop to adopt.
type Conn struct {
	// Fd is the connected socket. Its owner (Config.Deliver's callee)
	// must hand it to exactly one loop (reactor.Loop.Adopt) or close it.
	// Its blocking mode is whatever the handshake left (non-blocking):
	// Adopt sets the mode its backend wants. Nothing past the client's
	// Finished has been read from it.
	Fd int
	// ClientSecret and ServerSecret are client_application_traffic_secret_0
	// and server_application_traffic_secret_0 (RFC 8446 §7.1): the record
	// layer derives each direction's key and IV from them with
	// HKDF-Expand-Label. No application record has been sent or received
	// under them yet: both sequence numbers start at 0.
	ClientSecret, ServerSecret []byte
	// State is what an operator may want to see about the connection.
	State State
}

// State describes a finished handshake.
type State struct {
	Version     uint16 // always tls.VersionTLS13
	CipherSuite uint16 // tls.TLS_AES_128_GCM_SHA256, ...
	// Group is the key exchange group (tls.X25519MLKEM768, tls.X25519, ...).
	Group tls.CurveID
	// HelloRetry: the client's first key share was of no use and the
	// server asked for another (a round trip more).
	HelloRetry bool
	ServerName string // SNI, "" when the client sent none
	// ClientSubject is the verified client certificate's subject (RFC
	// 2253 form); "" without a client certificate.
	ClientSubject string
	Remote        net.Addr
	// Duration runs from the start of the handshake (a worker took the
	// socket) to its end.
	Duration time.Duration
}

// run performs one server handshake on nc and returns the connection's
// secrets and state (all but Fd), or why it failed. It always closes nc,
// the Go-side duplicate; the socket the caller hands on is not its to
// close.
func (p *Pool) run(ctx context.Context, nc net.Conn) (Conn, Result, error) {
	start := time.Now()
	defer nc.Close()
	hc := newHandshakeConn(nc)
	if err := nc.SetDeadline(start.Add(p.cfg.Timeout)); err != nil {
		return Conn{}, Other, fmt.Errorf("tls handshake: set deadline: %w", err)
	}
	tc := tls.Server(hc, p.base)
	if err := tc.HandshakeContext(ctx); err != nil {
		return Conn{}, classify(hc, err, p.certs.Mutual()), fmt.Errorf("tls handshake with %s: %w", nc.RemoteAddr(), err)
	}
	// Not tc.Close: that would send close_notify. The socket lives on.
	if hc.keys.err != nil || hc.keys.client == nil || hc.keys.server == nil {
		return Conn{}, Other, fmt.Errorf("tls handshake with %s: traffic secrets missing from the key log (%v)", nc.RemoteAddr(), hc.keys.err)
	}
	cs := tc.ConnectionState()
	st := State{
		Version:     cs.Version,
		CipherSuite: cs.CipherSuite,
		Group:       cs.CurveID,
		HelloRetry:  cs.HelloRetryRequest,
		ServerName:  cs.ServerName,
		Remote:      nc.RemoteAddr(),
		Duration:    time.Since(start),
	}
	if len(cs.PeerCertificates) > 0 {
		st.ClientSubject = cs.PeerCertificates[0].Subject.String()
	}
	return Conn{ClientSecret: hc.keys.client, ServerSecret: hc.keys.server, State: st}, OK, nil
}

// configForClient picks the configuration for one handshake once its
// ClientHello is in: the certificates current at that moment (so a
// Reload affects the next ClientHello on) and a key log for that
// connection alone. It also notes whether the client offered TLS 1.3, the
// one fact that tells an old client from a broken one.
func (p *Pool) configForClient(chi *tls.ClientHelloInfo) (*tls.Config, error) {
	hc, ok := chi.Conn.(*handshakeConn)
	if !ok {
		return nil, errors.New("tls handshake: not a connection of this pool")
	}
	hc.helloSeen = true
	for _, v := range chi.SupportedVersions {
		if v == tls.VersionTLS13 {
			hc.offered13 = true
		}
	}
	return p.certs.cur.Load().serverConfig(&hc.keys), nil
}

// fdConn makes a net.Conn over a duplicate of fd, so that closing the
// net.Conn leaves fd open. net.FileConn duplicates the descriptor again
// and puts it in Go's poller in non-blocking mode; O_NONBLOCK belongs to
// the open file, so fd becomes non-blocking too (Adopt resets it).
func fdConn(fd int) (net.Conn, error) {
	d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tls handshake: dup socket %d: %w", fd, err)
	}
	f := os.NewFile(uintptr(d), "tls-handshake")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("tls handshake: socket %d: %w", fd, err)
	}
	return c, nil
}

// connFd duplicates the socket under c, so that it outlives c.Close.
func connFd(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("tls handshake: %T has no socket descriptor", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("tls handshake: %w", err)
	}
	fd, dupErr := -1, error(nil)
	if err := raw.Control(func(s uintptr) {
		fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, fmt.Errorf("tls handshake: %w", err)
	}
	if dupErr != nil {
		return -1, fmt.Errorf("tls handshake: dup socket: %w", dupErr)
	}
	return fd, nil
}
