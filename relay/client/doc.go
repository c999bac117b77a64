// Package client is a small, blocking client for the ringrelay protocol
// (docs/protocol.md). Tests, benchmarks and the ringcat tool use it to talk to
// a relay the way any third-party client would.
//
// Dial connects and waits for the server to announce the connection's ID.
// Send writes one frame; Recv returns the next payload addressed to this
// connection. Both block, and both obey the deadlines set on the Conn.
//
// Ownership and concurrency: one goroutine may call Send while another calls
// Recv, but Send must not be called concurrently with itself, nor Recv with
// itself. The slice Recv returns belongs to the Conn and is overwritten by the
// next Recv; copy it to keep it. The client allocates nothing per frame once
// its buffers have grown to the largest frame seen.
package client
