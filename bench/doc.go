// Package bench drives load against a relay that speaks ringrelay's
// protocol and reports what it measured. It is the library behind
// cmd/ringbench.
//
// # Pieces
//
//   - Codec and Order (payload.go) give every frame a sender index, a sequence
//     number, its size and a checksum, all NUL-free (the codec is
//     internal/payload, shared with the relay's tests), so a receiver can
//     prove that what it got is whole, intact and in order.
//   - internal/frame's Splitter cuts the delivered byte stream into
//     NUL-terminated frames without allocating per frame.
//   - The workloads (workload_*.go) dial their connections and give each a
//     role on the engine (engine.go); Measure (measure.go) runs one of them
//     for a warm-up and a measured window and turns counters into Figures.
//   - A Contender (server.go) is one column of a comparison: a ringrelay
//     backend or any other relay given by its command line. StartServer runs
//     it on a free port, pinned to its CPUs, through internal/servertest,
//     which also reads its CPU time and RSS. Compare (compare.go) runs every
//     point against every column and aggregates the medians into a Report,
//     which report.go prints as markdown, svg.go draws as a chart and save.go
//     stores as JSON. Load (load.go) runs one point against a server that is
//     already running.
//   - Scale (scale.go) runs the columns at several loop counts: a server's
//     command line takes {loops} and {cpus} (Placement), the server gets
//     the first N of its CPUs, the generator one pinned worker per CPU of
//     its own (cpus.go splits the machine by physical cores). With Handoff
//     every loop count shares one CPU. scale_report.go prints and saves its
//     ScaleReport, with each row's scaling against the first loop count.
//   - Pairings (pairing.go) say which connections of pingpong and flood
//     talk to each other: adjacent (2i with 2i+1) or a random perfect
//     matching from a seed, so that on a server with N loops about
//     (N-1)/N of the pairs span two loops.
//
// # Rules the load generator keeps
//
// The generator must not be what limits a measurement. Its connections are
// raw non-blocking sockets, taken away from the Go runtime's poller and
// shared among a few workers (one per CPU it may use), each waiting on an
// epoll instance of its own. A worker answers everything one read brought
// with one write, and nothing on the per-frame path allocates. A pingpong
// end checks each frame by comparing it with the payload A sent for the
// sequence number it expects, which costs a memcmp rather than a decode.
// The generator's CPU time and its thread count are reported next to the
// server's, so a reader can tell when the generator, not the server, was
// saturated.
//
// Any integrity violation (a corrupt, truncated, merged, foreign or
// out-of-order frame) is counted as an error; a point with errors is
// reported as FAILED and ringbench exits 1.
package bench
