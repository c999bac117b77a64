// Package ring is a thin, Go-shaped layer over io_uring (through
// github.com/pawelgaczynski/giouring). It is the only package of ringrelay
// that imports giouring, and it knows nothing of the relay protocol.
//
// It owns:
//   - ring setup with the best task-running mode the kernel offers
//     (SINGLE_ISSUER|DEFER_TASKRUN, else COOP_TASKRUN) and a completion
//     queue four times the submission queue;
//   - the probe that says whether io_uring can be used here and, when it
//     cannot, why (a typed *UnavailableError the backend selection reports);
//   - the provided buffer ring: one allocation, registered once, its
//     entries written here (giouring's helper breaks past 4096 entries),
//     buffers taken and given back in ring order, so that the buffers of
//     one recv bundle lie next to each other in memory (bufring.go);
//   - submission helpers (multishot accept, multishot recv with buffer
//     select and, from Linux 6.15, bundles; send, read, close, cancel)
//     that flush the submission queue when it is full instead of failing;
//   - the hot path without giouring (fast.go): completions read straight
//     from the ring into a caller-owned slice, io_uring_enter through a
//     registered ring descriptor, non-blocking enters without the
//     runtime's syscall bookkeeping, none at all when there is nothing to
//     submit and the kernel flags no deferred work;
//   - a short adaptive spin on the completion queue before a blocking
//     wait, for latency-bound loops (spin.go);
//   - the user_data codec: operation, connection slot and generation packed
//     in 64 bits, never a Go pointer.
//
// A Ring is used by one goroutine, locked to its OS thread
// (runtime.LockOSThread), from New to Close: SINGLE_ISSUER rejects
// submissions from any other thread, and the registered ring descriptor
// is only valid on the thread that registered it.
//
// giouring's PrepareTimeout and PrepareSendZC pass the address of a Go
// variable instead of the data, so neither is used.
package ring
