// Package relay is ringrelay's protocol, written sans-I/O: the frame parser,
// the routing table (which also hands out IDs), the limits and the slow-consumer
// policy. It has no sockets of its own: Server is fed events by a
// reactor.Loop and answers through reactor.Conn methods, so the same logic
// runs on io_uring and on epoll, and the parser and allocator are tested
// and fuzzed without a network.
//
// Ownership: one goroutine (the one that opened the loop) runs Server.Run
// and is the only one that touches the peers, the routes and the parsers.
// Other goroutines may call Server.Shutdown and read Metrics, nothing else.
//
// Memory: a connection holds its peer record, a parser accumulation buffer
// only while a frame spans reads (at most MaxFrame+5 bytes), and up to
// MaxQueue bytes of queued output plus what its senders had already read
// when backpressure paused them (see the README's memory formula).
package relay
