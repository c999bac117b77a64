package relay_test

// The chaos engine in rounds for as long as RINGRELAY_SOAK says, with the
// process's memory held to a bound derived from the limits.

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
	"unsafe"

	"github.com/ringrelay/ringrelay/internal/servertest"
)

// TestSoak runs the chaos engine in rounds against one server per backend
// for RINGRELAY_SOAK (a duration, per backend; `make soak` sets it), and 1s
// when it is unset, so that it always runs. Each round ends with every
// connection closed and the oracle, descriptor and goroutine checks; the
// server stays up across rounds. It reports peak Go heap and process RSS
// and holds the RSS to a bound derived from the limits.
func TestSoak(t *testing.T) {
	dur := time.Second
	if s := os.Getenv("RINGRELAY_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("RINGRELAY_SOAK=%q: want a positive duration such as 10m", s)
		}
		dur = d
	}
	base := chaosBaseSeed(t)
	t.Logf("soak seed %d (replay with RINGRELAY_CHAOS_SEED=%d), %v per backend", base, base, dur)
	for _, backend := range backends {
		t.Run(string(backend), func(t *testing.T) {
			ts := startServer(t, backend, chaosEdit)
			runtime.GC()
			debug.FreeOSMemory()
			rssBase, err := servertest.RSS(os.Getpid())
			if err != nil {
				t.Fatal(err)
			}
			peak := watchMemory(t)

			var total chaosReport
			rounds := 0
			for end := time.Now().Add(dur); rounds == 0 || time.Until(end) > 0; {
				traffic := min(10*time.Second, max(time.Until(end), time.Second))
				mark := markProcess(t)
				total.add(runChaos(t, ts, backend, base, rounds, traffic))
				mark.settle(t, fmt.Sprintf("%s round %d over", backend, rounds))
				rounds++
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				rss, _ := servertest.RSS(os.Getpid())
				t.Logf("%s: after round %d: Go heap in use %.1f MiB, RSS %.1f MiB", backend, rounds, mib(int64(ms.HeapInuse)), mib(rss))
				if t.Failed() {
					break
				}
			}
			heapPeak, rssPeak := peak()

			limit := chaosRSSBound(total.records)
			t.Logf("%s: %d rounds: %s", backend, rounds, total)
			t.Logf("%s: peak Go heap in use %.1f MiB; peak RSS %.1f MiB (%.1f MiB before, growth %.1f MiB, bound %.1f MiB)",
				backend, mib(heapPeak), mib(rssPeak), mib(rssBase), mib(rssPeak-rssBase), mib(limit))
			if rssPeak > rssBase+limit {
				t.Errorf("[%s, RINGRELAY_CHAOS_SEED=%d] peak RSS %.1f MiB grew %.1f MiB over the %.1f MiB before the soak, beyond the bound of %.1f MiB",
					backend, base, mib(rssPeak), mib(rssPeak-rssBase), mib(rssBase), mib(limit))
			}
		})
	}
}

// chaosRSSBound is how far the process may grow during a soak whose
// largest round kept records oracle records.
//
// What the limits let the relay hold, per connection: up to MaxQueue of
// queued output, plus what the read that crossed the limit carried (at
// most a frame being completed, MaxFrame+1, and the rest of one 16 KiB
// receive buffer); both output buffers of a connection (the one in flight
// and the one filling) keep their capacity while traffic flows, so that
// counts twice; and a partial frame of up to MaxFrame+5 in the parser.
// The receive buffers are fixed: 256 x 16 KiB here.
//
// The clients live in the same process: each has a 64 KiB read buffer, up
// to MaxFrame more for a payload longer than that, and one batch of at
// most chaosMaxBatch plus a frame being written. The oracle keeps one
// record per frame (twice that while its slice grows) and the payload
// codec's filler template (MaxFrame and 4 KiB).
//
// Go's collector lets the heap reach twice the live data (GOGC=100). The
// race detector keeps two bytes of shadow per byte of memory touched plus
// metadata: call it four times. 64 MiB of slack covers the runtime,
// goroutine stacks and the test binary itself.
func chaosRSSBound(records int64) int64 {
	const conns = chaosClients
	perConn := 2*(chaosMaxQueue+chaosMaxFrame+1+16<<10) + chaosMaxFrame + 5
	server := int64(conns*perConn + 256*16<<10)
	clients := int64(conns * (64<<10 + chaosMaxFrame + chaosMaxBatch + chaosMaxFrame))
	oracle := 2*records*int64(unsafe.Sizeof(chaosRec{})) + 2*chaosMaxFrame
	factor := int64(2)
	if raceEnabled() {
		factor *= 4
	}
	return factor*(server+clients+oracle) + 64<<20
}
