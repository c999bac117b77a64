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
//   - Owner and IDs: owner(id) = mix(id) * N >> 32, and random IDs drawn
//     until their owner is the drawing loop.
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
// # How a loop uses it (relay/group.go and relay/cross.go)
//
// Setup: Layout(-loops, -cpus, AllowedCPUs()) gives N and the pins.
// GOMAXPROCS is raised to at least N+1 (the loops, plus the runtime and
// the odd goroutine). Each loop's goroutine calls runtime.LockOSThread,
// then PinThread(pins[k]) if pinning, then creates its ring or epoll
// instance on that thread (SINGLE_ISSUER and DEFER_TASKRUN bind a ring to
// the thread that made it). The mesh's doorbells are the loops' Wake;
// each Port's Ringer is its loop's RingLoop (MSG_RING on io_uring).
//
// Routing: a frame for ID d goes to Owner(d, N).
//
//   - This loop: look d up in the loop's own table and deliver as today.
//   - Another loop j: Port.Send(j, d, payload). Whether d exists is
//     decided on j when it drains the frame: an unknown or departed ID is
//     dropped and counted there, and since j looks the ID up at that
//     moment, a frame never reaches a reused connection slot. (It can
//     reach a new connection of j that drew the same ID while the frame
//     was queued: j does not keep departed IDs out of its draws. With IDs
//     drawn from about 2^32/N values that is rare, not impossible.)
//   - Later, another node: the node index lives in the ID too; such a
//     frame goes to the bridge's outbox, and frames arriving from other
//     nodes come in through the same queues and doorbell as a loop's.
//
// IDs: the loop that will own a connection draws its ID with its own IDs
// (so Owner(id) is that loop) and checks uniqueness in its own table only.
// The placing loop hands the accepted descriptor to the least-loaded loop
// in a control record on the mesh queue towards it ("adopt fd"); that loop
// draws the ID and sends the greeting.
//
// Order and whole frames: one sender lives on one loop and one destination
// on one loop, so all its frames to that destination pass through the same
// FIFO queue, each as one record, and the destination loop appends each to
// the output in one piece.
//
// Backpressure, full queue: when Send returns false the sending loop keeps
// the frame and the unparsed rest of that read on the sending connection
// (as bytes read past a pause are kept today), pauses that connection's
// reads, and lists it under destination loop j. Port.Writable names j once
// j has drained enough; the loop sends the held frames again, oldest
// refusal first (any that still do not fit pause the connection again),
// and resumes reading. A queue that refused a frame refuses every frame
// until it has room for it, so small frames never starve a big one. No
// loop waits for another: the consumer rings the producer when room
// appears, through the same sleep/wake protocol.
//
// Backpressure, slow destination (-slow-consumer=backpressure): loop j
// delivers every frame it drains, even over -max-queue (the frame was
// already accepted, exactly as within one loop), and when destination d
// is then over -max-queue it sends the loop the frame came from, i, a
// control record on the j->i queue: a frame for ControlDest (ID 0, which
// no connection has) with payload "pause d". Loop i marks d as full; each of its connections that sends to
// d afterwards sends that frame and then pauses, listed under d. When d
// drains below half its limit (NotifyDrained, as today) or leaves, j sends
// "resume d" to every loop it paused (a list of loops per destination), and
// those loops resume the connections listed under d. What crosses in the
// meantime is bounded by the i->j queue. A control record that finds the
// j->i queue full waits in a small per-loop list and goes out at the next
// pass; it is never dropped. Under drop and disconnect, j applies the
// policy itself when it drains the frame; nothing needs to go back.
//
// Shutdown: every loop stops accepting and reading and keeps running
// passes (Drain, deliver, Flush). It declares itself quiet, for good, once
// its reactor says its reads have really stopped, it holds nothing, and
// its own Port.Unread is zero; it leaves once every loop is quiet and its
// connections' output is written, or -shutdown-timeout passes (relay/group.go).
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
