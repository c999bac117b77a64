package main

// Lame duck (SIGUSR2, relay/lameduck.go): the listener closes at once, the
// open connections keep relaying, then close spread over the window, and
// the process exits 0.

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/natstest"
	"github.com/ringrelay/ringrelay/internal/rawpeer"
	"github.com/ringrelay/ringrelay/internal/servertest"
)

func TestOpsLameDuck(t *testing.T) {
	for _, backend := range opsBackends {
		for _, loops := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/loops=%d", backend, loops), func(t *testing.T) {
				t.Parallel() // the cases wait on timers, each with a server of its own
				opsLameDuck(t, backend, loops)
			})
		}
	}
}

// duckConn is one client connection with a reader that forwards what it
// reads: payloads, then the error that ended the stream.
type duckConn struct {
	*rawpeer.Peer
	frames chan string
	done   chan struct{} // closed when the stream ended, with err
	err    error
}

func opsLameDuck(t *testing.T, backend string, loops int) {
	opsSkipWithoutUring(t, backend)
	const (
		conns = 20
		// The grace only has to cover one frame each way per pair; the
		// window spreads 20 closes about 300 ms apart.
		grace  = 2 * time.Second
		window = 6 * time.Second
		slack  = 60 * time.Second
	)
	p := servertest.Start(t, servertest.Options{Args: []string{
		"-backend=" + backend, "-loops=" + strconv.Itoa(loops),
		"-lame-duck-grace=" + grace.String(), "-lame-duck-duration=" + window.String(),
	}})
	cs := make([]*duckConn, conns)
	ends := make(chan int, conns) // index of each connection whose stream ended, in order
	for i := range cs {
		c := &duckConn{Peer: rawpeer.Dial(t, p.Addr, rawpeer.Bufs{}), frames: make(chan string, 16), done: make(chan struct{})}
		cs[i] = c
		go func() {
			for {
				b, err := c.Recv(2 * slack)
				if err != nil {
					c.err = err
					close(c.done)
					ends <- i
					return
				}
				c.frames <- string(b)
			}
		}()
	}
	// relay sends one frame from a to b and reports whether it arrived
	// (false: one of them was closed meanwhile).
	relay := func(a, b *duckConn, msg string) bool {
		if a.Send(b.ID, []byte(msg)) != nil {
			return false
		}
		select {
		case got := <-b.frames:
			if got != msg {
				t.Fatalf("got %q, want %q", got, msg)
			}
			return true
		case <-b.done:
			return false
		case <-time.After(slack):
			t.Fatalf("frame %q not delivered within %v", msg, slack)
		}
		return false
	}
	for i := 0; i < conns; i += 2 {
		if !relay(cs[i], cs[i+1], "before") || !relay(cs[i+1], cs[i], "before") {
			t.Fatalf("pair %d does not relay before SIGUSR2", i/2)
		}
	}

	p.Signal(t, syscall.SIGUSR2)
	waitLog(t, p, "lame duck: listener closed", slack)

	// No new connection: refused, or closed without an ID.
	if nc, err := net.DialTimeout("tcp", p.Addr, 5*time.Second); err == nil {
		_, err := rawpeer.ReadID(nc, 5*time.Second)
		nc.Close()
		if err == nil {
			t.Fatalf("a connection made after SIGUSR2 was given an ID")
		}
	}
	// The pairs keep relaying, both ways.
	for i := 0; i < conns; i += 2 {
		if !relay(cs[i], cs[i+1], "during the grace") || !relay(cs[i+1], cs[i], "during the grace") {
			t.Fatalf("pair %d stopped relaying after SIGUSR2, within the %v grace", i/2, grace)
		}
	}

	// Spread: once the first connection has closed, a pair whose two
	// ends are both still open still relays. A server that closed all at
	// once leaves no such pair.
	closed := make([]bool, conns)
	first := <-ends
	closed[first] = true
	spread := false
	for i := 0; i < conns && !spread; i += 2 {
		for more := true; more; {
			select {
			case k := <-ends:
				closed[k] = true
			default:
				more = false
			}
		}
		if closed[i] || closed[i+1] {
			continue
		}
		spread = relay(cs[i], cs[i+1], "after the first close")
	}
	if !spread {
		t.Fatalf("no pair relayed after the first lame-duck close: the connections closed all at once")
	}

	// Every connection closes, and the process exits 0.
	n := 0
	for _, c := range closed {
		if c {
			n++
		}
	}
	for deadline := time.After(grace + window + slack); n < conns; n++ {
		select {
		case k := <-ends:
			closed[k] = true
		case <-deadline:
			t.Fatalf("%d of %d connections still open %v after the window", conns-n, conns, slack)
		}
	}
	for i, c := range cs {
		<-c.done
		if os.IsTimeout(c.err) {
			t.Errorf("connection %d ended with %v, want a close by the server", i, c.err)
		}
	}
	if code := p.Wait(t, slack); code != 0 {
		t.Fatalf("exit status %d after the lame duck, want 0\n%s", code, p.Logs())
	}
	if !strings.Contains(p.Logs(), "lame duck: every connection closed") {
		t.Errorf("no log line for the end of the lame duck:\n%s", p.Logs())
	}
}

// waitLog waits until the process has logged a line containing what.
func waitLog(t *testing.T, p *servertest.Proc, what string, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); !strings.Contains(p.Logs(), what); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) || p.Exited() {
			t.Fatalf("no %q in the log within %v:\n%s", what, within, p.Logs())
		}
	}
}

// With -cluster, a node in lame duck still serves its remaining clients
// from the other nodes during the grace; once it has left, the other node
// takes it for down and stops routing to it: a frame for its ID is dropped
// on the sender's node as node_down, not published.
func TestClusterLameDuck(t *testing.T) {
	t.Parallel()
	url := natstest.Start(t, 1, natstest.Options{MaxPayload: 2 << 20}).URL(0)
	maddr := make([]string, 2)
	var nodes []*servertest.Proc
	for k := range 2 {
		nodes = append(nodes, servertest.Launch(t, servertest.Options{Args: []string{
			"-cluster=" + url, "-node=" + strconv.Itoa(k), "-node-bits=2", "-cluster-name=rrduck",
			opsMetricsArg, "-backend=epoll", "-lame-duck-grace=5s", "-lame-duck-duration=1s",
		}}))
		maddr[k] = opsMetricsAddr(t, nodes[k])
	}
	up1 := `ringrelay_cluster_node_up{node="1"}`
	for k := range nodes {
		up := `ringrelay_cluster_node_up{node="` + strconv.Itoa(1-k) + `"}`
		opsWaitMetric(t, maddr[k], "node "+strconv.Itoa(k)+" to see the other up", opsPatience, func(m opsMetrics) bool {
			return m.value[up] == 1
		})
	}
	a := rawpeer.Dial(t, nodes[0].Addr, rawpeer.Bufs{})
	b := rawpeer.Dial(t, nodes[1].Addr, rawpeer.Bufs{})

	nodes[1].Signal(t, syscall.SIGUSR2)
	waitLog(t, nodes[1], "lame duck: listener closed", opsPatience)
	// The grace (5 s) is far longer than this takes: b is still served.
	if err := a.Send(b.ID, []byte("to a lame duck")); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Recv(opsPatience); err != nil || string(got) != "to a lame duck" {
		t.Fatalf("during the grace: b got %q, %v", got, err)
	}
	if m := opsScrape(t, maddr[0]); m.value[up1] != 1 {
		t.Fatalf("node 0 took node 1 for down during its grace")
	}
	// The lame duck runs its course: b is closed, node 1 leaves, exit 0.
	if _, err := b.Recv(30 * time.Second); err == nil || os.IsTimeout(err) {
		t.Fatalf("b not closed by the lame duck: %v", err)
	}
	if code := nodes[1].Wait(t, 30*time.Second); code != 0 {
		t.Fatalf("node 1 exited %d\n%s", code, nodes[1].Logs())
	}
	opsWaitMetric(t, maddr[0], "node 0 to take node 1 for down", opsPatience, func(m opsMetrics) bool {
		return m.value[up1] == 0
	})
	if err := a.Send(b.ID, []byte("to a node that left")); err != nil {
		t.Fatal(err)
	}
	opsWaitMetric(t, maddr[0], "the frame for node 1 dropped as node_down", opsPatience, func(m opsMetrics) bool {
		return m.value[`ringrelay_cluster_frames_dropped_total{node="1",reason="node_down"}`] == 1
	})
	nodes[0].Signal(t, syscall.SIGTERM)
	if code := nodes[0].Wait(t, 15*time.Second); code != 0 {
		t.Errorf("node 0 exited %d\n%s", code, nodes[0].Logs())
	}
}
