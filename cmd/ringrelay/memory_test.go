package main

// Memory goes back after a spike (relay/idle.go): a burst of queued output
// takes the server's RSS far above where it started; once the traffic has
// stopped, the RSS must come back within twice that figure.

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/rawpeer"
	"github.com/ringrelay/ringrelay/internal/servertest"
)

// After the burst the clients either all leave (the loops have no
// connection left) or all stay, idle (the loops tick on with them).
func TestOpsMemoryBackAfterBurst(t *testing.T) {
	for _, backend := range opsBackends {
		for _, loops := range []int{1, 2} {
			for _, stay := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/loops=%d/stay=%v", backend, loops, stay), func(t *testing.T) {
					t.Parallel() // each case measures its own server process
					opsMemoryBackAfterBurst(t, backend, loops, stay)
				})
			}
		}
	}
}

func opsMemoryBackAfterBurst(t *testing.T, backend string, loops int, stay bool) {
	opsSkipWithoutUring(t, backend)
	const (
		pairs = 16
		// Each sender writes perPair bytes to a receiver that reads none
		// of it yet: under -max-queue, so all of it is taken, and what the
		// kernel's buffers do not hold waits in the server's queues.
		perPair  = 8 << 20
		maxQueue = 2 * perPair
		// The burst must take RSS this far over the bound before it ends,
		// so that a server that keeps what it took fails by a wide margin.
		over = 32 << 20
		// Generous: the server trims after 2 s of quiet and a tick; a
		// loaded machine may take far longer to get there.
		within = 60 * time.Second
		// Large frames fill the queues with few writes: the test is about
		// bytes held, and every frame costs this process CPU (race
		// detector) to write and to check in order.
		burstFrame = 32 << 10
		frames     = perPair / burstFrame
	)
	p := servertest.Start(t, servertest.Options{Args: []string{
		"-backend=" + backend, "-loops=" + strconv.Itoa(loops), "-max-queue=" + strconv.Itoa(maxQueue),
		"-log-level=debug", // for the line that says memory went back
		// The receivers stop reading for a while: not stuck, for this test.
		"-write-timeout=10m",
	}})
	mib := func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
	before := p.RSS(t)
	bound := 2 * before

	// The burst, then silence: every sender writes its frames and stops.
	recvs := make([]*rawpeer.Peer, pairs)
	senders := make([]*rawpeer.Peer, pairs)
	for i := range pairs {
		recvs[i] = rawpeer.Dial(t, p.Addr, rawpeer.Bufs{})
		senders[i] = rawpeer.Dial(t, p.Addr, rawpeer.Bufs{})
	}
	sent := make(chan error, pairs)
	for i := range pairs {
		go func() {
			var payload []byte
			for seq := range frames {
				payload = opsPayload(payload, 0, seq, burstFrame)
				if err := senders[i].Send(recvs[i].ID, payload); err != nil {
					sent <- fmt.Errorf("sender %d, frame %d: %w", i, seq, err)
					return
				}
			}
			sent <- nil
		}()
	}
	var peak int64
	for range pairs {
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
	}
	servertest.WaitFor(t, "the server to take every frame", within, func() bool {
		peak = max(peak, p.RSS(t))
		return peak >= bound+over
	})

	// The receivers read nothing until the server has given memory back
	// once, with every queue full: it went quiet, nothing moving. Then
	// only the queues move: the server must see that as activity, and
	// give back again what they held once they have drained, though
	// draining allocates next to nothing.
	waitLog(t, p, "memory given back", within)

	// Every receiver reads everything, in order, then every connection
	// closes, or stays open and idle.
	errs := make(chan error, pairs)
	for i := range pairs {
		o := &opsOrder{next: make([]int, 1)}
		go func() { errs <- opsDrain(recvs[i], o, func() int { return frames }) }()
	}
	for range pairs {
		if err := <-errs; err != nil {
			t.Fatalf("receiver: %v", err)
		}
	}
	peak = max(peak, p.RSS(t))
	for i := range pairs {
		if !stay {
			recvs[i].NC.Close()
			senders[i].NC.Close()
		}
	}
	ended := time.Now()

	rss := p.RSS(t)
	for deadline := ended.Add(within); rss > bound; rss = p.RSS(t) {
		if time.Now().After(deadline) {
			t.Fatalf("%s, %d loops, clients stay %v: RSS %s before the burst, %s at its peak, still %s %v after it ended; want at most %s (twice the start)",
				backend, loops, stay, mib(before), mib(peak), mib(rss), within, mib(bound))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%s, %d loops, clients stay %v: RSS %s before the burst, %s at its peak, %s within %v after it ended (bound %s)",
		backend, loops, stay, mib(before), mib(peak), mib(rss), time.Since(ended).Round(100*time.Millisecond), mib(bound))

	// The server still relays with everything it gave back: a new pair,
	// and the pairs that stayed.
	a := rawpeer.Dial(t, p.Addr, rawpeer.Bufs{})
	b := rawpeer.Dial(t, p.Addr, rawpeer.Bufs{})
	ps := [][2]*rawpeer.Peer{{a, b}}
	if stay {
		for i := range pairs {
			ps = append(ps, [2]*rawpeer.Peer{senders[i], recvs[i]})
		}
	}
	for _, pr := range ps {
		if err := pr[0].Send(pr[1].ID, []byte("after the trim")); err != nil {
			t.Fatal(err)
		}
		if got, err := pr[1].Recv(within); err != nil || string(got) != "after the trim" {
			t.Fatalf("after the memory went back: got %q, %v", got, err)
		}
	}
}
