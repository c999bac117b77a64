// Package bench drives load against a ringrelay server and reports what it
// measured. It is the library behind cmd/ringbench.
//
// # Pieces
//
//   - Codec and Order (payload.go) give every frame a sender index, a sequence
//     number, its size and a checksum, all NUL-free (the codec is
//     internal/payload, shared with the relay's tests), so a receiver can
//     prove that what it got is whole, intact and in order.
//   - internal/frame's Splitter cuts the delivered byte stream into
//     NUL-terminated frames without allocating per frame.
//   - The workloads (workload_*.go) own their connections and goroutines;
//     Measure (measure.go) runs one of them for a warm-up and a measured
//     window and turns counters into Figures.
//   - Server (server.go) starts a ringrelay child process pinned to one CPU;
//     Compare (compare.go) runs every point against every backend and
//     aggregates the medians into a Report, which report.go prints as
//     markdown, svg.go draws as a chart and save.go stores as JSON. Load
//     (load.go) runs one point against a server that is already running.
//
// # Rules the load generator keeps
//
// The generator must not be what limits a measurement. Each connection is
// served by one goroutine that reads large chunks, splits them itself and
// answers a whole chunk with one write. Nothing on the per-frame path
// allocates. The generator's own CPU time is reported next to the server's
// so a reader can tell when the generator, not the server, was saturated.
//
// Any integrity violation (a corrupt, truncated, merged, foreign or
// out-of-order frame) is counted as an error; a point with errors is
// reported as FAILED and ringbench exits 1.
package bench
