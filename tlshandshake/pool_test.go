package tlshandshake

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringrelay/ringrelay/internal/servertest"
)

// TestBound: with room for 2 handshakes, 5 clients that say nothing are
// handled at most 2 at a time (the rest wait in the listen backlog), and
// every one of them still ends, by timeout.
func TestBound(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, p.files, Config{MaxHandshakes: 2, Timeout: time.Second})
	var clients []net.Conn
	for range 5 {
		c, err := net.Dial("tcp", s.addr) // the kernel completes it; the pool may not accept yet
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	s.waitCount(t, Timeout, 5)
	snap := s.pool.Snapshot()
	if snap.Peak != 2 {
		t.Errorf("at most %d handshakes ran at once, want exactly the bound, 2", snap.Peak)
	}
	if snap.InProgress != 0 {
		t.Errorf("%d handshakes still in progress", snap.InProgress)
	}
	for i, c := range clients {
		c.SetReadDeadline(time.Now().Add(patience))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Errorf("client %d: read %d bytes, %v; want its connection closed", i, n, err)
		}
	}
}

// TestTryStart: with every slot taken TryStart refuses and leaves the
// descriptor to the caller; Start waits for a slot.
func TestTryStart(t *testing.T) {
	p := newPKI(t)
	store, err := LoadCerts(p.files, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan Conn, 1)
	pool, err := NewPool(store, Config{MaxHandshakes: 1, Deliver: func(c Conn) { done <- c }})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accept := func() (net.Conn, int) {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		sc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		fd, err := connFd(sc)
		sc.Close()
		if err != nil {
			t.Fatal(err)
		}
		return c, fd
	}
	silent, fd1 := accept()
	defer silent.Close()
	if !pool.TryStart(fd1) {
		t.Fatal("TryStart refused with a free slot")
	}
	servertest.WaitFor(t, "one handshake in progress", patience, func() bool { return pool.Snapshot().InProgress == 1 })
	client, fd2 := accept()
	defer client.Close()
	if pool.TryStart(fd2) {
		t.Fatal("TryStart took a second handshake with its only slot taken")
	}
	if _, err := unix.FcntlInt(uintptr(fd2), unix.F_GETFD, 0); err != nil {
		t.Fatalf("the refused descriptor was closed: %v", err)
	}
	// Start waits for the slot: the silent client's handshake gives it up
	// only when it ends, so end it by hanging up.
	started := make(chan error, 1)
	go func() { started <- pool.Start(context.Background(), fd2) }()
	tc := tls.Client(client, p.clientConfig())
	handshook := make(chan error, 1)
	go func() { handshook <- tc.Handshake() }()
	silent.Close()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	if err := <-handshook; err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-done:
		unix.Close(c.Fd)
	case <-time.After(patience):
		t.Fatal("the waiting handshake never finished")
	}
}

// TestReload: after Reload new handshakes see the new certificate; a
// broken file keeps the old one; both are counted.
func TestReload(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, p.files, Config{})
	serial := func() int64 {
		t.Helper()
		c, err := tls.Dial("tcp", s.addr, p.clientConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s.next(t)
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if got := serial(); got != 1 {
		t.Fatalf("serial %d before reload, want 1", got)
	}
	second := p.ca.issue(t, "server-2", 2, false, time.Now().Add(96*time.Hour))
	p.writeServer(t, second)
	if err := s.store.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := serial(); got != 2 {
		t.Fatalf("serial %d after reload, want 2", got)
	}
	if snap := s.pool.Snapshot(); snap.ReloadsOK != 1 || snap.ReloadsFailed != 0 || !snap.CertNotAfter.Equal(second.notAfter) {
		t.Errorf("after a good reload: ok %d failed %d expiry %v, want 1, 0, %v",
			snap.ReloadsOK, snap.ReloadsFailed, snap.CertNotAfter, second.notAfter)
	}

	// A key that does not match, then a certificate file that is not PEM.
	third := p.ca.issue(t, "server-3", 3, false, time.Now().Add(time.Hour))
	p.write(t, "server.key", third.keyPEM)
	if err := s.store.Reload(); err == nil {
		t.Fatal("Reload took a key that does not match the certificate")
	}
	p.write(t, "server.pem", []byte("not a certificate\n"))
	if err := s.store.Reload(); err == nil {
		t.Fatal("Reload took a file with no certificate")
	}
	if got := serial(); got != 2 {
		t.Fatalf("serial %d after failed reloads, want 2 (kept)", got)
	}
	if snap := s.pool.Snapshot(); snap.ReloadsOK != 1 || snap.ReloadsFailed != 2 || !snap.CertNotAfter.Equal(second.notAfter) {
		t.Errorf("after two failed reloads: ok %d failed %d expiry %v, want 1, 2, %v",
			snap.ReloadsOK, snap.ReloadsFailed, snap.CertNotAfter, second.notAfter)
	}
}

// TestNoDescriptorLeak: every refused handshake closes its socket. The
// process's open descriptors come back to where they were once the bad
// clients are gone.
func TestNoDescriptorLeak(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, p.files, Config{Timeout: time.Second})
	openFds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	// One good handshake first, so Go's poller and friends exist.
	c, err := tls.Dial("tcp", s.addr, p.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(s.next(t).Fd)
	c.Close()
	base := openFds()

	const rounds = 20
	var clients []net.Conn
	for range rounds {
		for _, input := range [][]byte{[]byte("PING\r\n"), {0x16, 0x03, 0x01, 0x00, 0x40}, nil} {
			c, err := net.Dial("tcp", s.addr)
			if err != nil {
				t.Fatal(err)
			}
			c.Write(input)
			clients = append(clients, c)
		}
		old := p.clientConfig()
		old.MinVersion, old.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		if c, err := tls.Dial("tcp", s.addr, old); err == nil {
			c.Close()
			t.Fatal("TLS 1.2 accepted")
		}
	}
	s.waitCount(t, NotTLS, rounds)
	s.waitCount(t, OldVersion, rounds)
	servertest.WaitFor(t, "the timeouts", patience, func() bool { return s.pool.Snapshot().Handshakes[Timeout] == 2*rounds })
	for _, c := range clients {
		c.Close()
	}
	servertest.WaitFor(t, "descriptors back to the baseline", patience, func() bool { return openFds() <= base })
}

// TestFloodMixed: good clients, silent ones and garbage all at once,
// through a bound of 4. Every good client is served with its own secrets,
// every bad one is counted, and the bound holds throughout.
func TestFloodMixed(t *testing.T) {
	const good, silent, garbage, bound = 60, 10, 10, 4
	p := newPKI(t)
	s := startServer(t, p.files, Config{MaxHandshakes: bound, Timeout: time.Second})
	type client struct{ local, keyLog string }
	clients := make(chan client, good)
	errs := make(chan error, good)
	for range good {
		go func() {
			var log bytes.Buffer
			cfg := p.clientConfig()
			cfg.KeyLogWriter = &log
			c, err := tls.Dial("tcp", s.addr, cfg)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			clients <- client{c.LocalAddr().String(), log.String()}
			c.SetReadDeadline(time.Now().Add(patience))
			c.Read(make([]byte, 1)) // hold the connection until the test closes the server side
		}()
	}
	var bad []net.Conn
	defer func() {
		for _, c := range bad {
			c.Close()
		}
	}()
	for i := range silent + garbage {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		if i < garbage {
			c.Write([]byte("\x00\x00\x00\x08garbage!"))
		}
		bad = append(bad, c)
	}
	want := map[string][2][]byte{}
	for range good {
		select {
		case c := <-clients:
			cs, ss := keyLogSecrets(t, c.keyLog)
			want[c.local] = [2][]byte{cs, ss}
		case err := <-errs:
			t.Fatalf("a good client failed: %v", err)
		case <-time.After(patience):
			t.Fatal("good clients did not finish")
		}
	}
	for range good {
		c := s.next(t)
		w, ok := want[c.State.Remote.String()]
		if !ok || !bytes.Equal(w[0], c.ClientSecret) || !bytes.Equal(w[1], c.ServerSecret) {
			t.Errorf("connection from %v: secrets not those its client logged", c.State.Remote)
		}
		unix.Close(c.Fd)
	}
	s.waitCount(t, OK, good)
	s.waitCount(t, NotTLS, garbage)
	s.waitCount(t, Timeout, silent)
	if snap := s.pool.Snapshot(); snap.Peak > bound || snap.Peak < 1 {
		t.Errorf("peak of %d handshakes at once, bound %d", snap.Peak, bound)
	}
}

// TestClose: closing the pool ends a handshake in progress (the client
// sees its connection closed, the handshake counts as other), Serve
// returns nil, and Start refuses and closes what it is given.
func TestClose(t *testing.T) {
	p := newPKI(t)
	store, err := LoadCerts(p.files, nil)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := NewPool(store, Config{Timeout: time.Hour, Deliver: func(c Conn) { unix.Close(c.Fd) }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- pool.Serve(ln) }()
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	servertest.WaitFor(t, "the silent client's handshake to start", patience, func() bool { return pool.Snapshot().InProgress == 1 })
	pool.Close()
	if err := <-served; err != nil {
		t.Errorf("Serve after Close: %v", err)
	}
	if snap := pool.Snapshot(); snap.InProgress != 0 || snap.Handshakes[Other] != 1 {
		t.Errorf("after Close: %d in progress, %d other; want 0 and 1", snap.InProgress, snap.Handshakes[Other])
	}
	silent.SetReadDeadline(time.Now().Add(patience))
	if n, err := silent.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("client in a cancelled handshake read %d bytes, %v; want its connection closed", n, err)
	}

	// Start after Close: refused, and the socket closed (its peer sees EOF).
	peer, fd := socketPair(t)
	if err := pool.Start(context.Background(), fd); err != ErrPoolClosed {
		t.Errorf("Start after Close: %v, want ErrPoolClosed", err)
	}
	if pool.TryStart(fd) {
		t.Error("TryStart after Close took a socket")
	}
	peer.SetReadDeadline(time.Now().Add(patience))
	if n, err := peer.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("peer of the refused socket read %d bytes, %v; want EOF", n, err)
	}
}

// socketPair returns a connected loopback TCP pair: a net.Conn and the
// other end as a bare descriptor.
func socketPair(t *testing.T) (net.Conn, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	fd, err := connFd(sc)
	if err != nil {
		t.Fatal(err)
	}
	return c, fd
}
