// Package shard is what N relay loops in one process share: the
// loop-to-loop mesh that carries frames between them, the doorbell that
// wakes a sleeping loop, the rule that tells which loop owns a connection
// ID, and the -loops / -cpus helpers that decide how many loops run where.
// It knows nothing of sockets, io_uring or the protocol beyond "a frame is
// a destination ID and a payload"; reactor and relay build on it.
//
// # What it owns
//
//   - Queue: a bounded single-producer/single-consumer byte ring for one
//     (source loop, destination loop) pair. Frames are copied into it once,
//     published in batches with one atomic store, drained with a per-pass
//     budget. Lock-free, no channel, no allocation per frame.
//   - Mesh and Port: N loops by N queues, each created the first time its
//     pair talks, and the sleep/wake protocol between loops. Each loop holds
//     one Port and touches the mesh only through it.
//   - Doorbell and Ringer: how a sleeping loop is woken (the loops supply
//     them: reactor.Loop's Wake and RingLoop).
//   - Scheme, Owner and IDs: the one ID scheme. The node index sits in an
//     ID's top Scheme.Bits bits; the owning loop is Owner(id, N) =
//     mix(id) * N >> 32; IDs draws random IDs stamped with the node until
//     their owner is the drawing loop. So a frame's node and loop follow
//     from its 4-byte header alone.
//   - ParseLoops, ParseCPUs, Layout, AllowedCPUs, PinThread: flags and
//     thread placement.
//
// # Concurrency contract
//
// Every Port, and the producer and consumer sides of every Queue, belong to
// one goroutine each: a Port to its loop, a Queue's producer side to the
// source loop, its consumer side to the destination loop. The only state
// two goroutines share is a handful of atomics per queue (published and
// consumed positions, the "tell me when there is room" level) and one per
// loop (awake, sleeping or rung); the ring bytes pass from one side to the
// other through those atomics' ordering. Mesh.Wake and Doorbell.Ring are
// safe from any goroutine. IDs belongs to one goroutine. Nothing in the
// package blocks: the sleeping loop waits in its own reactor.
//
// # Sleeping and waking
//
// A loop about to block calls Port.Sleep: it publishes what it sent,
// stores "sleeping", then looks at its incoming queues (and its full
// outgoing ones) again; if anything arrived it stays awake. A producer
// publishes first and then loads the destination's state; only if it reads
// "sleeping" and wins the compare-and-swap to "rung" does it ring. Go's
// atomics are sequentially consistent, so of the two store-then-load pairs
// at least one side sees the other: either the loop sees the frame and does
// not sleep, or the producer sees the sleeper and rings. A doorbell is
// rung at most once per sleep, whatever the number of producers.
//
// How a ring travels is up to the loops. On io_uring, the source's Ringer
// queues an IORING_OP_MSG_RING (IOSQE_CQE_SKIP_SUCCESS) aimed at the
// destination's ring, which goes out with the source's next submit: no
// extra system call; the destination waits with wait_nr = 1 so the message
// completes its wait. On epoll, and from goroutines that own no ring
// (signals, the metrics server), it is reactor.Loop.Wake: a write to the
// destination's eventfd, which also coalesces with a compare-and-swap.
//
// # How the relay uses it
//
// Each loop's goroutine locks its OS thread, pins it if asked (Layout,
// PinThread), and only then creates its ring or epoll instance, so that an
// io_uring instance is entered only from the thread that made it. The
// mesh's doorbells are the loops' Wake; each Port's Ringer is its loop's
// RingLoop. Loop 0 accepts and hands each descriptor to the least loaded
// loop in an adopt record on the queue towards it; that loop draws the ID.
// What a frame does on its way (route, deliver, hold), backpressure
// between loops and the shutdown protocol are the relay's, written once in
// relay/route.go, deliver.go, hold.go and cross.go. One property of the
// queues carries it: a queue that refused a record refuses every record
// until the consumer reports room for it (Queue.Put, Port.Writable), so a
// held frame is never overtaken and a stream of small frames never keeps
// a big one out.
//
// # Memory
//
// A pair that talks holds one ring of QueueConfig.Size bytes
// (DefaultQueueSize, 64 KiB, unless told otherwise; the relay asks for
// 1 MiB, relay.DefaultCrossQueue). While frames bigger than half of that pass, the ring grows
// (doubling) to hold two of them, and never past two records of
// MaxPayload plus their 8-byte headers; a pair that never talks holds
// nothing, and Port.Trim on a tick releases rings idle since the last
// tick and shrinks grown ones. At most:
// N*(N-1) * max(Size, 2*(MaxPayload+11)) bytes (a loop sends to itself
// directly, not through a queue). Port.RingBytes reports what a loop holds now.
package shard
