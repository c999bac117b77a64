package main

// TLS in the real binary: flag errors, a server with -tls-cert on both
// backends and two loops, Go clients and openssl s_client (a TLS stack
// that is not Go's) exchanging frames through it, with and without client
// certificates, SIGHUP reloading the certificate, and the TLS metrics.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/frame"
	"github.com/ringrelay/ringrelay/internal/servertest"
	"github.com/ringrelay/ringrelay/internal/testpki"
	"github.com/ringrelay/ringrelay/relay/client"
)

// tlsPatience bounds every wait on the TLS server: generous, since the
// machine is shared; a test waits on events, never on the clock.
const tlsPatience = 30 * time.Second

func TestTLSFlagErrors(t *testing.T) {
	dir := t.TempDir()
	ca, err := testpki.NewCA("flags CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Server("localhost")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := leaf.Write(dir, "server")
	if err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		args  []string
		flags []string
	}{
		{"cert without key", []string{"-tls-cert=" + cert}, []string{"tls-cert", "tls-key"}},
		{"key without cert", []string{"-tls-key=" + key}, []string{"tls-key", "tls-cert"}},
		{"client CA without cert", []string{"-tls-client-ca=" + cert}, []string{"tls-client-ca", "tls-cert"}},
		{"missing cert file", []string{"-tls-cert=" + dir + "/nope.pem", "-tls-key=" + key}, []string{"tls-cert"}},
		{"cert file not PEM", []string{"-tls-cert=" + garbage, "-tls-key=" + key}, []string{"tls-cert"}},
		{"zero handshakes", []string{"-tls-cert=" + cert, "-tls-key=" + key, "-tls-max-handshakes=0"}, []string{"tls-max-handshakes"}},
		{"zero handshake timeout", []string{"-tls-cert=" + cert, "-tls-key=" + key, "-tls-handshake-timeout=0s"}, []string{"tls-handshake-timeout"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != 2 {
				t.Fatalf("run(%q) = %d, want 2\nstderr:\n%s", tc.args, code, stderr.String())
			}
			line := errorLine(t, stderr.String())
			for _, f := range tc.flags {
				if !namesFlag(line, f) {
					t.Errorf("error line does not name -%s: %q", f, line)
				}
			}
		})
	}
}

// tlsFiles is a CA and the files a TLS server reads.
type tlsFiles struct {
	dir                       string
	ca                        *testpki.CA
	caFile, certFile, keyFile string
	client                    testpki.Leaf
	clientCert, clientKey     string
}

func newTLSFiles(t *testing.T) *tlsFiles {
	t.Helper()
	f := &tlsFiles{dir: t.TempDir()}
	var err error
	if f.ca, err = testpki.NewCA("ringrelay test CA"); err != nil {
		t.Fatal(err)
	}
	if f.caFile, err = f.ca.WriteCA(f.dir, "ca.pem"); err != nil {
		t.Fatal(err)
	}
	f.writeServer(t)
	if f.client, err = f.ca.Client("alice"); err != nil {
		t.Fatal(err)
	}
	if f.clientCert, f.clientKey, err = f.client.Write(f.dir, "client"); err != nil {
		t.Fatal(err)
	}
	return f
}

// writeServer issues a new server certificate and writes it over the
// server's files; it returns its serial number.
func (f *tlsFiles) writeServer(t *testing.T) string {
	t.Helper()
	leaf, err := f.ca.Server("localhost")
	if err != nil {
		t.Fatal(err)
	}
	if f.certFile, f.keyFile, err = leaf.Write(f.dir, "server"); err != nil {
		t.Fatal(err)
	}
	return leaf.Cert.SerialNumber.String()
}

func (f *tlsFiles) clientConfig(withCert bool) *tls.Config {
	cfg := &tls.Config{RootCAs: f.ca.Pool, ServerName: "localhost"}
	if withCert {
		cfg.Certificates = []tls.Certificate{f.client.TLS}
	}
	return cfg
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) (*client.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), tlsPatience)
	defer cancel()
	c, err := client.DialTLS(ctx, addr, cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(tlsPatience))
	return c, nil
}

// servedSerial is the serial number of the certificate a new connection
// to addr sees.
func servedSerial(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	c, err := dialTLS(t, addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.NetConn().(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestTLSServer: on both backends with two loops, Go clients and openssl
// exchange frames over TLS; SIGHUP loads a new certificate, which a client
// that connects afterwards sees, while an open connection carries on; a
// certificate file that does not load keeps the old one; the metrics
// count it all.
func TestTLSServer(t *testing.T) {
	for _, backend := range opsBackends {
		t.Run(backend, func(t *testing.T) {
			opsSkipWithoutUring(t, backend)
			f := newTLSFiles(t)
			firstSerial := servedSerialOf(t, f.certFile)
			p := servertest.Start(t, servertest.Options{Args: []string{
				"-backend=" + backend, "-loops=2", opsMetricsArg,
				"-tls-cert=" + f.certFile, "-tls-key=" + f.keyFile,
			}})
			maddr := opsMetricsAddr(t, p)
			cfg := f.clientConfig(false)
			a, err := dialTLS(t, p.Addr, cfg)
			if err != nil {
				t.Fatalf("%v\nlog:\n%s", err, p.Logs())
			}
			b, err := dialTLS(t, p.Addr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			relayBothWays(t, a, b)
			if got := servedSerial(t, p.Addr, cfg); got != firstSerial {
				t.Fatalf("served serial %s, want %s", got, firstSerial)
			}

			// openssl s_client gets an ID and exchanges frames with a.
			opensslExchange(t, p.Addr, f, false, a)

			// A plaintext client that sends a frame is closed without an
			// answer, counted as not_tls.
			nc, err := net.Dial("tcp", p.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if _, err := nc.Write(frame.Append(nil, a.ID(), []byte("in clear"))); err != nil {
				t.Fatal(err)
			}
			nc.SetReadDeadline(time.Now().Add(tlsPatience))
			if got, _ := io.ReadAll(nc); len(got) != 0 {
				t.Fatalf("a plaintext client got %q from the TLS port", got)
			}
			opsWaitMetric(t, maddr, "not_tls counted", tlsPatience, func(m opsMetrics) bool {
				return m.get(t, `ringrelay_tls_handshakes_total{result="not_tls"}`) == 1
			})

			// SIGHUP with new files: a new client sees the new certificate.
			newSerial := f.writeServer(t)
			p.Signal(t, syscall.SIGHUP)
			opsWaitMetric(t, maddr, "the reload counted", tlsPatience, func(m opsMetrics) bool {
				return m.get(t, `ringrelay_tls_certificate_reloads_total{result="ok"}`) == 1
			})
			if got := servedSerial(t, p.Addr, cfg); got != newSerial {
				t.Fatalf("after SIGHUP a new client sees serial %s, want the new %s", got, newSerial)
			}
			relayBothWays(t, a, b) // open connections carry on

			// A file that does not load keeps the certificate, and is counted.
			if err := os.WriteFile(f.certFile, []byte("truncated"), 0o600); err != nil {
				t.Fatal(err)
			}
			p.Signal(t, syscall.SIGHUP)
			m := opsWaitMetric(t, maddr, "the failed reload counted", tlsPatience, func(m opsMetrics) bool {
				return m.get(t, `ringrelay_tls_certificate_reloads_total{result="failed"}`) == 1
			})
			if got := servedSerial(t, p.Addr, cfg); got != newSerial {
				t.Fatalf("after a failed reload a new client sees serial %s, want %s still", got, newSerial)
			}
			if !strings.Contains(p.Logs(), "certificate reload failed") {
				t.Errorf("no log line for the failed reload:\n%s", p.Logs())
			}
			if exp := m.get(t, "ringrelay_tls_certificate_expiry_timestamp_seconds"); exp < float64(time.Now().Unix()) {
				t.Errorf("certificate expiry %v is in the past", exp)
			}
			opsWaitMetric(t, maddr, "two TLS connections open", tlsPatience, func(m opsMetrics) bool {
				return m.get(t, "ringrelay_tls_connections_open") == 2
			})
			p.Signal(t, syscall.SIGTERM)
			if code := p.Wait(t, tlsPatience); code != 0 {
				t.Fatalf("exit code %d\nlog:\n%s", code, p.Logs())
			}
		})
	}
}

// TestTLSServerMutual: with -tls-client-ca, a client with a certificate
// the CA signed (Go or openssl) is served; one without is refused.
func TestTLSServerMutual(t *testing.T) {
	f := newTLSFiles(t)
	p := servertest.Start(t, servertest.Options{Args: []string{
		"-loops=2", opsMetricsArg,
		"-tls-cert=" + f.certFile, "-tls-key=" + f.keyFile, "-tls-client-ca=" + f.caFile,
	}})
	maddr := opsMetricsAddr(t, p)
	a, err := dialTLS(t, p.Addr, f.clientConfig(true))
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, p.Logs())
	}
	opensslExchange(t, p.Addr, f, true, a)
	if _, err := dialTLS(t, p.Addr, f.clientConfig(false)); err == nil {
		t.Fatal("a client without a certificate got an ID")
	}
	opsWaitMetric(t, maddr, "no_client_cert counted", tlsPatience, func(m opsMetrics) bool {
		return m.get(t, `ringrelay_tls_handshakes_total{result="no_client_cert"}`) == 1
	})
}

func servedSerialOf(t *testing.T, certFile string) string {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, strings.TrimSuffix(certFile, ".pem")+".key")
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.String()
}

// opensslExchange runs openssl s_client against addr: it must receive a
// 4-byte ID, then a frame go sends it, and a frame it sends must reach go.
func opensslExchange(t *testing.T, addr string, f *tlsFiles, withCert bool, peer *client.Conn) {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("the interop test needs the openssl command line tool (Debian: apt-get install openssl): %v", err)
	}
	args := []string{"s_client", "-connect", addr, "-CAfile", f.caFile, "-servername", "localhost",
		"-verify_return_error", "-tls1_3", "-quiet"}
	if withCert {
		args = append(args, "-cert", f.clientCert, "-key", f.clientKey)
	}
	cmd := exec.Command(openssl, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer func() {
		stdin.Close()
		cmd.Process.Kill()
		<-done
	}()
	go func() { cmd.Wait(); close(done) }()
	type result struct {
		b   []byte
		err error
	}
	read := func(n int) []byte {
		t.Helper()
		ch := make(chan result, 1)
		go func() {
			b := make([]byte, n)
			_, err := io.ReadFull(stdout, b)
			ch <- result{b, err}
		}()
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatalf("reading openssl's output: %v\nstderr:\n%s", r.err, stderr.String())
			}
			return r.b
		case <-time.After(tlsPatience):
			cmd.Process.Kill()
			t.Fatalf("openssl received nothing\nstderr:\n%s", stderr.String())
			return nil
		}
	}
	idb := read(4)
	id := uint32(idb[0])<<24 | uint32(idb[1])<<16 | uint32(idb[2])<<8 | uint32(idb[3])
	if id == 0 {
		t.Fatal("openssl got ID 0")
	}
	if err := peer.Send(id, []byte("to openssl")); err != nil {
		t.Fatal(err)
	}
	if got := read(len("to openssl\x00")); string(got) != "to openssl\x00" {
		t.Fatalf("openssl received %q", got)
	}
	if _, err := stdin.Write(frame.Append(nil, peer.ID(), []byte("from openssl"))); err != nil {
		t.Fatal(err)
	}
	got, err := peer.Recv()
	if err != nil || string(got) != "from openssl" {
		t.Fatalf("Go client received %q, %v; openssl stderr:\n%s", got, err, stderr.String())
	}
}
