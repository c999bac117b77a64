// Package cluster joins ringrelay nodes through NATS: a client on node A
// sends to an ID held on node B, and the frame arrives whole and in order.
// It is the only package that imports the NATS client.
//
// # What it owns
//
//   - The node link, bus side: what the relay's loops put in their
//     outboxes reaches the other nodes, and what other nodes sent reaches
//     the loops' inboxes (the loop side is relay/nodes.go). Which node owns
//     an ID is shard.Scheme's (the ID's top -node-bits bits), so nothing is
//     looked up per frame.
//   - The batch codec (Batch, DecodeBatch): many frames for one node in one
//     NATS message. The decoder checks a whole batch before it hands out a
//     frame, and rejects it whole, with a Reject reason, on any fault.
//   - Bridge: the goroutine that owns the NATS connection, its
//     subscriptions, the node announcements and the counters (Snapshot).
//
// # Concurrency contract
//
// The loops never call the NATS client: nats.Conn.Publish may write to the
// socket inline, so a stalled bus would stall a loop. Instead:
//
//   - Each loop has a Source (its outbox of frames for other nodes; it is
//     the producer, the bridge goroutine the consumer) and calls
//     Bridge.Ring after publishing into it. When a loop's outbox is full
//     the loop pauses the sending connection, as for a full loop-to-loop
//     queue; the bridge calls Loops.Wake once Drain reports room.
//   - The bridge goroutine alone publishes. Each pass it drains every
//     Source (about DrainBudget bytes each), appends each frame to the
//     batch of its destination node, publishes a batch as soon as the next
//     frame would take it past the server's max_payload, and the rest at
//     the end of the pass, on NAME.node.K.
//   - Received batches are decoded on the NATS client's delivery
//     goroutine for this node's subscription (one goroutine, messages in
//     order). Each frame goes to the Sink of Loops.Owner(dest), then each
//     touched Sink is published and its loop woken with Loops.Wake. A full
//     Sink is published, its loop woken, and the delivery waits up to
//     SinkWait for the loop's Room signal (never a sleep-and-retry). A
//     *shard.Queue is both a Source and a Sink as it stands.
//   - Control records (ID 0 in a Source: the relay's pauses and resumes)
//     are gathered per pass into one message on NAME.ctl, which every node
//     subscribes to; each receiving node puts every record into every
//     loop's Sink (control.go). The Sinks' producers (batches, control)
//     hold inMu.
//   - The announcement handler (another client goroutine) only stores
//     atomics. Snapshot, Up, Err and Failed are safe from any goroutine.
//   - On its tick the bridge goroutine calls Trim on every Sink that has
//     one (Trimmer), under inMu when it is free (a delivery waiting for
//     room keeps it; the bridge trims at a later tick rather than wait),
//     so idle inbox rings are given back.
//   - Close, called once the loops stopped producing, drains every Source
//     and publishes what it held before it closes the connection, within
//     ShutdownTimeout; what is left then is dropped as DropShutdown.
//
// # Semantics across nodes
//
// Whole frames, per (sender, destination) order, at most once. One
// publisher per node (the bridge goroutine), one subscription per node, and
// NATS's per-connection order keep a pair's frames in order; a dropped
// frame leaves a gap, never a reordering. While the connection is healthy
// and no limit is hit, nothing is lost. Every drop is counted where it is
// known (Drop reasons, per peer node): on the sender's node a frame for a
// node that is not up (no "serving" announcement within AnnounceMissed
// intervals, or it said it leaves), or sent while the bus is down (the
// client keeps no reconnect buffer: nothing stale is delivered late); on
// the receiving node a frame whose loop inbox stayed full for SinkWait, and
// whole batches the NATS client dropped over the subscription's pending
// limits (SlowConsumer). One loss is not counted: frames published to a
// node in the seconds between its silent death and its expiry go to a
// subject nobody reads, and NATS does not tell the publisher.
//
// A slow destination is not a loss under backpressure: its loop sends a
// pause to every other node, whose loops pause the connections that send
// to it, and a resume once it drained. Pauses are leases renewed while the
// destination stays over its limit, so a lost resume or a dead node
// releases its senders within seconds; the relay's hard bound on what a
// destination queues from other nodes (counted as remote_over_limit)
// covers a lost pause. The relay's deliver.go has the numbers.
//
// # Duplicate node index
//
// Chosen: refuse to start, and stop serving when it can only be found
// later. Start announces "starting" with an ask flag; every serving node
// answers at once; the starter listens for StartupWait and refuses with
// ErrDuplicateNode if any other instance announces its index. A serving
// node that hears a "starting" duplicate keeps serving (the starter will
// refuse). Two serving instances of one index (started on two sides of a
// bus outage) both stop: Failed is closed, Err says why, every frame is
// dropped as DropStopped, and the process should exit.
//
// # Bus outages
//
// The client reconnects forever (ReconnectWait between tries). One log line
// when the connection is lost, one when it is back. While it is down the
// bridge keeps draining the loops and drops what they send across, so
// local traffic never waits on the bus. After a reconnect the node
// announces itself with the ask flag, so it learns within a round trip
// which nodes are up again.
package cluster
