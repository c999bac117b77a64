package main

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/rawpeer"
	"github.com/ringrelay/ringrelay/internal/servertest"
)

// -max-memory on the server process: hogs, each sending most of a maximum
// frame and never its NUL, many times the budget in all. The server's RSS
// stays within the budget plus its fixed pools, the hogs it closed are
// counted, and a pair keeps relaying throughout.
func TestBudgetRSS(t *testing.T) {
	for _, backend := range opsBackends {
		for _, loops := range []int{1, 4} {
			t.Run(fmt.Sprintf("%s/loops=%d", backend, loops), func(t *testing.T) {
				t.Parallel() // each case measures its own server process
				budgetRSS(t, backend, loops)
			})
		}
	}
}

func budgetRSS(t *testing.T, backend string, loops int) {
	opsSkipWithoutUring(t, backend)
	const (
		budget  = 32 << 20
		hogs    = 300
		partial = 900 << 10 // held in a buffer of 900 KiB to 1 MiB
		buffers = 256
		within  = 60 * time.Second
	)
	p := servertest.Start(t, servertest.Options{Args: []string{
		"-backend=" + backend, fmt.Sprintf("-loops=%d", loops), fmt.Sprintf("-buffers=%d", buffers),
		fmt.Sprintf("-max-memory=%d", budget), "-frame-timeout=1h", opsMetricsArg,
	}})
	maddr := opsMetricsAddr(t, p)
	a := rawpeer.Dial(t, p.Addr, rawpeer.Bufs{})
	b := rawpeer.Dial(t, p.Addr, rawpeer.Bufs{})
	baseline := p.RSS(t)

	// The pair, throughout; and the RSS, sampled.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var trips int
	var pairErr error
	var peak int64
	wg.Add(2)
	go func() {
		defer wg.Done()
		trips, pairErr = rawpeer.Exchange(a, b, stop, within)
	}()
	go func() {
		defer wg.Done()
		for {
			if rss, err := servertest.RSS(p.Pid()); err == nil {
				peak = max(peak, rss)
			}
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()

	frame := make([]byte, 4+partial)
	copy(frame, []byte{0, 0, 0, 1}) // to ID 1; the NUL never comes
	for i := range frame[4:] {
		frame[4+i] = 'x'
	}
	for range hogs {
		h := rawpeer.Dial(t, p.Addr, rawpeer.Bufs{})
		h.NC.SetWriteDeadline(time.Now().Add(within))
		_, _ = h.NC.Write(frame) // fails once the server closed it
	}
	const evicted = `ringrelay_connections_closed_total{reason="max_memory"}`
	m := opsWaitMetric(t, maddr, "the hogs closed, back under the budget", within, func(m opsMetrics) bool {
		return m.value[evicted] >= hogs-budget/partial && m.value["ringrelay_client_buffer_bytes"] <= budget
	})
	close(stop)
	wg.Wait()
	roundDone := trips
	if pairErr != nil {
		t.Fatalf("the pair stopped relaying after %d round trips: %v", roundDone, pairErr)
	}
	if err := a.Send(b.ID, opsPayload(nil, 0, 0, 64)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Recv(within); err != nil {
		t.Fatalf("the pair after the eviction: %v", err)
	}
	if v := m.value[evicted]; v > hogs {
		t.Errorf("%v connections closed for memory, more than the %d hogs", v, hogs)
	}

	// The bound, above the baseline (README, Memory): the budget, plus
	// what each loop may read in one pass before it checks (its receive
	// buffers, -buffers x 16 KiB at most), all of it twice over: the
	// partial frames of closed hogs are garbage until the next
	// collection, which GOGC=100 starts when the heap has doubled; the
	// receive buffers themselves, resident once written; and 16 MiB for
	// the runtime and the 302 connections' bookkeeping. Without the
	// budget the hogs alone would hold 300 x 900 KiB = 264 MiB.
	pass := int64(loops) * buffers * (16 << 10)
	bound := baseline + 2*(budget+pass) + pass + 16<<20
	t.Logf("%s/%d loops: RSS %.1f MiB at rest, peak %.1f MiB (bound %.1f MiB); %v hogs closed; %d round trips meanwhile",
		backend, loops, mib(baseline), mib(peak), mib(bound), m.value[evicted], roundDone)
	if peak > bound {
		t.Errorf("RSS peaked at %.1f MiB, over the bound of %.1f MiB", mib(peak), mib(bound))
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
