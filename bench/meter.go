package bench

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// meter is what the generator's workers report into. Counters are updated
// once per wait for I/O, not per frame; round-trip times are recorded by each
// worker while the measured window is open and merged here at the end.
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

func newMeter() *meter { return &meter{rtt: newRTTHistogram()} }

// newRTTHistogram covers 1 ns .. 100 s at three significant digits.
func newRTTHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(1, 100e9, 3) }

func (m *meter) delivered(frames, bytes int64) {
	if frames > 0 {
		m.frames.Add(frames)
		m.bytes.Add(bytes)
	}
}

// mergeRTT adds a worker's round trips once it has stopped.
func (m *meter) mergeRTT(h *hdrhistogram.Histogram) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rtt.Merge(h)
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
