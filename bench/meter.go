package bench

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// meter is what the workload goroutines report into. Counters are updated
// once per chunk read, not per frame, and round-trip times are recorded only
// while the measured window is open.
type meter struct {
	frames    atomic.Int64 // verified frames delivered to a receiver
	bytes     atomic.Int64 // their payload bytes
	measuring atomic.Bool
	stopping  atomic.Bool

	mu       sync.Mutex
	rtt      *hdrhistogram.Histogram // nanoseconds
	errCount int
	errs     []string
}

const maxErrorSamples = 8

// epoch anchors nanotime; time.Since reads the monotonic clock.
var epoch = time.Now()

func nanotime() int64 { return int64(time.Since(epoch)) }

func newMeter() *meter {
	// 1 ns .. 100 s at three significant digits.
	return &meter{rtt: hdrhistogram.New(1, 100e9, 3)}
}

func (m *meter) delivered(frames, bytes int) {
	if frames > 0 {
		m.frames.Add(int64(frames))
		m.bytes.Add(int64(bytes))
	}
}

func (m *meter) recordRTT(ns []int64) {
	if len(ns) == 0 || !m.measuring.Load() {
		return
	}
	m.mu.Lock()
	for _, v := range ns {
		_ = m.rtt.RecordValue(max(v, 1)) // out of range only past 100 s
	}
	m.mu.Unlock()
}

// fail records an integrity violation or any other error that makes the
// point invalid.
func (m *meter) fail(format string, args ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.errCount++
	if len(m.errs) < maxErrorSamples {
		m.errs = append(m.errs, fmt.Sprintf(format, args...))
	}
}

// ioError records a read or write error, unless it comes from our own
// closing of the connections at the end of a point.
func (m *meter) ioError(what string, err error) {
	if m.stopping.Load() {
		return
	}
	m.fail("%s: %v", what, err)
}

func (m *meter) errors() (int, []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.errCount, append([]string(nil), m.errs...)
}
