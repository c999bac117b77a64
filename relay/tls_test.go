package relay_test

// The relay over TLS: the relay code is the same, the loops adopt
// connections a tlshandshake.Pool finished (AdoptTLS) and run the record
// layer, and crypto/tls clients see exactly the protocol of a plaintext
// relay: the end-to-end table runs over TLS as two of its topologies
// (topology_test.go). This file holds the TLS servers and what only TLS
// has: records split across reads, backpressure counted in plaintext, bad
// inputs refused by reason while a good pair carries on, mutual TLS.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/frame"
	"github.com/ringrelay/ringrelay/internal/servertest"
	"github.com/ringrelay/ringrelay/internal/testpki"
	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
	"github.com/ringrelay/ringrelay/relay/client"
	"github.com/ringrelay/ringrelay/tlshandshake"
	"github.com/ringrelay/ringrelay/tlsrecord"
)

// testPKI is a CA, a server certificate it signed, a client certificate
// it signed, and a client certificate signed by another CA.
type testPKI struct {
	caFile, certFile, keyFile string
	roots                     *x509.CertPool
	client, stranger          tls.Certificate
}

var (
	pkiOnce sync.Once
	pkiVal  *testPKI
	pkiErr  error
)

func thePKI(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() { pkiVal, pkiErr = makePKI() })
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return pkiVal
}

func makePKI() (*testPKI, error) {
	dir, err := os.MkdirTemp("", "ringrelay-tls-test")
	if err != nil {
		return nil, err
	}
	ca, err := testpki.NewCA("test CA")
	if err != nil {
		return nil, err
	}
	other, err := testpki.NewCA("other CA")
	if err != nil {
		return nil, err
	}
	srv, err := ca.Server("localhost")
	if err != nil {
		return nil, err
	}
	cli, err := ca.Client("alice")
	if err != nil {
		return nil, err
	}
	str, err := other.Client("mallory")
	if err != nil {
		return nil, err
	}
	p := &testPKI{roots: ca.Pool, client: cli.TLS, stranger: str.TLS}
	if p.caFile, err = ca.WriteCA(dir, "ca.pem"); err != nil {
		return nil, err
	}
	if p.certFile, p.keyFile, err = srv.Write(dir, "server"); err != nil {
		return nil, err
	}
	return p, nil
}

type tlsOptions struct {
	mutual  bool
	timeout time.Duration
}

// tlsFront is the handshake pool of a TLS test server.
type tlsFront struct {
	pool   *tlshandshake.Pool
	placed atomic.Uint64
}

// startServerTLS runs a relay of loops loops whose connections all come
// through a handshake pool on a free loopback port, as ringrelay does
// with -tls-cert: the loops have no listener; Deliver puts each finished
// connection on a loop (round robin) with AdoptTLS.
func startServerTLS(t testing.TB, backend reactor.Backend, loops int, o tlsOptions, edit func(*relay.Config, *reactor.Config)) *testServer {
	t.Helper()
	p := thePKI(t)
	g := startGroup(t, backend, loops, "", edit)
	files := tlshandshake.CertFiles{Cert: p.certFile, Key: p.keyFile}
	if o.mutual {
		files.ClientCA = p.caFile
	}
	store, err := tlshandshake.LoadCerts(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.timeout == 0 {
		o.timeout = progressSlack // a loaded machine must not fail good handshakes
	}
	front := &tlsFront{}
	front.pool, err = tlshandshake.NewPool(store, tlshandshake.Config{
		Timeout: o.timeout,
		Deliver: func(c tlshandshake.Conn) {
			rec, err := tlsrecord.NewServer(c.State.CipherSuite, c.ClientSecret, c.ServerSecret)
			if err != nil {
				t.Errorf("record layer: %v", err)
				return
			}
			k := int(front.placed.Add(1)) % loops
			g.Loop(k).AdoptTLS(c.Fd, rec)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		front.pool.Serve(ln)
	}()
	ts := &testServer{addr: ln.Addr().String(), g: g, done: make(chan error, 1),
		tlsCfg: &tls.Config{RootCAs: p.roots, ServerName: "localhost"}}
	go func() { ts.done <- g.Wait() }()
	t.Cleanup(func() {
		front.pool.Close()
		<-served
		ts.stop(t)
		tlsFronts.Delete(ts)
	})
	tlsFronts.Store(ts, front)
	return ts
}

// tlsFronts finds the pool of a TLS test server.
var tlsFronts sync.Map

func (ts *testServer) front() *tlsFront {
	f, _ := tlsFronts.Load(ts)
	return f.(*tlsFront)
}

// dialTLS dials with cfg instead of the server's default client config.
func (ts *testServer) dialTLS(t testing.TB, cfg *tls.Config) (*client.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), progressSlack)
	defer cancel()
	c, err := client.DialTLS(ctx, ts.addr, cfg)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// A frame written as TLS records of 7,000 bytes, with the connection
// flushed between them, spans records and the server's reads (the loops
// use 1 KiB receive buffers here), and arrives whole.
func TestTLSFrameSplitAcrossRecordsAndReads(t *testing.T) {
	t.Parallel()
	for _, backend := range backends {
		t.Run(string(backend), func(t *testing.T) {
			ts := startServerTLS(t, backend, 2, tlsOptions{}, func(_ *relay.Config, lc *reactor.Config) { lc.BufferSize = 1 << 10 })
			a, b := ts.dial(t), ts.dial(t)
			payload := bytes.Repeat([]byte("split-"), 40000/6)
			wire := frame.Append(nil, b.ID(), payload)
			for len(wire) > 0 {
				k := min(len(wire), 7000)
				if _, err := a.NetConn().Write(wire[:k]); err != nil { // one record per Write
					t.Fatal(err)
				}
				wire = wire[k:]
				time.Sleep(2 * time.Millisecond) // let the server read what it has
			}
			if got := recv(t, b, progressSlack); !bytes.Equal(got, payload) {
				t.Fatalf("got %d bytes, want the %d-byte payload", len(got), len(payload))
			}
		})
	}
}

// A receiver that reads nothing holds its sender back (the queue counts
// plaintext), and once it reads, every frame arrives in order: lossless.
func TestTLSBackpressureLossless(t *testing.T) {
	t.Parallel()
	for _, backend := range backends {
		for _, loops := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/loops=%d", backend, loops), func(t *testing.T) {
				const maxQueue = 256 << 10
				ts := startServerTLS(t, backend, loops, tlsOptions{}, func(rc *relay.Config, _ *reactor.Config) { rc.MaxQueue = maxQueue })
				r, s := ts.dial(t), ts.dial(t)
				const size = 16 << 10
				const n = 8 << 20 / size
				var written atomic.Int64
				errc := make(chan error, 1)
				go func() {
					var buf []byte
					for j := range n {
						buf = frame.Append(buf[:0], r.ID(), seqPayload(0, j, size))
						if _, err := s.NetConn().Write(buf); err != nil {
							errc <- err
							return
						}
						written.Add(int64(len(buf)))
					}
					errc <- nil
				}()
				servertest.WaitFor(t, "a backpressure pause", progressSlack, func() bool { return ts.metrics().BackpressurePauses > 0 })
				next := map[int]int{}
				for range n {
					checkSeq(t, recv(t, r, progressSlack), next, size)
				}
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
				if m := ts.metrics(); m.Dropped[relay.DropUnknownDest]+m.Dropped[relay.DropSlowConsumer] != 0 {
					t.Fatal("frames dropped under backpressure")
				}
			})
		}
	}
}

// Bad inputs are refused and counted by reason, and a good pair keeps
// exchanging frames through all of them.
func TestTLSBadInputsCounted(t *testing.T) {
	t.Parallel()
	for _, backend := range backends {
		t.Run(string(backend), func(t *testing.T) {
			ts := startServerTLS(t, backend, 2, tlsOptions{timeout: 3 * time.Second}, nil)
			a, b := ts.dial(t), ts.dial(t)
			exchange := func(what string) {
				t.Helper()
				if err := a.Send(b.ID(), []byte("after "+what)); err != nil {
					t.Fatal(err)
				}
				if got := recv(t, b, progressSlack); string(got) != "after "+what {
					t.Fatalf("good pair after %s: got %q", what, got)
				}
			}
			pool := ts.front().pool
			waitResult := func(r tlshandshake.Result, n uint64) {
				t.Helper()
				servertest.WaitFor(t, fmt.Sprintf("%d %s handshakes", n, r), progressSlack, func() bool { return pool.Snapshot().Handshakes[r] >= n })
			}
			rawWrite := func(b []byte) net.Conn {
				t.Helper()
				c, err := net.Dial("tcp", ts.addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				if len(b) > 0 {
					if _, err := c.Write(b); err != nil {
						t.Fatal(err)
					}
				}
				return c
			}
			expectClosed := func(c net.Conn) {
				t.Helper()
				c.SetReadDeadline(time.Now().Add(progressSlack))
				if _, err := io.ReadAll(c); err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
					t.Fatalf("waiting for the server to close: %v", err)
				}
			}

			// A plaintext relay client: its first bytes are a frame, not a ClientHello.
			expectClosed(rawWrite(frame.Append(nil, 1, []byte("hello in clear"))))
			waitResult(tlshandshake.NotTLS, 1)
			exchange("plaintext client")

			// Garbage.
			expectClosed(rawWrite([]byte("\x16\x03\x01\xff\xffgarbage garbage garbage")))
			exchange("garbage")

			// A TLS 1.2-only client gets protocol_version.
			old := ts.tlsCfg.Clone()
			old.MaxVersion = tls.VersionTLS12
			if _, err := ts.dialTLS(t, old); err == nil {
				t.Fatal("a TLS 1.2-only client got through")
			}
			waitResult(tlshandshake.OldVersion, 1)
			exchange("TLS 1.2 client")

			// A silent client is dropped at the handshake timeout.
			expectClosed(rawWrite(nil))
			waitResult(tlshandshake.Timeout, 1)
			exchange("silent client")

			// A forged record after a good handshake: bad_record_mac, counted
			// by the loop, and the connection is closed.
			c, err := ts.dialTLS(t, ts.tlsCfg)
			if err != nil {
				t.Fatal(err)
			}
			forged := append([]byte{23, 3, 3, 0, 32}, make([]byte, 32)...)
			tc := c.NetConn().(*tls.Conn)
			if _, err := tc.NetConn().Write(forged); err != nil {
				t.Fatal(err)
			}
			tc.SetReadDeadline(time.Now().Add(progressSlack))
			if _, err := io.ReadAll(tc); err == nil || !bytesContains(err.Error(), "bad record MAC") {
				t.Fatalf("after a forged record: %v, want the bad_record_mac alert", err)
			}
			servertest.WaitFor(t, "the record error counted", progressSlack, func() bool {
				var n uint64
				for k := range ts.g.Loops() {
					n += ts.g.Loop(k).Stats().TLSRecordErrors.Load()
				}
				return n == 1
			})
			exchange("forged record")
		})
	}
}

// With client certificates required: a client with one the CA signed
// gets an ID and exchanges frames; one with none, or one another CA
// signed, is refused and counted.
func TestTLSMutual(t *testing.T) {
	t.Parallel()
	for _, backend := range backends {
		t.Run(string(backend), func(t *testing.T) {
			p := thePKI(t)
			ts := startServerTLS(t, backend, 2, tlsOptions{mutual: true}, nil)
			good := ts.tlsCfg.Clone()
			good.Certificates = []tls.Certificate{p.client}
			ts.tlsCfg = good
			a, b := ts.dial(t), ts.dial(t)
			if err := a.Send(b.ID(), []byte("mutual")); err != nil {
				t.Fatal(err)
			}
			if got := recv(t, b, progressSlack); string(got) != "mutual" {
				t.Fatalf("got %q", got)
			}
			pool := ts.front().pool
			none := good.Clone()
			none.Certificates = nil
			if _, err := ts.dialTLS(t, none); err == nil {
				t.Fatal("a client without a certificate got an ID")
			}
			servertest.WaitFor(t, "no_client_cert counted", progressSlack, func() bool { return pool.Snapshot().Handshakes[tlshandshake.NoClientCert] == 1 })
			stranger := good.Clone()
			// Offered whatever CAs the server names (crypto/tls would
			// otherwise send no certificate that the server's CAs did not sign).
			stranger.Certificates = nil
			stranger.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &p.stranger, nil }
			if _, err := ts.dialTLS(t, stranger); err == nil {
				t.Fatal("a client with a certificate from another CA got an ID")
			}
			servertest.WaitFor(t, "bad_client_cert counted", progressSlack, func() bool { return pool.Snapshot().Handshakes[tlshandshake.BadClientCert] == 1 })
			if ok := pool.Snapshot().Handshakes[tlshandshake.OK]; ok != 2 {
				t.Fatalf("%d handshakes ok, want 2", ok)
			}
		})
	}
}

func isReset(err error) bool {
	return bytesContains(err.Error(), "connection reset")
}

func bytesContains(s, sub string) bool { return bytes.Contains([]byte(s), []byte(sub)) }
