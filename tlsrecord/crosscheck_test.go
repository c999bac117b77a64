package tlsrecord

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/cpu"
)

// crypto/tls gives TLS 1.3 no cipher suite setting: both sides prefer
// AES-128-GCM when the CPU has AES-GCM instructions and ChaCha20-Poly1305
// otherwise. So this test runs twice: in this process (AES-128-GCM on an
// AES-NI machine) and in a child process started with GODEBUG=cpu.aes=off,
// which makes crypto/tls on both ends believe there is no AES hardware and
// negotiate ChaCha20-Poly1305. AES-256-GCM, which crypto/tls never picks
// against itself, is covered by TestInteropOpenSSL.
const childSuiteEnv = "TLSRECORD_WANT_SUITE"

func TestCrossCheckCryptoTLS(t *testing.T) {
	t.Run("inprocess", func(t *testing.T) {
		want := uint16(tls.TLS_CHACHA20_POLY1305_SHA256)
		if cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ || cpu.ARM64.HasAES && cpu.ARM64.HasPMULL {
			want = tls.TLS_AES_128_GCM_SHA256
		}
		if s := os.Getenv(childSuiteEnv); s != "" {
			v, err := strconv.ParseUint(s, 0, 16)
			if err != nil {
				t.Fatalf("%s=%q: %v", childSuiteEnv, s, err)
			}
			want = uint16(v)
		}
		crossCheck(t, want)
	})
	t.Run("chacha20", func(t *testing.T) {
		if os.Getenv(childSuiteEnv) != "" {
			t.Fatal("child process recursed")
		}
		if cpu.X86.HasAES == false && cpu.ARM64.HasAES == false {
			t.Log("no AES hardware: the in-process run already used ChaCha20-Poly1305")
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrossCheckCryptoTLS$/^inprocess$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "GODEBUG=cpu.aes=off", childSuiteEnv+"=0x1303")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestCrossCheckCryptoTLS/inprocess") {
			t.Fatalf("child with GODEBUG=cpu.aes=off: %v\n%s", err, out)
		}
	})
}

// crossCheck runs a crypto/tls client against a crypto/tls server
// handshake whose connection is then carried on by this record layer,
// over loopback TCP, and checks every direction and post-handshake event.
func crossCheck(t *testing.T, wantSuite uint16) {
	ctx, addr, served := serveInBackground(t)
	_, pool := serverCert(t)
	rawCli, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer rawCli.Close()
	cli := tls.Client(rawCli, &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13})
	cli.SetDeadline(timeNowPlus())
	if err := cli.HandshakeContext(ctx); err != nil {
		t.Fatal("client handshake:", err)
	}
	h := served()
	if h.suite != wantSuite || cli.ConnectionState().CipherSuite != wantSuite {
		t.Fatalf("negotiated %s (client says %s), want %s", tls.CipherSuiteName(h.suite),
			tls.CipherSuiteName(cli.ConnectionState().CipherSuite), tls.CipherSuiteName(wantSuite))
	}
	t.Logf("suite %s", tls.CipherSuiteName(h.suite))
	r := &reader{raw: h.raw, rec: h.rec}

	// 1. The client writes right after its handshake (these bytes may
	// already be in flight behind the Finished): small, large, tiny.
	var sent []byte
	clientErr := make(chan error, 1)
	go func() {
		for _, n := range []int{5, 40000, 1, 70000} {
			msg := randomBytes(n)
			sent = append(sent, msg...)
			if _, err := cli.Write(msg); err != nil {
				clientErr <- err
				return
			}
		}
		clientErr <- nil
	}()
	if err := r.readUntil(5 + 40000 + 1 + 70000); err != nil {
		t.Fatal("server reading the client:", err)
	}
	if err := <-clientErr; err != nil {
		t.Fatal("client write:", err)
	}
	if !bytes.Equal(r.plain, sent) {
		t.Fatal("server read different bytes than the client wrote")
	}
	r.plain = r.plain[:0]

	// 2. The server seals a batch of 200 small frames and a large one
	// into one write; the client reads them all.
	var batch []byte
	for i := range 200 {
		batch = append(batch, bytes.Repeat([]byte{byte(i)}, 64)...)
	}
	batch = append(batch, randomBytes(100<<10)...)
	wire, err := h.rec.Seal(nil, batch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.raw.Write(wire); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(batch))
	if _, err := io.ReadFull(cli, got); err != nil {
		t.Fatal("client read:", err)
	}
	if !bytes.Equal(got, batch) {
		t.Fatal("client read different bytes than the server sealed")
	}

	// 3. The server rekeys and asks the client to rekey too. The client
	// can read what follows only if our next write secret is the one
	// crypto/tls derives (RFC 8446 §7.2); crypto/tls then answers with a
	// KeyUpdate of its own, which our read side must follow.
	wire, _ = h.rec.SealKeyUpdate(nil, true)
	wire, _ = h.rec.Seal(wire, []byte("after server KeyUpdate"))
	if _, err := h.raw.Write(wire); err != nil {
		t.Fatal(err)
	}
	got = make([]byte, len("after server KeyUpdate"))
	if _, err := io.ReadFull(cli, got); err != nil || string(got) != "after server KeyUpdate" {
		t.Fatalf("client read after KeyUpdate: %q, %v", got, err)
	}
	if _, err := cli.Write([]byte("client after its KeyUpdate")); err != nil {
		t.Fatal(err)
	}
	if err := r.readUntil(len("client after its KeyUpdate")); err != nil {
		t.Fatal("server reading after the client's KeyUpdate:", err)
	}
	if string(r.plain) != "client after its KeyUpdate" {
		t.Fatalf("server read %q", r.plain)
	}
	next, _ := NextTrafficSecret(h.suite, h.secrets[LabelClientTraffic])
	if !bytes.Equal(h.rec.in.secret[:len(next)], next) {
		t.Fatal("the server's read side is not at client secret generation 1")
	}
	if h.rec.Pending() {
		t.Fatal("crypto/tls answered with update_requested?")
	}
	r.plain = r.plain[:0]

	// 4. close_notify from the client is a clean end; our close_notify
	// is an io.EOF for crypto/tls.
	if err := cli.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := r.readUntil(1); !errors.Is(err, ErrPeerClosed) || len(r.plain) != 0 {
		t.Fatalf("after CloseWrite: %v (plaintext %q), want ErrPeerClosed", err, r.plain)
	}
	wire, _ = h.rec.SealAlert(nil, AlertCloseNotify)
	if _, err := h.raw.Write(wire); err != nil {
		t.Fatal(err)
	}
	if n, err := cli.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("client Read after our close_notify = %d, %v; want io.EOF", n, err)
	}
}

// A fatal alert we seal reaches crypto/tls as that alert.
func TestCryptoTLSReadsOurFatalAlert(t *testing.T) {
	_, addr, served := serveInBackground(t)
	_, pool := serverCert(t)
	cli, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	cli.SetDeadline(timeNowPlus())
	h := served()
	wire, _ := h.rec.SealAlert(nil, AlertUnexpectedMessage)
	if _, err := h.raw.Write(wire); err != nil {
		t.Fatal(err)
	}
	_, err = cli.Read(make([]byte, 1))
	if err == nil || !strings.Contains(err.Error(), "unexpected message") {
		t.Fatalf("client Read = %v, want the unexpected_message alert", err)
	}
}
