package tlshandshake

import (
	"crypto/tls"
	"encoding/binary"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/ring"
)

// TestLoopAdopts is the handover the server will do, on both backends: a
// worker's Deliver queues the Conn and wakes a loop without a listener;
// the loop adopts the socket on its own goroutine, receives the client's
// first record (sent in the same write as its Finished) as a Received
// event, opens it with the client secret, and answers with a record
// sealed under the server secret, which the crypto/tls client reads.
func TestLoopAdopts(t *testing.T) {
	for _, b := range []reactor.Backend{reactor.Uring, reactor.Epoll} {
		t.Run(string(b), func(t *testing.T) {
			if b == reactor.Uring {
				if err := ring.Probe().Usable(); err != nil {
					t.Skipf("io_uring unusable on this host: %v", err) // as reactor's own tests
				}
			}
			testLoopAdopts(t, b)
		})
	}
}

func testLoopAdopts(t *testing.T, backend reactor.Backend) {
	p := newPKI(t)
	store, err := LoadCerts(p.files, nil)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		inbox []Conn
		loop  = make(chan reactor.Loop, 1)
		stop  = make(chan struct{})
		fail  = make(chan error, 1)
	)
	go func() { // the loop's goroutine
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cfg := reactor.DefaultConfig()
		cfg.Backend = backend
		l, err := reactor.Open("", cfg)
		if err != nil {
			fail <- err
			close(loop)
			return
		}
		defer l.Close()
		loop <- l
		var adopted []Conn // in Adopt order: a loop without a listener opens only these, in that order
		tlsOf := map[*reactor.Conn]Conn{}
		in := map[*reactor.Conn][]byte{}
		events := make([]reactor.Event, 16)
		for {
			n, err := l.Poll(events, -1)
			if err != nil {
				fail <- err
				return
			}
			for _, ev := range events[:n] {
				switch ev.Kind {
				case reactor.Woken:
					select {
					case <-stop:
						return
					default:
					}
					mu.Lock()
					for _, c := range inbox {
						l.Adopt(c.Fd)
						adopted = append(adopted, c)
					}
					inbox = inbox[:0]
					mu.Unlock()
				case reactor.Opened:
					tlsOf[ev.Conn], adopted = adopted[0], adopted[1:]
				case reactor.Received:
					b := append(in[ev.Conn], ev.Data...)
					if len(b) < recordHeaderLen || len(b) < recordHeaderLen+int(binary.BigEndian.Uint16(b[3:])) {
						in[ev.Conn] = b
						continue
					}
					c := tlsOf[ev.Conn]
					typ, plain := openRecord(t, c.State.CipherSuite, c.ClientSecret, b)
					if typ != 23 || string(plain) != "ping" {
						t.Errorf("loop opened type %d %q, want application data \"ping\"", typ, plain)
					}
					ev.Conn.Send(sealRecord(t, c.State.CipherSuite, c.ServerSecret, []byte("pong")))
				}
			}
		}
	}()
	l := <-loop
	if l == nil {
		t.Fatal(<-fail)
	}
	pool, err := NewPool(store, Config{Deliver: func(c Conn) {
		mu.Lock()
		inbox = append(inbox, c)
		mu.Unlock()
		l.Wake()
	}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- pool.Serve(ln) }()
	defer func() {
		pool.Close()
		<-served
		close(stop)
		l.Wake()
	}()

	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	cork := &corkedConn{Conn: raw}
	c := tls.Client(cork, p.clientConfig())
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if err := cork.flush(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(patience))
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	select {
	case err := <-fail:
		t.Fatalf("loop: %v", err)
	default:
	}
	if err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("client read %q, %v; want the loop's \"pong\"", buf[:n], err)
	}
}
