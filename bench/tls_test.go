package bench

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/testpki"
	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
	"github.com/ringrelay/ringrelay/tlshandshake"
	"github.com/ringrelay/ringrelay/tlsrecord"
)

// startTLSRelay runs the relay in-process behind a handshake pool, as
// ringrelay -tls-cert does, and returns its address and the client
// configuration that trusts it.
func startTLSRelay(t *testing.T, backend reactor.Backend) (string, *tls.Config) {
	t.Helper()
	ca, err := testpki.NewCA("bench CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Server("localhost")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := leaf.Write(t.TempDir(), "server")
	if err != nil {
		t.Fatal(err)
	}
	lc := reactor.DefaultConfig()
	lc.Backend = backend
	lc.Buffers = 256
	g, err := relay.StartGroup(relay.GroupConfig{Loops: 1, Reactor: lc, Relay: relay.DefaultConfig()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	store, err := tlshandshake.LoadCerts(tlshandshake.CertFiles{Cert: cert, Key: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := tlshandshake.NewPool(store, tlshandshake.Config{
		Timeout: 30 * time.Second,
		Deliver: func(c tlshandshake.Conn) {
			rec, err := tlsrecord.NewServer(c.State.CipherSuite, c.ClientSecret, c.ServerSecret)
			if err != nil {
				t.Error(err)
				return
			}
			g.Loop(0).AdoptTLS(c.Fd, rec)
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
	go func() { defer close(served); pool.Serve(ln) }()
	t.Cleanup(func() {
		pool.Close()
		<-served
		g.Shutdown()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("relay: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("relay did not stop")
		}
	})
	return ln.Addr().String(), &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"}
}

// The generator's TLS path (handshake, then its own record layer on the
// raw socket) carries every workload, intact (idle ends with a probe each
// connection sends itself): a record
// it sealed wrong would close the connection (bad_record_mac) and a frame
// it opened wrong would fail the integrity checks.
func TestWorkloadsOverTLS(t *testing.T) {
	points := []Point{
		must(NewPoint("pingpong", 3, 4, 0, 0, 64)),
		must(NewPoint("flood", 0, 0, 0, 0, 64<<10)),
		must(NewPoint("fanin", 0, 0, 5, 0, 256)),
		must(NewPoint("idle", 0, 0, 0, 50, 0)),
	}
	for _, backend := range []reactor.Backend{reactor.Uring, reactor.Epoll} {
		addr, cfg := startTLSRelay(t, backend)
		for _, p := range points {
			t.Run(string(backend)+"/"+p.Name, func(t *testing.T) {
				o := shortRun
				o.TLS = cfg
				o.Workers = 2
				f := Measure(context.Background(), addr, p, o)
				if f.Failed() {
					t.Fatalf("%d errors: %v", f.Errors, f.ErrorSamples)
				}
				if p.Workload != "idle" && (f.Frames <= 0 || f.MBPerSec <= 0) {
					t.Errorf("nothing delivered: %+v", f)
				}
			})
		}
	}
}

// The connect point counts connections that got their ID, over TLS each
// after a full handshake.
func TestConnectPoint(t *testing.T) {
	addr, cfg := startTLSRelay(t, reactor.Epoll)
	p := must(NewPoint("connect", 0, 0, 0, 2, 0))
	for _, tc := range []struct {
		name string
		tls  *tls.Config
		addr string
	}{{"tls", cfg, addr}, {"plaintext", nil, startRelay(t, reactor.Epoll)}} {
		t.Run(tc.name, func(t *testing.T) {
			o := shortRun
			o.TLS = tc.tls
			f := Measure(context.Background(), tc.addr, p, o)
			if f.Failed() {
				t.Fatalf("%d errors: %v", f.Errors, f.ErrorSamples)
			}
			if f.Frames <= 0 {
				t.Fatalf("no connection counted: %+v", f)
			}
		})
	}
}
