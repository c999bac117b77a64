// Package tlsrecord is the TLS 1.3 record layer (RFC 8446 §5) of a
// connection whose handshake was done elsewhere (by crypto/tls, off the
// event loop). It is sans-I/O: it turns received bytes into plaintext and
// plaintext into bytes to send, and owns nothing but the per-direction
// protection state. The loop that owns the socket owns the Conn.
//
// # The seam with the handshake
//
// crypto/tls reveals traffic secrets only through Config.KeyLogWriter, as
// NSS key log lines; ParseKeyLogLine reads them. A Conn is made from the
// negotiated cipher suite (ConnectionState().CipherSuite) and the two
// application traffic secrets, CLIENT_TRAFFIC_SECRET_0 and
// SERVER_TRAFFIC_SECRET_0: NewServer for the server side, NewClient for
// the client side. The handshake must leave every byte after the peer's
// Finished unread in the socket, must not have sent application data or
// session tickets with these keys (sequence numbers start at 0), and the
// tls.Conn must not be used or closed afterwards.
//
// Supported suites: TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384
// (crypto/aes + crypto/cipher GCM) and TLS_CHACHA20_POLY1305_SHA256
// (golang.org/x/crypto/chacha20poly1305). Keys and IVs are derived with
// HKDF-Expand-Label (RFC 8446 §7.1, §7.3; golang.org/x/crypto/hkdf).
//
// # Receiving
//
// Open decrypts every complete record in a buffer, appends the application
// data to the caller's buffer and says how many bytes it consumed; a
// partial record at the end stays with the caller. It enforces the record
// limits: outer type application_data, version 0x0303, at most 2^14+256
// bytes of ciphertext and 2^14+1 of inner plaintext; content type and zero
// padding are read from inside the ciphertext (§5.4). Failures are
// *AlertError values naming the alert to send (bad_record_mac,
// record_overflow, unexpected_message, decode_error, illegal_parameter).
//
// A change_cipher_spec record is always unexpected_message: §5 allows the
// compatibility record only before the peer's Finished, and this layer
// starts after it (the handshake side absorbs it).
//
// After decryption: application data is returned; close_notify returns
// ErrPeerClosed (a clean end of the peer's sending side; later bytes are
// ignored, §6.1); any other alert is fatal and reported with Remote set.
// A KeyUpdate (§4.6.3) moves the read side to the next secret (§7.2) and,
// if the peer asked for one back, makes Pending true: the next Seal,
// BeginRecord or Seal(dst, nil) sends KeyUpdate(update_not_requested) and
// then switches the write side. A NewSessionTicket from a client, or any
// other handshake message, is unexpected_message; a client-side Conn
// ignores tickets. Post-handshake messages fragmented across records are
// refused (unexpected_message, "fragmented ... not supported"): real
// KeyUpdates are 5 bytes and never fragmented.
//
// # Sending
//
// Seal packs a batch of plaintext (many small relay frames) into as few
// records as possible, at most 2^14 bytes each, appended to the caller's
// output buffer; it copies the plaintext into that buffer once and the
// AEAD encrypts it in place. A caller that wants no copy at all writes
// its plaintext straight into the output buffer between BeginRecord and
// SealRecord. SealAlert sends close_notify or a fatal alert before the
// connection closes; SealKeyUpdate rekeys on demand (AES-GCM should be
// rekeyed before about 2^24.5 records, §5.5; nothing does so
// automatically).
//
// # Cost
//
// Open and Seal allocate nothing when the caller's buffers have room (Open
// needs len(in) spare bytes in dst; Seal needs SealedLen); a KeyUpdate and
// an error allocate. A Conn is 288 bytes plus its two AEADs: about 1.8 KiB
// in all with AES-GCM (crypto/cipher keeps both AES key schedules and a
// GHASH table per AEAD), 352 bytes with ChaCha20-Poly1305 (TestConnMemory).
// Shrink drops the AEADs of a connection that has gone idle, down to the
// 288-byte struct; the next Open or Seal rebuilds the one it needs from
// the stored key (under a microsecond and 1.3 KiB, BenchmarkRebuild).
package tlsrecord
