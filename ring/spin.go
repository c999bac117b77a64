package ring

import (
	"sync/atomic"
	"time"
)

// Before a blocking wait, Submit may spin on the completion queue for a
// short while. Blocking costs a sleep and a wake-up (an interrupt to this
// CPU, two context switches: several microseconds); when the next
// completion is only tens of microseconds away, watching the queue is
// cheaper and answers sooner. When it is further away, the spin is wasted,
// so it adapts: each completion caught while spinning raises a score, each
// spin that runs out lowers it steeply, and at zero the loop stops
// spinning and only probes once every spinProbe blocking waits. An idle
// loop therefore spins at most spinMax once every spinProbe waits.
const (
	spinMax   = 50 * time.Microsecond
	spinHit   = 1  // score added when a spin catches a completion
	spinMiss  = 8  // score taken when a spin runs out
	spinCap   = 16 // highest score
	spinProbe = 64 // blocking waits between probes while not spinning
	spinBatch = 4  // spin only after a batch of at most this many completions
)

type spinner struct {
	score  int // spin while > 0
	waits  int // blocking waits since spinning stopped
	reaped int // completions reaped since the last wait
}

// spin hands over what is queued and watches the completion queue for up
// to spinMax (never longer than timeout, when there is one). It reports
// whether completions are ready, in which case the caller must not block.
// submit is updated to what the kernel has not taken yet.
func (r *Ring) spin(submit *uint32, timeout time.Duration) bool {
	s := &r.spinner
	batch := s.reaped
	s.reaped = 0
	if batch > spinBatch {
		// A loop that finds many completions per wait is bound by its
		// throughput, not by wake-up latency: spinning would only burn
		// the time it has to spare.
		return false
	}
	if s.score <= 0 {
		if s.waits++; s.waits < spinProbe {
			return false
		}
		s.waits = 0
	}
	f := &r.f
	if *submit > 0 {
		if n, err := f.enter(*submit, 0, enterGetEvents, nil, 0); err == nil {
			*submit -= uint32(n)
		}
	}
	limit := spinMax
	if timeout > 0 {
		limit = min(limit, timeout)
	}
	start := time.Now()
	for {
		if f.taskrun && atomic.LoadUint32(f.sqFlags)&sqTaskrun != 0 {
			// Deferred work: running it posts its completions.
			_, _ = f.enter(0, 0, enterGetEvents, nil, 0)
		}
		if f.ready() > 0 {
			s.score = min(s.score+spinHit, spinCap)
			return true
		}
		if time.Since(start) >= limit {
			s.score = max(s.score-spinMiss, 0)
			return false
		}
	}
}
