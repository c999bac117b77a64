package tlshandshake

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"hash"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringrelay/ringrelay/tlsrecord"
)

// patience bounds every wait in these tests: generous, since the machine
// is shared and loaded; tests wait on events, never on the clock.
const patience = 30 * time.Second

// authority is a test CA (ECDSA P-256) that issues certificates.
type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	pool *x509.CertPool
}

func newAuthority(t testing.TB, name string) *authority {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	a := &authority{cert: cert, key: key, pool: x509.NewCertPool()}
	a.pem = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	a.pool.AddCert(cert)
	return a
}

// leaf is an issued certificate with its key, as PEM and as tls.Certificate.
type leaf struct {
	certPEM, keyPEM []byte
	tls             tls.Certificate
	notAfter        time.Time
}

// issue signs a server (DNS name localhost, IP 127.0.0.1) or client
// certificate.
func (a *authority) issue(t testing.TB, cn string, serial int64, client bool, notAfter time.Time) leaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"ringrelay test"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter.Truncate(time.Second),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames, tmpl.IPAddresses = nil, nil
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	l := leaf{
		certPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:   pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		notAfter: tmpl.NotAfter,
	}
	if l.tls, err = tls.X509KeyPair(l.certPEM, l.keyPEM); err != nil {
		t.Fatal(err)
	}
	return l
}

// pki is everything a test server and its clients need, on disk where a
// CertStore reads it.
type pki struct {
	dir      string
	ca       *authority // signs the server certificate
	clientCA *authority // signs good client certificates
	server   leaf
	files    CertFiles // ClientCA left empty: set it for mutual TLS
	caFile   string    // ca's certificate, for clients (openssl -CAfile)
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir(), ca: newAuthority(t, "test server CA"), clientCA: newAuthority(t, "test client CA")}
	p.server = p.ca.issue(t, "server-1", 1, false, time.Now().Add(48*time.Hour))
	p.files = CertFiles{Cert: filepath.Join(p.dir, "server.pem"), Key: filepath.Join(p.dir, "server.key")}
	p.writeServer(t, p.server)
	p.caFile = p.write(t, "ca.pem", p.ca.pem)
	p.write(t, "client-ca.pem", p.clientCA.pem)
	return p
}

func (p *pki) write(t testing.TB, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (p *pki) writeServer(t testing.TB, l leaf) {
	p.write(t, "server.pem", l.certPEM)
	p.write(t, "server.key", l.keyPEM)
}

func (p *pki) mutualFiles() CertFiles {
	f := p.files
	f.ClientCA = filepath.Join(p.dir, "client-ca.pem")
	return f
}

// clientConfig trusts the server CA; KeyLogWriter and client certificates
// are the caller's to add.
func (p *pki) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: p.ca.pool, ServerName: "localhost", MinVersion: tls.VersionTLS13}
}

// testServer is a Pool serving a loopback listener; finished handshakes
// arrive on done.
type testServer struct {
	pool  *Pool
	store *CertStore
	addr  string
	done  chan Conn
}

func startServer(t *testing.T, files CertFiles, cfg Config) *testServer {
	t.Helper()
	store, err := LoadCerts(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{store: store, done: make(chan Conn, 64)}
	cfg.Deliver = func(c Conn) { s.done <- c }
	if s.pool, err = NewPool(store, cfg); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- s.pool.Serve(ln) }()
	t.Cleanup(func() {
		s.pool.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		close(s.done)
		for c := range s.done {
			unix.Close(c.Fd)
		}
	})
	return s
}

// next waits for the next finished handshake.
func (s *testServer) next(t *testing.T) Conn {
	t.Helper()
	select {
	case c := <-s.done:
		t.Cleanup(func() { unix.Close(c.Fd) })
		return c
	case <-time.After(patience):
		t.Fatalf("no handshake finished within %v; counters %+v", patience, s.pool.Snapshot())
		return Conn{}
	}
}

// waitCount waits until the pool has counted n handshakes ending in r.
func (s *testServer) waitCount(t *testing.T, r Result, n uint64) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for s.pool.Snapshot().Handshakes[r] < n {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %d %s handshakes after %v; counted %v", n, r, patience, s.pool.Snapshot().Handshakes)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := s.pool.Snapshot().Handshakes[r]; got != n {
		t.Fatalf("%s handshakes = %d, want %d", r, got, n)
	}
}

// keyLogSecrets reads the traffic secrets out of a client's key log.
func keyLogSecrets(t *testing.T, log string) (client, server []byte) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		kl, err := tlsrecord.ParseKeyLogLine([]byte(line))
		if err != nil {
			t.Fatalf("client key log line %q: %v", line, err)
		}
		switch kl.Label {
		case tlsrecord.LabelClientTraffic:
			client = kl.Secret
		case tlsrecord.LabelServerTraffic:
			server = kl.Secret
		}
	}
	if client == nil || server == nil {
		t.Fatalf("client key log has no traffic secrets:\n%s", log)
	}
	return client, server
}

// readRecord reads one whole TLS record from fd (blocking it first),
// failing the test after patience.
func readRecord(t *testing.T, fd int) []byte {
	t.Helper()
	if err := unix.SetNonblock(fd, false); err != nil {
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval(patience.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	full := func(b []byte) {
		for n := 0; n < len(b); {
			m, err := unix.Read(fd, b[n:])
			if err != nil || m == 0 {
				t.Fatalf("read from the handed-over socket after %d of %d bytes: %v", n, len(b), err)
			}
			n += m
		}
	}
	hdr := make([]byte, recordHeaderLen)
	full(hdr)
	rec := make([]byte, recordHeaderLen+int(binary.BigEndian.Uint16(hdr[3:])))
	copy(rec, hdr)
	full(rec[recordHeaderLen:])
	return rec
}

// openRecord decrypts the first application record sent under secret
// (sequence number 0) in suite, with the record layer's steps written out
// from RFC 8446 §5.2, §5.3 and §7.3. It returns the content type and the
// content.
func openRecord(t *testing.T, suite uint16, secret, rec []byte) (byte, []byte) {
	t.Helper()
	aead, nonce := recordAEAD(t, suite, secret)
	if rec[0] != 23 {
		t.Fatalf("record type %d, want application_data (23)", rec[0])
	}
	plain, err := aead.Open(nil, nonce, rec[recordHeaderLen:], rec[:recordHeaderLen])
	if err != nil {
		t.Fatalf("open the first record with the handed-over secret: %v", err)
	}
	plain = bytes.TrimRight(plain, "\x00")
	if len(plain) == 0 {
		t.Fatal("record holds only padding")
	}
	return plain[len(plain)-1], plain[:len(plain)-1]
}

// sealRecord protects content as the first application data record sent
// under secret (sequence number 0).
func sealRecord(t *testing.T, suite uint16, secret, content []byte) []byte {
	t.Helper()
	aead, nonce := recordAEAD(t, suite, secret)
	n := len(content) + 1 + aead.Overhead()
	hdr := []byte{23, 3, 3, byte(n >> 8), byte(n)}
	inner := append(append([]byte(nil), content...), 23)
	return aead.Seal(hdr, nonce, inner, hdr)
}

// recordAEAD derives the AEAD and the nonce for sequence number 0 (the IV
// itself) from a traffic secret. AES-GCM suites only.
func recordAEAD(t *testing.T, suite uint16, secret []byte) (cipher.AEAD, []byte) {
	t.Helper()
	var h func() hash.Hash
	var keyLen int
	switch suite {
	case tls.TLS_AES_128_GCM_SHA256:
		h, keyLen = sha256.New, 16
	case tls.TLS_AES_256_GCM_SHA384:
		h, keyLen = sha512.New384, 32
	default:
		t.Fatalf("test decrypts AES-GCM suites only; got %s", tls.CipherSuiteName(suite))
	}
	block, err := aes.NewCipher(expandLabel(t, h, secret, "key", keyLen))
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return aead, expandLabel(t, h, secret, "iv", 12)
}

// expandLabel is HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
func expandLabel(t *testing.T, h func() hash.Hash, secret []byte, label string, n int) []byte {
	t.Helper()
	full := "tls13 " + label
	info := []byte{byte(n >> 8), byte(n), byte(len(full))}
	info = append(info, full...)
	info = append(info, 0)
	out, err := hkdf.Expand(h, secret, string(info), n)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// corkedConn passes the first Write (the ClientHello) straight through and
// holds every later one until flush, so that the client's last handshake
// flight and its first application data reach the server in one write.
type corkedConn struct {
	net.Conn
	writes int
	held   []byte
}

func (c *corkedConn) Write(b []byte) (int, error) {
	c.writes++
	if c.writes == 1 {
		return c.Conn.Write(b)
	}
	c.held = append(c.held, b...)
	return len(b), nil
}

func (c *corkedConn) flush() error {
	if len(c.held) == 0 {
		return errors.New("nothing held")
	}
	_, err := c.Conn.Write(c.held)
	c.held = nil
	return err
}

// recordingConn keeps a copy of everything read through it.
type recordingConn struct {
	net.Conn
	got bytes.Buffer
}

func (c *recordingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.got.Write(b[:n])
	return n, err
}
