package tlsrecord

import (
	"bytes"
	"crypto/tls"
	"testing"
)

// Fixed secrets, so a corpus entry reproduces.
var (
	fuzzClientSecret = bytes.Repeat([]byte{0x11}, 32)
	fuzzServerSecret = bytes.Repeat([]byte{0x22}, 32)
)

// FuzzOpen feeds arbitrary bytes to a server-side Open, split at an
// arbitrary point as a socket would. It must never panic, never consume
// more than it was given, and never return plaintext that the peer did
// not seal: every plaintext byte must be part of a message sealed below.
func FuzzOpen(f *testing.F) {
	sender, err := NewClient(tls.TLS_AES_128_GCM_SHA256, fuzzClientSecret, fuzzServerSecret)
	if err != nil {
		f.Fatal(err)
	}
	authentic := []byte("authentic application data from the client")
	rec0, _ := sender.Seal(nil, authentic)
	rec1, _ := sender.Seal(nil, authentic)
	ku, _ := sender.SealKeyUpdate(nil, true)
	rec2, _ := sender.Seal(nil, authentic)
	alert, _ := sender.SealAlert(nil, AlertCloseNotify)
	f.Add(rec0, 3)
	f.Add(append(bytes.Clone(rec0), rec1...), 40)
	f.Add(append(append(append(bytes.Clone(rec0), rec1...), ku...), rec2...), 100)
	f.Add(append(bytes.Clone(rec0), alert...), 0)
	f.Add([]byte{22, 3, 1, 0, 5, 1, 0, 0, 1, 0}, 2) // a plaintext ClientHello start
	f.Add([]byte{23, 3, 3, 0xff, 0xff}, 5)
	f.Add([]byte{20, 3, 3, 0, 1, 1}, 1)
	f.Fuzz(func(t *testing.T, in []byte, split int) {
		c, err := NewServer(tls.TLS_AES_128_GCM_SHA256, fuzzClientSecret, fuzzServerSecret)
		if err != nil {
			t.Fatal(err)
		}
		if split < 0 {
			split = -split
		}
		if len(in) > 0 {
			split %= len(in) + 1
		} else {
			split = 0
		}
		var plain []byte
		out, n, err := c.Open(nil, in[:split])
		plain = append(plain, out...)
		if n < 0 || n > split {
			t.Fatalf("consumed %d of %d", n, split)
		}
		if err == nil {
			rest := append(bytes.Clone(in[n:split]), in[split:]...)
			out, m, err2 := c.Open(nil, rest)
			if m < 0 || m > len(rest) {
				t.Fatalf("consumed %d of %d", m, len(rest))
			}
			plain = append(plain, out...)
			_ = err2
		}
		// Only the sender's messages can come out, whole: the plaintext
		// is some number of copies of the authentic message.
		for len(plain) > 0 {
			if !bytes.HasPrefix(plain, authentic) {
				t.Fatalf("plaintext %q was never sealed by the peer", plain)
			}
			plain = plain[len(authentic):]
		}
	})
}

func FuzzParseKeyLogLine(f *testing.F) {
	f.Add([]byte(LabelClientTraffic + " " + klRandom + " " + klSecret + "\n"))
	f.Add([]byte(LabelClientRandom + " " + klRandom + " " + klSecret + klSecret[:32]))
	f.Add([]byte("# comment"))
	f.Add([]byte("  "))
	f.Fuzz(func(t *testing.T, line []byte) {
		kl, err := ParseKeyLogLine(line)
		if err != nil {
			return
		}
		// What parses is exactly what it says: re-encoding gives the line.
		want := string(bytes.TrimSuffix(line, []byte("\n")))
		got := kl.Label + " " + hexString(kl.ClientRandom[:]) + " " + hexString(kl.Secret)
		if !bytes.EqualFold([]byte(got), []byte(want)) {
			t.Fatalf("parsed %q as %q", want, got)
		}
		if len(kl.Secret) != 32 && len(kl.Secret) != 48 {
			t.Fatalf("secret of %d bytes", len(kl.Secret))
		}
	})
}

// FuzzOpenInner fuzzes what the tag protects: arbitrary inner plaintext
// (content, type, padding), sealed correctly, so the content-type, alert
// and post-handshake message parsing sees every shape. Application data
// must come out exactly as the content before its type byte.
func FuzzOpenInner(f *testing.F) {
	f.Add([]byte("data\x17"))
	f.Add([]byte("data\x17\x00\x00\x00"))
	f.Add([]byte{1, 0, typeAlert})
	f.Add([]byte{2, 20, typeAlert})
	f.Add([]byte{msgKeyUpdate, 0, 0, 1, 1, typeHandshake})
	f.Add([]byte{msgKeyUpdate, 0, 0, 1, 0, msgKeyUpdate, 0, 0, 1, 1, typeHandshake})
	f.Add([]byte{msgNewSessionTicket, 0, 0, 0, typeHandshake, 0})
	f.Add([]byte{0, 0, 0})
	f.Fuzz(func(t *testing.T, inner []byte) {
		if len(inner) > MaxCiphertext-tagLen {
			return
		}
		sender, _ := NewClient(tls.TLS_CHACHA20_POLY1305_SHA256, fuzzClientSecret, fuzzServerSecret)
		recv, _ := NewServer(tls.TLS_CHACHA20_POLY1305_SHA256, fuzzClientSecret, fuzzServerSecret)
		rec := sealRaw(&sender.out, typeApplicationData, inner)
		out, n, err := recv.Open(nil, rec)
		if err != nil {
			if len(out) != 0 || (n != 0 && err != ErrPeerClosed) {
				t.Fatalf("error %v with %d bytes out, %d consumed", err, len(out), n)
			}
			return
		}
		if n != len(rec) {
			t.Fatalf("consumed %d of %d", n, len(rec))
		}
		stripped := bytes.TrimRight(inner, "\x00")
		if len(out) > 0 || stripped[len(stripped)-1] == typeApplicationData {
			if stripped[len(stripped)-1] != typeApplicationData || !bytes.Equal(out, stripped[:len(stripped)-1]) {
				t.Fatalf("inner %x gave plaintext %x", inner, out)
			}
		}
	})
}
