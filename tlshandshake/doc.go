// Package tlshandshake runs the TLS 1.3 server handshakes of ringrelay's
// connections off the event loops and hands each finished connection on:
// its socket, its negotiated cipher suite and its two application traffic
// secrets, from which the loop's record layer (package tlsrecord) derives
// keys and then reads and writes records itself.
//
// # What it owns
//
//   - Pool: a bounded set of handshake workers. Serve accepts from a
//     listener only while a slot is free; Start (waits) and TryStart
//     (refuses) take sockets someone else accepted, such as a reactor's
//     Accepted events. Each handshake has a deadline (Config.Timeout, 2 s
//     by default, as NATS). A finished one goes to Config.Deliver as a
//     Conn; a failed one is closed and counted by Result.
//   - CertStore: the certificate and key, and with mutual TLS the client
//     CA pool, loaded from PEM files. Reload (on SIGHUP) swaps them for new
//     handshakes in one atomic store; a file that does not load keeps the
//     old certificate and is counted.
//   - Snapshot: the counters metrics.TLSCollector exports.
//
// # Why handshakes run off the loop
//
// A handshake costs a private-key signature and a key exchange (around a
// millisecond of CPU with ECDSA P-256), waits on a client that may be slow
// or silent for seconds, and crypto/tls drives it with blocking reads.
// A loop must never block and must not spend its pass on one connection,
// so the handshake runs on a goroutine of this package, on Go's poller.
// The data path afterwards stays on the loop: the one-goroutine-per-loop
// design, io_uring and the batching of output are unchanged.
//
// The bound matters as much: without it, a flood of connects would start
// a goroutine and a handshake for each. Serve takes a slot before it calls
// accept, so beyond the bound connections wait in the kernel's listen
// backlog, where they cost the server nothing.
//
// # The configuration
//
// TLS 1.3 only (MinVersion = MaxVersion): one record format for the
// record layer. No session tickets: a ticket is a post-handshake message
// the server would send under the new traffic keys, and the loop taking
// over would have to account for it; with none, both directions start at
// sequence number 0 with the secrets handed over. Client certificates are
// off, or required and verified against the client CA pool
// (tls.RequireAndVerifyClientCert) when CertFiles.ClientCA is set.
//
// # Pitfalls, each with a test
//
//   - Read-ahead. crypto/tls reads as much as the socket has. A client
//     that sends its first application data right behind its Finished
//     would have those bytes swallowed into tls.Conn, out of the loop's
//     reach. handshakeConn returns at most the rest of the current TLS
//     record from each Read (a header, then exactly its body), so the
//     handshake never reads past the record that ends it
//     (TestRecordBoundary).
//   - Secrets. crypto/tls gives traffic secrets out only through
//     Config.KeyLogWriter. Each handshake gets its own tls.Config (from
//     GetConfigForClient) whose key log writes into that connection's
//     state, so secrets never mix between concurrent handshakes and never
//     leave the process (TestSecretsMatchClientKeyLog, TestOpenSSLInterop).
//     tlsrecord.ParseKeyLogLine is the only code that reads the NSS key
//     log format.
//   - No close_notify on handover. The tls.Conn is dropped, not closed:
//     closing it would send an alert. Only the Go-side duplicate of the
//     descriptor is closed; the socket itself lives on in Conn.Fd.
//   - Descriptors. The handshake runs on a duplicate of the socket (Go's
//     poller needs its own), which is always closed; on failure the
//     original is closed too, so nothing leaks (TestNoDescriptorLeak).
//     O_NONBLOCK is shared by duplicates, so the socket comes out
//     non-blocking: the adopting loop sets the mode its backend wants
//     (reactor.Loop.Adopt does).
//   - Refusals by reason. Whether the first bytes are a TLS handshake
//     record, and whether the ClientHello offered TLS 1.3, are seen here,
//     before crypto/tls; the other reasons come from its errors. A
//     non-TLS peer is closed without an answer; crypto/tls sends the
//     proper alert for the others (protocol_version, certificate_required,
//     unknown_ca).
//
// # Handing a Conn to a loop
//
// Deliver runs on the worker's goroutine: it makes the record layer
// (tlsrecord.NewServer with State.CipherSuite and the two secrets) and
// hands both to the loop that will own the connection with
// reactor.Loop.AdoptTLS, which is safe from any goroutine: it queues them
// and wakes the loop, which opens the socket at its next Poll and from
// then on reads and writes records itself (cmd/ringrelay/tls.go places
// connections on the least-loaded loop).
package tlshandshake
