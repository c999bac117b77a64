package tlshandshake

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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
	waitFor(t, "one handshake in progress", func() bool { return pool.Snapshot().InProgress == 1 })
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
	waitFor(t, "the timeouts", func() bool { return s.pool.Snapshot().Handshakes[Timeout] == 2*rounds })
	for _, c := range clients {
		c.Close()
	}
	waitFor(t, "descriptors back to the baseline", func() bool { return openFds() <= base })
}
