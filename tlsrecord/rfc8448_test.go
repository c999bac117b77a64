package tlsrecord

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"strings"
	"testing"
)

// Values from RFC 8448 §3, "Simple 1-RTT Handshake" (TLS_AES_128_GCM_SHA256),
// typed in the RFC's own spacing.
const (
	rfcClientAppSecret = `9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52
		87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 a5`
	rfcClientAppKey    = `17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51`
	rfcClientAppIV     = `5b 78 92 3d ee 08 57 90 33 e5 23 d9`
	rfcServerAppSecret = `a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32
		82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43`
	rfcServerAppKey = `9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56`
	rfcServerAppIV  = `cf 78 2b 88 dd 83 54 9a ad f1 e9 84`

	// {server} send NewSessionTicket (the server's record 0 under its
	// application keys).
	rfcServerTicketRecord = `17 03 03 00 de 3a 6b 8f 90 41 4a 97
		d6 95 9c 34 87 68 0d e5 13 4a 2b 24 0e 6c ff ac 11 6e 95 d4 1d
		6a f8 f6 b5 80 dc f3 d1 1d 63 c7 58 db 28 9a 01 59 40 25 2f 55
		71 3e 06 1d c1 3e 07 88 91 a3 8e fb cf 57 53 ad 8e f1 70 ad 3c
		73 53 d1 6d 9d a7 73 b9 ca 7f 2b 9f a1 b6 c0 d4 a3 d0 3f 75 e0
		9c 30 ba 1e 62 97 2a c4 6f 75 f7 b9 81 be 63 43 9b 29 99 ce 13
		06 46 15 13 98 91 d5 e4 c5 b4 06 f1 6e 3f c1 81 a7 7c a4 75 84
		00 25 db 2f 0a 77 f8 1b 5a b0 5b 94 c0 13 46 75 5f 69 23 2c 86
		51 9d 86 cb ee ac 87 aa c3 47 d1 43 f9 60 5d 64 f6 50 db 4d 02
		3e 70 e9 52 ca 49 fe 51 37 12 1c 74 bc 26 97 68 7e 24 87 46 d6
		df 35 30 05 f3 bc e1 86 96 12 9c 81 53 55 6b 3b 6c 67 79 b3 7b
		f1 59 85 68 4f`
	// {client} send application_data record: payload 00..31.
	rfcClientAppRecord = `17 03 03 00 43 a2 3f 70 54 b6 2c 94
		d0 af fa fe 82 28 ba 55 cb ef ac ea 42 f9 14 aa 66 bc ab 3f 2b
		98 19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b 62 97 4e 1f 5a 62
		92 a2 97 70 14 bd 1e 3d ea e6 3a ee bb 21 69 49 15 e4`
	// {server} send application_data record: the same payload, echoed.
	rfcServerAppRecord = `17 03 03 00 43 2e 93 7e 11 ef 4a c7
		40 e5 38 ad 36 00 5f c4 a4 69 32 fc 32 25 d0 5f 82 aa 1b 36 e3
		0e fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8 fc c4 9c 4b f2 e5
		f0 a2 1c 00 47 c2 ab f3 32 54 0d d0 32 e1 67 c2 95 5d`
	// {client} send alert record: close_notify.
	rfcClientAlertRecord = `17 03 03 00 13 c9 87 27 60 65 56 66
		b7 4d 7f f1 15 3e fd 6d b6 d0 b0 e3`
	// {server} send alert record: close_notify.
	rfcServerAlertRecord = `17 03 03 00 13 b5 8f d6 71 66 eb f5
		99 d2 47 20 cf be 7e fa 7a 88 64 a9`
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad hex in test vector: %v", err)
	}
	return b
}

// rfcPayload is the application data of §3: the 50 bytes 0x00..0x31.
func rfcPayload() []byte {
	p := make([]byte, 50)
	for i := range p {
		p[i] = byte(i)
	}
	return p
}

func TestRFC8448TrafficKeys(t *testing.T) {
	for _, tc := range []struct {
		name, secret, key, iv string
	}{
		{"client", rfcClientAppSecret, rfcClientAppKey, rfcClientAppIV},
		{"server", rfcServerAppSecret, rfcServerAppKey, rfcServerAppIV},
	} {
		key, iv, err := TrafficKey(tls.TLS_AES_128_GCM_SHA256, unhex(t, tc.secret))
		if err != nil {
			t.Fatal(err)
		}
		if want := unhex(t, tc.key); !bytes.Equal(key, want) {
			t.Errorf("%s key = %x, want %x", tc.name, key, want)
		}
		if want := unhex(t, tc.iv); !bytes.Equal(iv, want) {
			t.Errorf("%s iv = %x, want %x", tc.name, iv, want)
		}
	}
}

// The HkdfLabel encoding itself, checked against the "key info" and "iv
// info" lines the RFC prints for every key derivation.
func TestRFC8448LabelInfo(t *testing.T) {
	secret := unhex(t, rfcServerAppSecret)
	// HKDF-Expand with the RFC's info bytes must equal ExpandLabel's output.
	for _, tc := range []struct {
		label string
		info  string
		n     int
	}{
		{"key", "00 10 09 74 6c 73 31 33 20 6b 65 79 00", 16},
		{"iv", "00 0c 08 74 6c 73 31 33 20 69 76 00", 12},
	} {
		got := ExpandLabel(sha256.New, secret, tc.label, nil, tc.n)
		want := hkdfExpandRaw(secret, unhex(t, tc.info), tc.n)
		if !bytes.Equal(got, want) {
			t.Errorf("ExpandLabel(%q) = %x, HKDF-Expand with the RFC's info = %x", tc.label, got, want)
		}
	}
}

func TestRFC8448ServerOpensClientRecords(t *testing.T) {
	srv, err := NewServer(tls.TLS_AES_128_GCM_SHA256, unhex(t, rfcClientAppSecret), unhex(t, rfcServerAppSecret))
	if err != nil {
		t.Fatal(err)
	}
	in := append(unhex(t, rfcClientAppRecord), unhex(t, rfcClientAlertRecord)...)
	out, n, err := srv.Open(nil, in)
	if err != ErrPeerClosed {
		t.Fatalf("Open: err = %v, want ErrPeerClosed (the trace ends with close_notify)", err)
	}
	if n != len(in) {
		t.Errorf("consumed %d of %d bytes", n, len(in))
	}
	if !bytes.Equal(out, rfcPayload()) {
		t.Errorf("plaintext = %x, want %x", out, rfcPayload())
	}
}

func TestRFC8448ServerSealsItsRecords(t *testing.T) {
	srv, err := NewServer(tls.TLS_AES_128_GCM_SHA256, unhex(t, rfcClientAppSecret), unhex(t, rfcServerAppSecret))
	if err != nil {
		t.Fatal(err)
	}
	// Record 0 of the trace is the NewSessionTicket, which this package
	// never sends; spend sequence number 0 on a record we discard.
	if _, err := srv.Seal(nil, []byte("x")); err != nil {
		t.Fatal(err)
	}
	got, err := srv.Seal(nil, rfcPayload())
	if err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, rfcServerAppRecord); !bytes.Equal(got, want) {
		t.Errorf("sealed application data =\n%x\nwant\n%x", got, want)
	}
	got, err = srv.SealAlert(nil, AlertCloseNotify)
	if err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, rfcServerAlertRecord); !bytes.Equal(got, want) {
		t.Errorf("sealed close_notify =\n%x\nwant\n%x", got, want)
	}
}

func TestRFC8448ClientSideRecords(t *testing.T) {
	cli, err := NewClient(tls.TLS_AES_128_GCM_SHA256, unhex(t, rfcClientAppSecret), unhex(t, rfcServerAppSecret))
	if err != nil {
		t.Fatal(err)
	}
	// The client reads the ticket (ignored), the echo and close_notify.
	in := unhex(t, rfcServerTicketRecord)
	in = append(in, unhex(t, rfcServerAppRecord)...)
	in = append(in, unhex(t, rfcServerAlertRecord)...)
	out, n, err := cli.Open(nil, in)
	if err != ErrPeerClosed || n != len(in) {
		t.Fatalf("Open: n = %d of %d, err = %v, want all and ErrPeerClosed", n, len(in), err)
	}
	if !bytes.Equal(out, rfcPayload()) {
		t.Errorf("plaintext = %x, want %x", out, rfcPayload())
	}
	// And it seals exactly the client's records.
	got, err := cli.Seal(nil, rfcPayload())
	if err != nil {
		t.Fatal(err)
	}
	got, err = cli.SealAlert(got, AlertCloseNotify)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(unhex(t, rfcClientAppRecord), unhex(t, rfcClientAlertRecord)...); !bytes.Equal(got, want) {
		t.Errorf("sealed =\n%x\nwant\n%x", got, want)
	}
}

// A server must refuse the ticket record that a client accepts.
func TestRFC8448TicketFromClientIsUnexpected(t *testing.T) {
	// Open the server's ticket record with a server-side Conn whose read
	// secret is the server's secret, i.e. as if a client had sent it.
	c, err := NewServer(tls.TLS_AES_128_GCM_SHA256, unhex(t, rfcServerAppSecret), unhex(t, rfcClientAppSecret))
	if err != nil {
		t.Fatal(err)
	}
	_, n, err := c.Open(nil, unhex(t, rfcServerTicketRecord))
	var ae *AlertError
	if !errorsAs(err, &ae) || ae.Alert != AlertUnexpectedMessage || ae.Remote || n != 0 {
		t.Fatalf("Open(ticket) = n %d, err %v; want unexpected_message and nothing consumed", n, err)
	}
}
