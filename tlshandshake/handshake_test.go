package tlshandshake

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSecretsMatchClientKeyLog: a crypto/tls client handshakes; the pool
// hands over the same traffic secrets the client logged, and the state
// an operator sees.
func TestSecretsMatchClientKeyLog(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, p.files, Config{})
	var log bytes.Buffer
	cfg := p.clientConfig()
	cfg.KeyLogWriter = &log
	c, err := tls.Dial("tcp", s.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := s.next(t)
	wantClient, wantServer := keyLogSecrets(t, log.String())
	if !bytes.Equal(got.ClientSecret, wantClient) || !bytes.Equal(got.ServerSecret, wantServer) {
		t.Errorf("secrets differ from the client's key log:\nclient %x\n  want %x\nserver %x\n  want %x",
			got.ClientSecret, wantClient, got.ServerSecret, wantServer)
	}
	cs := c.ConnectionState()
	st := got.State
	if st.Version != tls.VersionTLS13 || st.CipherSuite != cs.CipherSuite || st.ServerName != "localhost" ||
		st.ClientSubject != "" || st.Duration <= 0 || st.Remote.String() != c.LocalAddr().String() {
		t.Errorf("state %+v; client has suite %s, address %s", st, tls.CipherSuiteName(cs.CipherSuite), c.LocalAddr())
	}
	if got.Fd < 0 {
		t.Fatalf("fd %d", got.Fd)
	}
	s.waitCount(t, OK, 1)
	snap := s.pool.Snapshot()
	var timed uint64
	for _, n := range snap.DurationCounts {
		timed += n
	}
	if timed != 1 || snap.DurationSum <= 0 {
		t.Errorf("duration histogram holds %d handshakes summing %vs, want 1", timed, snap.DurationSum)
	}
	if !snap.CertNotAfter.Equal(p.server.notAfter) {
		t.Errorf("CertNotAfter %v, want %v", snap.CertNotAfter, p.server.notAfter)
	}
}

// TestRecordBoundary is the read-ahead pitfall: the client's last
// handshake flight and its first application record reach the server in
// one write. After the handover the record must still be in the socket,
// and it must open with the handed-over client secret.
func TestRecordBoundary(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutual bool // the client's flight then carries Certificate and CertificateVerify too
		fdPath bool // hand the pool a descriptor (Start) instead of letting it accept (Serve)
	}{
		{"serve", false, false},
		{"serve-mtls", true, false},
		{"start-fd", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPKI(t)
			files := p.files
			cfg := p.clientConfig()
			if tc.mutual {
				files = p.mutualFiles()
				cfg.Certificates = []tls.Certificate{p.clientCA.issue(t, "client-1", 7, true, time.Now().Add(time.Hour)).tls}
			}
			var addr string
			var deliveries chan Conn
			if tc.fdPath {
				addr, deliveries = startFdServer(t, files)
			} else {
				s := startServer(t, files, Config{})
				addr, deliveries = s.addr, s.done
			}
			raw, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			cork := &corkedConn{Conn: raw}
			c := tls.Client(cork, cfg)
			if err := c.Handshake(); err != nil {
				t.Fatal(err)
			}
			msg := []byte("first words right behind Finished")
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			if err := cork.flush(); err != nil {
				t.Fatal(err)
			}
			var got Conn
			select {
			case got = <-deliveries:
			case <-time.After(patience):
				t.Fatal("no handshake finished")
			}
			defer unix.Close(got.Fd)
			typ, plain := openRecord(t, got.State.CipherSuite, got.ClientSecret, readRecord(t, got.Fd))
			if typ != 23 || !bytes.Equal(plain, msg) {
				t.Fatalf("first record after the handshake: type %d %q, want application data %q", typ, plain, msg)
			}
		})
	}
}

// startFdServer accepts with a plain listener and gives the pool each
// socket as a descriptor, the way a reactor's Accepted event would.
func startFdServer(t *testing.T, files CertFiles) (string, chan Conn) {
	t.Helper()
	store, err := LoadCerts(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan Conn, 4)
	pool, err := NewPool(store, Config{Deliver: func(c Conn) { done <- c }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fd, err := connFd(c)
			c.Close()
			if err != nil {
				t.Error(err)
				return
			}
			if err := pool.Start(context.Background(), fd); err != nil && !errors.Is(err, ErrPoolClosed) {
				t.Error(err)
			}
		}
	}()
	t.Cleanup(func() { ln.Close(); pool.Close() })
	return ln.Addr().String(), done
}

// TestMutualTLS: with a client CA, a certificate it signed is accepted
// (and its subject reported), none is refused with certificate_required,
// and one signed by another CA is refused with unknown_ca.
func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, p.mutualFiles(), Config{})
	good := p.clientCA.issue(t, "client-good", 11, true, time.Now().Add(time.Hour))
	stranger := newAuthority(t, "some other CA").issue(t, "client-stranger", 12, true, time.Now().Add(time.Hour))

	for _, tc := range []struct {
		name      string
		certs     []tls.Certificate
		result    Result
		wantAlert string // in the error the client reads; "" for success
	}{
		{"verified", []tls.Certificate{good.tls}, OK, ""},
		{"missing", nil, NoClientCert, "certificate required"},
		{"wrong CA", []tls.Certificate{stranger.tls}, BadClientCert, "unknown certificate authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.pool.Snapshot().Handshakes[tc.result]
			cfg := p.clientConfig()
			// Present the certificate even where the server's list of
			// acceptable CAs does not name its issuer, as crypto/tls's
			// own choice (Config.Certificates) would not.
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if len(tc.certs) == 0 {
					return &tls.Certificate{}, nil
				}
				return &tc.certs[0], nil
			}
			c, err := tls.Dial("tcp", s.addr, cfg)
			if err != nil {
				t.Fatal(err) // TLS 1.3 clients finish before the server has checked them
			}
			defer c.Close()
			s.waitCount(t, tc.result, before+1)
			if tc.result == OK {
				got := s.next(t)
				if !strings.Contains(got.State.ClientSubject, "CN=client-good") {
					t.Errorf("client subject %q, want CN=client-good", got.State.ClientSubject)
				}
				return
			}
			c.SetReadDeadline(time.Now().Add(patience))
			_, err = c.Read(make([]byte, 1))
			if err == nil || !strings.Contains(err.Error(), tc.wantAlert) {
				t.Errorf("client read: %v, want the alert %q", err, tc.wantAlert)
			}
		})
	}
	if n := len(s.done); n != 0 {
		t.Errorf("%d refused clients were delivered", n)
	}
}

// TestNotTLS: a plaintext client and one sending garbage are closed
// without an answer and counted as not_tls.
func TestNotTLS(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, p.files, Config{})
	for i, input := range [][]byte{
		[]byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
		{0x00, 0x00, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o', 0}, // a relay frame
		{0x16, 0x7f, 0x01, 0x02, 0x03, 0x04},                 // handshake type, no TLS version
	} {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(input); err != nil {
			t.Fatal(err)
		}
		s.waitCount(t, NotTLS, uint64(i+1))
		c.SetReadDeadline(time.Now().Add(patience))
		n, err := c.Read(make([]byte, 64))
		if n != 0 || (err != io.EOF && !errors.Is(err, unix.ECONNRESET)) {
			t.Errorf("input %q: client read %d bytes, %v; want the connection closed without an answer", input, n, err)
		}
		c.Close()
	}
}

// TestOldVersion: a TLS 1.2-only client is refused with a protocol_version
// alert and counted as old_version.
func TestOldVersion(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, p.files, Config{})
	raw, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rec := &recordingConn{Conn: raw}
	cfg := p.clientConfig()
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	err = tls.Client(rec, cfg).Handshake()
	if err == nil {
		t.Fatal("a TLS 1.2 client finished a handshake")
	}
	s.waitCount(t, OldVersion, 1)
	got := rec.got.Bytes()
	// alert record: type 21, version, length 2, level fatal (2), protocol_version (70)
	if len(got) != 7 || got[0] != 21 || got[1] != 3 || got[4] != 2 || got[5] != 2 || got[6] != 70 {
		t.Errorf("server answered % x, want one fatal protocol_version alert record; client error %v", got, err)
	}
}

// TestSilentClientTimesOut: a client that connects and says nothing is
// closed once the handshake timeout passes, and counted as timeout.
func TestSilentClientTimesOut(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, p.files, Config{Timeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s.waitCount(t, Timeout, 1)
	c.SetReadDeadline(time.Now().Add(patience))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("client read %d bytes, %v; want EOF", n, err)
	}
}

// TestPeerClosed: a client that hangs up mid-handshake is counted as
// peer_closed.
func TestPeerClosed(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, p.files, Config{})
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte{0x16, 0x03, 0x01, 0x00, 0x40}) // a header promising 64 bytes
	c.Close()
	s.waitCount(t, PeerClosed, 1)
}
