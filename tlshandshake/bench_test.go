package tlshandshake

import (
	"crypto/tls"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkHandshake measures one full handshake over loopback, client
// and server in this process (ECDSA P-256, TLS 1.3), one at a time:
// "pool" through Serve, the record-bounded reader and the descriptor
// handover; "crypto-tls" is the same handshake straight on crypto/tls, the
// floor the pool's own costs sit on.
func BenchmarkHandshake(b *testing.B) {
	p := newPKI(b)
	ccfg := p.clientConfig()
	dial := func(addr string) {
		c, err := tls.Dial("tcp", addr, ccfg)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}

	b.Run("pool", func(b *testing.B) {
		store, err := LoadCerts(p.files, nil)
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{}, 1)
		pool, err := NewPool(store, Config{Deliver: func(c Conn) { unix.Close(c.Fd); done <- struct{}{} }})
		if err != nil {
			b.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go pool.Serve(ln)
		defer pool.Close()
		b.ResetTimer()
		for range b.N {
			dial(ln.Addr().String())
			<-done
		}
	})

	b.Run("crypto-tls", func(b *testing.B) {
		cert, err := tls.X509KeyPair(p.server.certPEM, p.server.keyPEM)
		if err != nil {
			b.Fatal(err)
		}
		scfg := &tls.Config{MinVersion: tls.VersionTLS13, SessionTicketsDisabled: true, Certificates: []tls.Certificate{cert}}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		done := make(chan error, 1)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					err := tls.Server(c, scfg).Handshake()
					c.Close()
					done <- err
				}()
			}
		}()
		b.ResetTimer()
		for range b.N {
			dial(ln.Addr().String())
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
	})
}
