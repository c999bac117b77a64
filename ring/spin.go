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
// loop therefore spins at most that maximum once every spinProbe waits.
const (
	// DefaultSpin is how long a wait may spin by default (SetSpin).
	DefaultSpin = 50 * time.Microsecond
	spinHit     = 1  // score added when a spin catches a completion
	spinMiss    = 8  // score taken when a spin runs out
	spinCap     = 16 // highest score
	spinProbe   = 64 // blocking waits between probes while not spinning
	spinBatch   = 4  // spin only after a batch of at most this many completions
)

type spinner struct {
	max    time.Duration // longest spin; 0: never spin
	held   bool          // the owner holds spinning off for now (HoldSpin)
	score  int           // spin while > 0
	waits  int           // blocking waits since spinning stopped
	reaped int           // completions reaped since the last wait
}

// SetSpin sets how long a wait may watch the completion queue before it
// blocks (DefaultSpin unless set; 0 never spins). Spinning answers sooner
// when the next completion is a few microseconds away, and burns that
// time when it is not: a server that is rarely idle for long, or whose
// CPU is shared, may prefer 0.
func (r *Ring) SetSpin(d time.Duration) { r.spinner.max = max(d, 0) }

// HoldSpin stops spinning while on is true (waits block at once) and lets
// it resume when on is false. The owner knows what the ring does not: the
// reactor holds it off while many connections are active (see its wait).
func (r *Ring) HoldSpin(on bool) { r.spinner.held = on }

// spin hands over what is queued and watches the completion queue for up
// to its maximum (never longer than timeout, when there is one). It reports
// whether completions are ready, in which case the caller must not block.
// submit is updated to what the kernel has not taken yet.
func (r *Ring) spin(submit *uint32, timeout time.Duration) bool {
	s := &r.spinner
	batch := s.reaped
	s.reaped = 0
	if s.max == 0 || s.held {
		return false
	}
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
	limit := s.max
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
