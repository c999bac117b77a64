package relay_test

// Process memory as the soak and slow-loris tests measure it.

import (
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/servertest"
)

// raceEnabled reports whether the test binary was built with -race, whose
// shadow memory the bounds allow for.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

// mib converts bytes to MiB for logs.
func mib(n int64) float64 { return float64(n) / (1 << 20) }

// watchMemory samples the Go heap in use and the process RSS every
// 100ms until the returned function is called, which stops the sampler
// and returns both peaks.
func watchMemory(t testing.TB) (peaks func() (heap, rss int64)) {
	stop := make(chan struct{})
	done := make(chan struct{})
	var heap, rss int64
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap = max(heap, int64(ms.HeapInuse))
		if n, err := servertest.RSS(os.Getpid()); err == nil {
			rss = max(rss, n)
		}
	}
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	var once sync.Once
	peaks = func() (int64, int64) {
		once.Do(func() {
			close(stop)
			<-done
			sample()
		})
		return heap, rss
	}
	t.Cleanup(func() { peaks() })
	return peaks
}
