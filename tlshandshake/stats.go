package tlshandshake

import (
	"sync/atomic"
	"time"
)

// durationBounds are the upper bounds, in seconds, of the handshake
// duration histogram: from a loopback handshake (well under a
// millisecond of crypto) to past the default timeout.
var durationBounds = [...]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// DurationBuckets returns the upper bounds, in seconds, of the handshake
// duration histogram (Snapshot.DurationCounts).
func DurationBuckets() []float64 { return append([]float64(nil), durationBounds[:]...) }

// stats are the pool's counters, written by the workers and read by
// Snapshot from any goroutine.
type stats struct {
	handshakes [NumResults]atomic.Uint64
	inProgress atomic.Int64
	peak       atomic.Int64

	// Durations of successful handshakes: counts per bucket (not
	// cumulative; the last is +Inf) and their sum in nanoseconds.
	buckets [len(durationBounds) + 1]atomic.Uint64
	sumNs   atomic.Int64
}

func (s *stats) begin() {
	n := s.inProgress.Add(1)
	for {
		p := s.peak.Load()
		if n <= p || s.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

// record counts a finished handshake; its slot is freed (inProgress)
// once the worker is done.
func (s *stats) record(r Result, d time.Duration) {
	s.handshakes[r].Add(1)
	if r != OK {
		return
	}
	sec := d.Seconds()
	i := 0
	for i < len(durationBounds) && sec > durationBounds[i] {
		i++
	}
	s.buckets[i].Add(1)
	s.sumNs.Add(int64(d))
}

// Snapshot is what the pool and its certificate store have counted, for
// metrics (metrics.TLSCollector) and tests.
type Snapshot struct {
	// Handshakes counts finished handshakes by Result.
	Handshakes [NumResults]uint64
	// InProgress is the number of handshakes running now; Peak the most
	// that ever ran at once (never more than Config.MaxHandshakes).
	InProgress, Peak int64
	// DurationCounts[i] counts successful handshakes that took at most
	// DurationBuckets()[i] seconds and more than the bucket before; the
	// last entry counts those over every bound. DurationSum is their
	// total in seconds.
	DurationCounts []uint64
	DurationSum    float64
	// CertNotAfter is when the certificate new handshakes present expires.
	CertNotAfter time.Time
	// ReloadsOK and ReloadsFailed count CertStore.Reload calls.
	ReloadsOK, ReloadsFailed uint64
}
