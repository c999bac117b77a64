package tlsrecord

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	mrand "math/rand/v2"
	"testing"
)

var allSuites = []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256}

type pair struct {
	cli, srv                   *Conn
	clientSecret, serverSecret []byte
}

// newPair makes both ends of one connection from random secrets.
func newPair(t testing.TB, suiteID uint16) pair {
	t.Helper()
	s, err := suiteByID(suiteID)
	if err != nil {
		t.Fatal(err)
	}
	p := pair{clientSecret: make([]byte, s.hashLen), serverSecret: make([]byte, s.hashLen)}
	rand.Read(p.clientSecret)
	rand.Read(p.serverSecret)
	if p.cli, err = NewClient(suiteID, p.clientSecret, p.serverSecret); err != nil {
		t.Fatal(err)
	}
	if p.srv, err = NewServer(suiteID, p.clientSecret, p.serverSecret); err != nil {
		t.Fatal(err)
	}
	return p
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// sealRaw protects an arbitrary inner plaintext (content, type, padding)
// with h's next nonce, bypassing Seal's own checks, to build records a
// correct sender would never make.
func sealRaw(h *halfConn, outerType byte, inner []byte) []byte {
	nonce, _ := h.nextNonce()
	rec := []byte{outerType, 3, 3, 0, 0}
	binary.BigEndian.PutUint16(rec[3:], uint16(len(inner)+tagLen))
	return h.aead.Seal(rec, nonce, inner, rec[:headerLen])
}

func wantAlert(t *testing.T, err error, a Alert) {
	t.Helper()
	var ae *AlertError
	if !errors.As(err, &ae) || ae.Alert != a || ae.Remote {
		t.Fatalf("err = %v, want local alert %v", err, a)
	}
	if !errors.Is(err, a) {
		t.Fatalf("errors.Is(%v, %v) is false", err, a)
	}
}

func TestRoundTripSizes(t *testing.T) {
	for _, id := range allSuites {
		t.Run(tls.CipherSuiteName(id), func(t *testing.T) {
			p := newPair(t, id)
			for _, n := range []int{0, 1, 64, MaxPlaintext - 1, MaxPlaintext, MaxPlaintext + 1, 3*MaxPlaintext + 7, 1 << 20} {
				msg := randomBytes(n)
				wire, err := p.srv.Seal(nil, msg)
				if err != nil {
					t.Fatal(err)
				}
				if len(wire) != SealedLen(n) {
					t.Fatalf("%d bytes sealed into %d, SealedLen says %d", n, len(wire), SealedLen(n))
				}
				got, used, err := p.cli.Open(nil, wire)
				if err != nil || used != len(wire) || !bytes.Equal(got, msg) {
					t.Fatalf("n=%d: Open used %d of %d, err %v, equal %v", n, used, len(wire), err, bytes.Equal(got, msg))
				}
			}
		})
	}
}

// Records that arrive in arbitrary pieces: fed byte by byte and at random
// split points, the caller keeping the unconsumed tail, as a loop does.
func TestPartialRecords(t *testing.T) {
	for _, id := range allSuites {
		t.Run(tls.CipherSuiteName(id), func(t *testing.T) {
			p := newPair(t, id)
			var want, wire []byte
			var err error
			for i, n := range []int{5, 0, 300, MaxPlaintext + 10, 1} {
				msg := randomBytes(n)
				want = append(want, msg...)
				if wire, err = p.cli.Seal(wire, msg); err != nil {
					t.Fatal(err)
				}
				if i == 2 { // a key change in the middle of the stream
					if wire, err = p.cli.SealKeyUpdate(wire, true); err != nil {
						t.Fatal(err)
					}
				}
			}
			feed := func(chunks func(rest int) int) []byte {
				t.Helper()
				recv, err := NewServer(id, p.clientSecret, p.serverSecret)
				if err != nil {
					t.Fatal(err)
				}
				var buf, plain []byte
				for off := 0; off < len(wire); {
					k := chunks(len(wire) - off)
					buf = append(buf, wire[off:off+k]...)
					off += k
					var used int
					plain, used, err = recv.Open(plain, buf)
					if err != nil {
						t.Fatalf("Open after %d bytes: %v", off, err)
					}
					buf = buf[:copy(buf, buf[used:])]
				}
				if len(buf) != 0 {
					t.Fatalf("%d bytes left unconsumed", len(buf))
				}
				if !recv.Pending() {
					t.Fatal("the KeyUpdate asked for an answer, Pending is false")
				}
				return plain
			}
			if got := feed(func(int) int { return 1 }); !bytes.Equal(got, want) {
				t.Fatal("byte by byte: plaintext differs")
			}
			rng := mrand.New(mrand.NewPCG(1, uint64(id)))
			if got := feed(func(rest int) int { return 1 + rng.IntN(min(rest, 3000)) }); !bytes.Equal(got, want) {
				t.Fatal("random splits: plaintext differs")
			}
		})
	}
}

func TestTamperedRecordIsBadRecordMAC(t *testing.T) {
	for _, id := range allSuites {
		p := newPair(t, id)
		wire, _ := p.cli.Seal(nil, []byte("authenticated payload"))
		for i := headerLen; i < len(wire); i++ { // header bytes are covered by TestHeaderChecks
			for bit := range 8 {
				recv, _ := NewServer(id, p.clientSecret, p.serverSecret)
				bad := bytes.Clone(wire)
				bad[i] ^= 1 << bit
				out, n, err := recv.Open(nil, bad)
				if len(out) != 0 || n != 0 {
					t.Fatalf("%s byte %d bit %d: tampered record gave %d bytes of plaintext, consumed %d", tls.CipherSuiteName(id), i, bit, len(out), n)
				}
				wantAlert(t, err, AlertBadRecordMAC)
			}
		}
		// Also the length byte of the header: the record is then cut or
		// waits for more; shortened it fails the tag.
		recv, _ := NewServer(id, p.clientSecret, p.serverSecret)
		short := bytes.Clone(wire[:len(wire)-1])
		binary.BigEndian.PutUint16(short[3:], uint16(len(short)-headerLen))
		_, _, err := recv.Open(nil, short)
		wantAlert(t, err, AlertBadRecordMAC)
	}
}

func TestHeaderChecks(t *testing.T) {
	p := newPair(t, tls.TLS_AES_128_GCM_SHA256)
	good, _ := p.cli.Seal(nil, []byte("x"))
	for _, tc := range []struct {
		name  string
		patch func(h []byte)
		want  Alert
	}{
		{"handshake outer type", func(h []byte) { h[0] = typeHandshake }, AlertUnexpectedMessage},
		{"alert outer type", func(h []byte) { h[0] = typeAlert }, AlertUnexpectedMessage},
		{"change_cipher_spec", func(h []byte) { h[0] = typeChangeCipherSpec }, AlertUnexpectedMessage},
		{"unknown outer type", func(h []byte) { h[0] = 99 }, AlertUnexpectedMessage},
		{"version 0x0301", func(h []byte) { h[1], h[2] = 3, 1 }, AlertDecodeError},
		{"version 0x0304", func(h []byte) { h[1], h[2] = 3, 4 }, AlertDecodeError},
		{"over 2^14+256", func(h []byte) { binary.BigEndian.PutUint16(h[3:], MaxCiphertext+1) }, AlertRecordOverflow},
		{"65535", func(h []byte) { binary.BigEndian.PutUint16(h[3:], 0xffff) }, AlertRecordOverflow},
		{"shorter than a tag", func(h []byte) { binary.BigEndian.PutUint16(h[3:], tagLen) }, AlertDecodeError},
		{"empty", func(h []byte) { binary.BigEndian.PutUint16(h[3:], 0) }, AlertDecodeError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recv, _ := NewServer(tls.TLS_AES_128_GCM_SHA256, p.clientSecret, p.serverSecret)
			bad := bytes.Clone(good)
			tc.patch(bad)
			// The header alone is refused: the owner need not wait for a
			// body it will throw away.
			out, n, err := recv.Open(nil, bad[:headerLen])
			if len(out) != 0 || n != 0 {
				t.Fatalf("got %d bytes, consumed %d", len(out), n)
			}
			wantAlert(t, err, tc.want)
		})
	}
	// A CCS record in the exact compatibility form (one byte 0x01) too.
	recv, _ := NewServer(tls.TLS_AES_128_GCM_SHA256, p.clientSecret, p.serverSecret)
	_, _, err := recv.Open(nil, []byte{typeChangeCipherSpec, 3, 3, 0, 1, 1})
	wantAlert(t, err, AlertUnexpectedMessage)
}

func TestInnerPlaintextRules(t *testing.T) {
	id := uint16(tls.TLS_CHACHA20_POLY1305_SHA256)
	for _, tc := range []struct {
		name  string
		inner []byte
		plain string
		want  Alert // 0 with plain set: success
	}{
		{"padding is stripped", append([]byte("padded\x17"), make([]byte, 100)...), "padded", 0},
		{"padding up to the limit", append([]byte("p\x17"), make([]byte, maxInner-2)...), "p", 0},
		{"zero-length application data", []byte{typeApplicationData}, "", 0},
		{"all padding", make([]byte, 10), "", AlertUnexpectedMessage},
		{"inner over 2^14+1", append(make([]byte, MaxPlaintext+1), typeApplicationData), "", AlertRecordOverflow},
		{"inner change_cipher_spec", []byte{1, typeChangeCipherSpec}, "", AlertUnexpectedMessage},
		{"unknown inner type", []byte{1, 2, 3, 77}, "", AlertUnexpectedMessage},
		{"short alert", []byte{1, typeAlert}, "", AlertDecodeError},
		{"empty handshake", []byte{typeHandshake}, "", AlertUnexpectedMessage},
		{"NewSessionTicket from a client", []byte{msgNewSessionTicket, 0, 0, 1, 0, typeHandshake}, "", AlertUnexpectedMessage},
		{"Finished after the handshake", []byte{20, 0, 0, 1, 0, typeHandshake}, "", AlertUnexpectedMessage},
		{"KeyUpdate of 2 bytes", []byte{msgKeyUpdate, 0, 0, 2, 0, 0, typeHandshake}, "", AlertDecodeError},
		{"KeyUpdate request 2", []byte{msgKeyUpdate, 0, 0, 1, 2, typeHandshake}, "", AlertIllegalParameter},
		{"KeyUpdate not at record end", []byte{msgKeyUpdate, 0, 0, 1, 0, msgKeyUpdate, 0, 0, 1, 0, typeHandshake}, "", AlertUnexpectedMessage},
		{"fragmented header", []byte{msgKeyUpdate, 0, typeHandshake}, "", AlertUnexpectedMessage},
		{"fragmented body", []byte{msgKeyUpdate, 0, 0, 9, 0, typeHandshake}, "", AlertUnexpectedMessage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, id)
			rec := sealRaw(&p.cli.out, typeApplicationData, tc.inner)
			out, n, err := p.srv.Open(nil, rec)
			if tc.want == 0 {
				if err != nil || n != len(rec) || string(out) != tc.plain {
					t.Fatalf("Open = %q, %d of %d, %v; want %q", out, n, len(rec), err, tc.plain)
				}
				return
			}
			if len(out) != 0 || n != 0 {
				t.Fatalf("got %q, consumed %d", out, n)
			}
			wantAlert(t, err, tc.want)
		})
	}
}

func TestAlerts(t *testing.T) {
	p := newPair(t, tls.TLS_AES_256_GCM_SHA384)
	// Data, then close_notify, then bytes that must be ignored.
	wire, _ := p.cli.Seal(nil, []byte("last words"))
	wire, _ = p.cli.SealAlert(wire, AlertCloseNotify)
	wire = append(wire, "garbage after close_notify"...)
	out, n, err := p.srv.Open(nil, wire)
	if err != ErrPeerClosed || n != len(wire) || string(out) != "last words" || !p.srv.PeerClosed() {
		t.Fatalf("Open = %q, %d of %d, %v, closed %v", out, n, len(wire), err, p.srv.PeerClosed())
	}
	if _, n, err := p.srv.Open(nil, []byte("more")); err != ErrPeerClosed || n != 4 {
		t.Fatalf("Open after close_notify = %d, %v", n, err)
	}
	// The server can still say goodbye.
	bye, _ := p.srv.SealAlert(nil, AlertCloseNotify)
	if _, _, err := p.cli.Open(nil, bye); err != ErrPeerClosed {
		t.Fatalf("client read of close_notify: %v", err)
	}

	// A fatal alert is reported as the peer's, never to be answered.
	q := newPair(t, tls.TLS_AES_256_GCM_SHA384)
	rec, _ := q.srv.SealAlert(nil, AlertRecordOverflow)
	if out, _, err := q.cli.Open(nil, rec); err == nil || len(out) != 0 {
		t.Fatalf("fatal alert gave %q and error %v", out, err)
	} else {
		var ae *AlertError
		if !errors.As(err, &ae) || !ae.Remote || ae.Alert != AlertRecordOverflow {
			t.Fatalf("err = %v, want remote record_overflow", err)
		}
	}
}

func TestKeyUpdateBothWays(t *testing.T) {
	for _, id := range allSuites {
		t.Run(tls.CipherSuiteName(id), func(t *testing.T) {
			p := newPair(t, id)
			// The client asks: its own write side moves at once.
			wire, _ := p.cli.SealKeyUpdate(nil, true)
			wire, _ = p.cli.Seal(wire, []byte("after client update"))
			out, n, err := p.srv.Open(nil, wire)
			if err != nil || n != len(wire) || string(out) != "after client update" {
				t.Fatalf("server Open = %q, %d of %d, %v", out, n, len(wire), err)
			}
			next, _ := NextTrafficSecret(id, p.clientSecret)
			if !bytes.Equal(p.srv.in.secret[:len(next)], next) || p.srv.in.seq != 1 {
				t.Fatalf("server read side not at the next generation: seq %d", p.srv.in.seq)
			}
			if !p.srv.Pending() {
				t.Fatal("update_requested left nothing pending")
			}
			// The server answers with no data of its own: Seal(nil).
			ans, _ := p.srv.Seal(nil, nil)
			if len(ans) != SealedLen(5) || p.srv.Pending() {
				t.Fatalf("answer is %d bytes (want one KeyUpdate record, %d), pending %v", len(ans), SealedLen(5), p.srv.Pending())
			}
			ans, _ = p.srv.Seal(ans, []byte("after server update"))
			out, _, err = p.cli.Open(nil, ans)
			if err != nil || string(out) != "after server update" || p.cli.Pending() {
				t.Fatalf("client Open = %q, %v, pending %v", out, err, p.cli.Pending())
			}
			// Two requests before an answer are answered once.
			wire, _ = p.cli.SealKeyUpdate(nil, true)
			wire, _ = p.cli.SealKeyUpdate(wire, true)
			if _, _, err := p.srv.Open(nil, wire); err != nil {
				t.Fatal(err)
			}
			ans, _ = p.srv.Seal(nil, []byte("x"))
			if len(ans) != SealedLen(5)+SealedLen(1) {
				t.Fatalf("two requests answered with %d bytes, want one KeyUpdate and the data", len(ans))
			}
			if out, _, err := p.cli.Open(nil, ans); err != nil || string(out) != "x" {
				t.Fatalf("client Open = %q, %v", out, err)
			}
		})
	}
}

func TestBeginSealRecord(t *testing.T) {
	p := newPair(t, tls.TLS_AES_128_GCM_SHA256)
	buf := make([]byte, 0, 64<<10)
	buf, start, err := p.srv.BeginRecord(buf)
	if err != nil {
		t.Fatal(err)
	}
	buf = append(buf, "frame one|"...)
	buf = append(buf, "frame two"...)
	if buf, err = p.srv.SealRecord(buf, start); err != nil {
		t.Fatal(err)
	}
	if out, _, err := p.cli.Open(nil, buf); err != nil || string(out) != "frame one|frame two" {
		t.Fatalf("Open = %q, %v", out, err)
	}
	// Too much plaintext for one record is refused, not split.
	big, start, _ := p.srv.BeginRecord(nil)
	big = append(big, make([]byte, MaxPlaintext+1)...)
	if _, err := p.srv.SealRecord(big, start); err == nil {
		t.Fatal("SealRecord accepted 2^14+1 bytes")
	}
	if _, err := p.srv.SealRecord(buf, len(buf)-2); err == nil {
		t.Fatal("SealRecord accepted a start with no room for a header")
	}
}

func TestHotPathAllocations(t *testing.T) {
	p := newPair(t, tls.TLS_AES_128_GCM_SHA256)
	batch := randomBytes(16 * 64)
	wire := make([]byte, 0, SealedLen(len(batch)))
	plain := make([]byte, 0, len(batch)+64)
	allocs := testing.AllocsPerRun(200, func() {
		w, err := p.srv.Seal(wire[:0], batch)
		if err != nil {
			t.Fatal(err)
		}
		out, n, err := p.cli.Open(plain[:0], w)
		if err != nil || n != len(w) || len(out) != len(batch) {
			t.Fatal("round trip failed", err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Seal+Open allocate %.1f times per batch, want 0", allocs)
	}
}

func TestConstructorErrors(t *testing.T) {
	if _, err := NewServer(tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, make([]byte, 32), make([]byte, 32)); err == nil {
		t.Error("TLS 1.2 suite accepted")
	}
	if _, err := NewServer(tls.TLS_AES_256_GCM_SHA384, make([]byte, 32), make([]byte, 48)); err == nil {
		t.Error("32-byte secret accepted for a SHA-384 suite")
	}
	if _, _, err := TrafficKey(tls.TLS_AES_128_GCM_SHA256, make([]byte, 48)); err == nil {
		t.Error("48-byte secret accepted for a SHA-256 suite")
	}
}

// After Shrink both sides carry on, across a KeyUpdate too.
func TestShrink(t *testing.T) {
	for _, id := range allSuites {
		p := newPair(t, id)
		for round := range 3 {
			p.cli.Shrink()
			p.srv.Shrink()
			wire, err := p.cli.SealKeyUpdate(nil, round == 1)
			if err != nil {
				t.Fatal(err)
			}
			wire, _ = p.cli.Seal(wire, []byte("to server"))
			p.srv.Shrink()
			if out, _, err := p.srv.Open(nil, wire); err != nil || string(out) != "to server" {
				t.Fatalf("%s round %d: server Open = %q, %v", tls.CipherSuiteName(id), round, out, err)
			}
			p.srv.Shrink()
			wire, _ = p.srv.Seal(nil, []byte("to client"))
			p.cli.Shrink()
			if out, _, err := p.cli.Open(nil, wire); err != nil || string(out) != "to client" {
				t.Fatalf("%s round %d: client Open = %q, %v", tls.CipherSuiteName(id), round, out, err)
			}
		}
	}
}
