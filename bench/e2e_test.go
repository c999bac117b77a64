package bench

import (
	"context"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
)

// startRelay runs the real relay in-process on a free loopback port, on the
// goroutine that opened its loop (as io_uring requires), until the test ends.
func startRelay(t *testing.T, backend reactor.Backend) string {
	t.Helper()
	lc := reactor.DefaultConfig()
	lc.Backend = backend
	lc.Buffers = 256
	ready := make(chan error, 1)
	done := make(chan error, 1)
	var srv *relay.Server
	var addr string
	go func() {
		loop, err := reactor.Open("127.0.0.1:0", lc)
		if err != nil {
			ready <- err
			return
		}
		addr = loop.Addr().String()
		srv = relay.NewServer(loop, relay.DefaultConfig(), nil)
		ready <- nil
		done <- srv.Run()
	}()
	if err := <-ready; err != nil {
		t.Fatalf("start %s relay: %v", backend, err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("relay Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("relay did not stop")
		}
	})
	return addr
}

var shortRun = Options{Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond}

// Every workload runs clean against the real relay on both backends: the
// integrity checks pass on genuine traffic and every figure is filled in.
func TestWorkloadsAgainstRelay(t *testing.T) {
	points := []Point{
		must(NewPoint("pingpong", 3, 4, 0, 0, 64)),
		must(must(NewPoint("pingpong", 4, 4, 0, 0, 64)).Paired(PairRandom, 9)),
		must(NewPoint("flood", 0, 0, 0, 0, 1024)),
		must(must(NewPoint("flood", 4, 0, 0, 0, 512)).Paired(PairRandom, 9)),
		must(NewPoint("flood", 0, 0, 0, 0, 64<<10)),
		must(NewPoint("fanin", 0, 0, 5, 0, 256)),
		must(NewPoint("idle", 0, 0, 0, 200, 0)),
	}
	for _, backend := range []reactor.Backend{reactor.Uring, reactor.Epoll} {
		addr := startRelay(t, backend)
		for _, p := range points {
			t.Run(string(backend)+"/"+p.Name, func(t *testing.T) {
				o := shortRun
				o.ServerPID = os.Getpid() // the relay runs in this process
				// Several generator threads, whatever this machine has.
				o.Workers = 3
				f := Measure(context.Background(), addr, p, o)
				if f.Failed() {
					t.Fatalf("%d errors: %v", f.Errors, f.ErrorSamples)
				}
				if !f.ServerMeasured || f.ServerRSS <= 0 || f.Seconds <= 0 {
					t.Errorf("figures incomplete: %+v", f)
				}
				switch p.Workload {
				case "idle":
					if f.Conns != p.Conns {
						t.Errorf("held %d connections, want %d", f.Conns, p.Conns)
					}
					if f.GeneratorThreads != 0 {
						t.Errorf("idle used %d generator threads", f.GeneratorThreads)
					}
				case "pingpong":
					if f.RTT == nil || f.RTT.Count == 0 || f.RTT.P50 <= 0 || f.RTT.P99 < f.RTT.P50 || f.RTT.Max < f.RTT.P999 {
						t.Errorf("round trips not recorded sensibly: %+v", f.RTT)
					}
					fallthrough
				default:
					if f.Frames <= 0 || f.MBPerSec <= 0 {
						t.Errorf("nothing delivered: %+v", f)
					}
					if want := min(3, f.Conns); f.GeneratorThreads != want {
						t.Errorf("%d generator threads, want %d", f.GeneratorThreads, want)
					}
				}
			})
		}
	}
}

// tamperProxy forwards TCP connections to upstream and flips one byte of
// what the server sends to each client, at offset `at` of that stream.
func tamperProxy(t *testing.T, upstream string, at int) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			wg.Go(func() { io.Copy(u, c); u.Close() })
			wg.Go(func() { io.Copy(&tamperWriter{w: c, at: at}, u); c.Close() })
		}
	})
	return l.Addr().String()
}

type tamperWriter struct {
	w      io.Writer
	at, n  int
	tamper bool
}

func (t *tamperWriter) Write(p []byte) (int, error) {
	if i := t.at - t.n; !t.tamper && i >= 0 && i < len(p) {
		// A Writer must not touch the caller's buffer: flip the byte
		// in a copy.
		q := append([]byte(nil), p...)
		q[i] ^= 0x20
		t.tamper = true
		t.n += len(p)
		return t.w.Write(q)
	}
	t.n += len(p)
	return t.w.Write(p)
}

// One flipped bit anywhere in the delivered stream fails the point.
func TestCorruptionFailsThePoint(t *testing.T) {
	addr := tamperProxy(t, startRelay(t, reactor.Epoll), 20000)
	for _, p := range []Point{
		must(NewPoint("flood", 0, 0, 0, 0, 1024)),
		must(NewPoint("pingpong", 1, 8, 0, 0, 64)),
	} {
		f := Measure(context.Background(), addr, p, shortRun)
		if !f.Failed() {
			t.Fatalf("%s: a corrupted byte went unnoticed: %+v", p.Name, f)
		}
		if !strings.Contains(strings.Join(f.ErrorSamples, "\n"), "payload") {
			t.Errorf("%s: error does not say what was wrong: %v", p.Name, f.ErrorSamples)
		}
	}
}

// A server that is not there is an error, not an empty success.
func TestUnreachableServerFails(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	f := Measure(context.Background(), addr, must(NewPoint("flood", 0, 0, 0, 0, 64)), shortRun)
	if !f.Failed() {
		t.Fatalf("measuring a closed port succeeded: %+v", f)
	}
}
