package relay

import (
	"sync/atomic"
	"time"
)

// PassTimes is how long a loop's passes take: from Poll's return to the
// next Poll (its events, the hops, the timers and an operator's request
// such as /connz). A long pass delays every connection of the loop, so
// this is the measure of a stall. The loop reads the clock once more per
// pass for it and writes the atomics directly: a pass is far rarer than a
// frame under load.
type PassTimes struct {
	// Buckets[i] counts the passes that took at most PassBounds[i] (and
	// more than the bound before); the last bucket counts the rest.
	Buckets [len(PassBounds) + 1]atomic.Uint64
	Sum     atomic.Uint64 // nanoseconds, all passes together
	Longest atomic.Int64  // nanoseconds, the longest pass since the loop started
}

// PassBounds are the upper bounds of the PassTimes buckets.
var PassBounds = [...]time.Duration{
	10 * time.Microsecond, 25 * time.Microsecond, 50 * time.Microsecond,
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
}

func (t *PassTimes) observe(d time.Duration) {
	i := 0
	for i < len(PassBounds) && d > PassBounds[i] {
		i++
	}
	t.Buckets[i].Add(1)
	t.Sum.Add(uint64(d))
	if int64(d) > t.Longest.Load() {
		t.Longest.Store(int64(d)) // only this loop writes it
	}
}
