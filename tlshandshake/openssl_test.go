package tlshandshake

import (
	"bytes"
	"crypto/tls"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestOpenSSLInterop: OpenSSL's s_client, a TLS stack that is not Go's,
// completes a handshake with the pool, with and without a client
// certificate, and its first application data opens with the secret the
// pool handed over. openssl is required: the test fails without it.
func TestOpenSSLInterop(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("the interop test needs the openssl command line tool (Debian: apt-get install openssl): %v", err)
	}
	for _, tc := range []struct {
		name       string
		mutual     bool
		helloRetry bool // a key share for ffdhe2048 only (Go has no finite-field groups), X25519 listed
	}{
		{"server-auth", false, false},
		{"mtls", true, false},
		{"hello-retry", false, true},
	} {
		mutual := tc.mutual
		t.Run(tc.name, func(t *testing.T) {
			p := newPKI(t)
			files := p.files
			args := []string{"s_client", "-connect", "", "-tls1_3", "-CAfile", p.caFile,
				"-servername", "localhost", "-verify_return_error", "-quiet"}
			if mutual {
				files = p.mutualFiles()
				cl := p.clientCA.issue(t, "openssl-client", 21, true, time.Now().Add(time.Hour))
				args = append(args, "-cert", p.write(t, "client.pem", cl.certPEM), "-key", p.write(t, "client.key", cl.keyPEM))
			}
			if tc.helloRetry {
				args = append(args, "-groups", "ffdhe2048:X25519")
			}
			s := startServer(t, files, Config{})
			args[2] = s.addr
			cmd := exec.Command(openssl, args...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			defer func() {
				stdin.Close()
				select {
				case <-exited:
				case <-time.After(patience):
					cmd.Process.Kill()
					<-exited
					t.Errorf("openssl did not exit once the server closed; output:\n%s", out.String())
				}
			}()
			msg := "hello from openssl\n"
			if _, err := stdin.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			var got Conn
			select {
			case got = <-s.done:
			case err := <-exited:
				t.Fatalf("openssl exited (%v) before a handshake finished; counted %v; output:\n%s",
					err, s.pool.Snapshot().Handshakes, out.String())
			case <-time.After(patience):
				t.Fatalf("no handshake with openssl; counted %v", s.pool.Snapshot().Handshakes)
			}
			typ, plain := openRecord(t, got.State.CipherSuite, got.ClientSecret, readRecord(t, got.Fd))
			unix.Close(got.Fd) // openssl sees the end and exits
			if typ != 23 || string(plain) != msg {
				t.Errorf("openssl's first record: type %d %q, want application data %q", typ, plain, msg)
			}
			if got.State.HelloRetry != tc.helloRetry || (tc.helloRetry && got.State.Group != tls.X25519) {
				t.Errorf("hello retry %v with group %v, want retry %v (then X25519)", got.State.HelloRetry, got.State.Group, tc.helloRetry)
			}
			if mutual != strings.Contains(got.State.ClientSubject, "CN=openssl-client") {
				t.Errorf("client subject %q with mutual TLS %v", got.State.ClientSubject, mutual)
			}
		})
	}
}
