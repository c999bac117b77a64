package servertest

import "time"

// WaitFor polls cond until it holds, and fails the test if it still does
// not after within. Tests wait on an event this way (a counter reaches N,
// a peer is up) under one generous deadline rather than sleeping for a
// guessed time: on a loaded machine the wait is longer, not a failure.
// cond must read whatever it checks anew on every call.
func WaitFor(t TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
