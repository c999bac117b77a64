// Package relay is ringrelay's protocol, run on a reactor.Loop. Only part
// of it is sans-I/O, and which part is stated here:
//
//   - Parser (parser.go) is sans-I/O: the caller feeds it the bytes each
//     read returned and it hands back frames. It touches no socket and no
//     clock and, in steady state, allocates nothing; it is unit-tested and
//     fuzzed (FuzzParser) on byte slices alone.
//   - Routes (routes.go), the ID table, opens no socket: it maps IDs to
//     reactor slot numbers and draws IDs from crypto/rand (through the
//     source a Group or a cluster gives it), which its tests replace with a
//     fixed source.
//   - Config, Policy and Metrics are plain data: the limits and the
//     slow-consumer policy as settings, the counters as atomics.
//   - Server (server.go) is the wiring to the reactor, and is not sans-I/O.
//     It owns the Loop (Run polls and finally closes it), reads the clock
//     once per wake-up, queues output, pauses and resumes reads through
//     reactor.Conn, and asks the kernel how much output a peer has not yet
//     acknowledged (Conn.Unacked, an SIOCOUTQ ioctl) for the write timeout
//     and the shutdown drain. The limits and the slow-consumer policy are
//     enforced there, so they are tested over real loopback sockets
//     (limits_test.go, FuzzServer) rather than on their own.
//
// Server reaches the network only through reactor.Loop and reactor.Conn,
// so the same code runs on io_uring and on epoll.
//
// Ownership: one goroutine (the one that opened the loop) runs Server.Run
// and is the only one that touches the peers, the routes and the parsers.
// Other goroutines may call Server.Shutdown and read Metrics, and ask for
// the connection list (Group.Connz, connz.go), which the loop answers
// itself at its next pass into a buffer the asker brought; nothing else.
//
// A frame's way through a loop is three steps, each written once (the
// design of this package; see also the README's promises):
//
//   - route (route.go): from the 4-byte header alone (shard.Scheme for the
//     node, shard.Owner for the loop), the frame is for a connection of
//     this loop, for another loop of this process, or for another node.
//   - deliver (deliver.go): at the destination's loop, -slow-consumer
//     applies to the frame whatever its origin; under backpressure the
//     destination asks its senders to pause, wherever they are.
//   - hold (hold.go): a bounded hop refused the frame (the queue towards
//     another loop, the outbox towards the bridge); the sender keeps it
//     and the rest of its read, stops reading, and resumes when the hop
//     has room. Pauses asked for by a destination elsewhere stop the
//     sender the same way (block, unblock).
//
// Hops: with several loops, a Group (group.go) runs one Server per loop,
// each on its own goroutine locked to its OS thread, joined by the shard
// mesh (cross.go; the mesh itself is shard's); in a cluster, Join gives
// each loop an outbox and an inbox towards the bridge, which cmd/ringrelay
// wires to the cluster package through the Bridge interface (nodes.go).
// Control records (pause, resume, adopt) travel on the same hops as
// frames (control.go). The loops share no table and no lock; what they
// share is the mesh's atomics and a few counters read off the data path
// (connections per loop, shutdown progress). With one loop on one node
// none of this exists: the data path is the single loop's.
//
// IDs: each loop draws the IDs of its connections from shard.IDs, which
// only yields IDs of this node that this loop owns, and checks uniqueness
// in its own table (routes.go).
//
// Shutdown across loops is exact, with no quiet period: each loop stops
// accepting and reading, and declares itself quiet, for good, once the
// reactor says no read can complete any more (reactor.Loop.ReadsStopped),
// it holds nothing for the mesh, and every frame it sent was drained.
// After that it never sends again, so once all loops are quiet no queue
// can fill again; each loop then leaves when its own output is written,
// or at -shutdown-timeout, the hard bound (Server.silent in cross.go).
//
// Memory: a connection holds its peer record, a parser accumulation buffer
// only while a frame spans reads (at most MaxFrame+5 bytes), and up to
// MaxQueue bytes of queued output plus what its senders had already read
// when backpressure paused them (see the README's memory formula). What a
// burst took goes back once it is over (idle.go): a loop whose counts stay
// still trims its pools on its tick, and the last loop to go quiet runs
// one debug.FreeOSMemory.
//
// Lame duck (lameduck.go): Group.LameDuck closes the listener, lets the
// open connections relay for a grace period, then closes them evenly over
// a window, each loop its own, and reports when all are gone.
//
// MaxMemory bounds the client buffers above (partial frames, queued
// output, held frames) of all connections together (budget.go);
// the limits for untrusted networks, ID spraying and connections per
// source address, are limits.go's. Both keep their state beside the peer
// records, not in them.
package relay
