package tlshandshake

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// CertFiles names the PEM files a CertStore loads.
type CertFiles struct {
	Cert, Key string // the server's certificate chain and its private key
	// ClientCA, when set, makes a client certificate mandatory: it must
	// verify against the certificates in this file (mutual TLS).
	ClientCA string
}

// CertStore holds the certificate that new handshakes present and, with
// mutual TLS, the client CA pool. Reload swaps both in one atomic store,
// so a handshake sees either the old pair or the new one, never a mix;
// handshakes already past their ClientHello, and connections already
// handed over, are not affected.
type CertStore struct {
	files  CertFiles
	logger *slog.Logger

	cur atomic.Pointer[certs]

	reloadMu      sync.Mutex // one Reload at a time: SIGHUPs may come close together
	reloadsOK     atomic.Uint64
	reloadsFailed atomic.Uint64
}

// certs is one loaded generation of the files.
type certs struct {
	cert      tls.Certificate
	clientCAs *x509.CertPool // nil without mutual TLS
	notAfter  time.Time      // of the leaf certificate
}

// LoadCerts loads files; a file that does not load is an error. logger
// (nil: none) hears about reloads.
func LoadCerts(files CertFiles, logger *slog.Logger) (*CertStore, error) {
	if files.Cert == "" || files.Key == "" {
		return nil, errors.New("tls: a certificate and a key file are both needed")
	}
	c, err := loadCerts(files)
	if err != nil {
		return nil, err
	}
	s := &CertStore{files: files, logger: logger}
	s.cur.Store(c)
	return s, nil
}

func loadCerts(f CertFiles) (*certs, error) {
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("tls: load certificate %s and key %s: %w", f.Cert, f.Key, err)
	}
	if cert.Leaf == nil { // LoadX509KeyPair fills it since Go 1.23
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls: parse certificate %s: %w", f.Cert, err)
		}
	}
	c := &certs{cert: cert, notAfter: cert.Leaf.NotAfter}
	if f.ClientCA != "" {
		pem, err := os.ReadFile(f.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("tls: client CA: %w", err)
		}
		c.clientCAs = x509.NewCertPool()
		if !c.clientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: client CA %s: no PEM certificate in it", f.ClientCA)
		}
	}
	return c, nil
}

// Reload loads the files again (the server calls it on SIGHUP). On
// success new handshakes present the new certificate and trust the new
// client CAs. On failure nothing changes: the old certificate stays, the
// failure is counted, logged and returned.
func (s *CertStore) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	c, err := loadCerts(s.files)
	if err != nil {
		s.reloadsFailed.Add(1)
		if s.logger != nil {
			s.logger.Error("tls: certificate reload failed, keeping the old certificate",
				"err", err, "not_after", s.NotAfter())
		}
		return err
	}
	s.cur.Store(c)
	s.reloadsOK.Add(1)
	if s.logger != nil {
		s.logger.Info("tls: certificate reloaded", "cert", s.files.Cert,
			"subject", c.cert.Leaf.Subject.String(), "not_after", c.notAfter)
	}
	return nil
}

// Mutual reports whether client certificates are required.
func (s *CertStore) Mutual() bool { return s.files.ClientCA != "" }

// NotAfter is when the certificate new handshakes present expires.
func (s *CertStore) NotAfter() time.Time { return s.cur.Load().notAfter }

// Reloads counts Reload calls by outcome.
func (s *CertStore) Reloads() (ok, failed uint64) {
	return s.reloadsOK.Load(), s.reloadsFailed.Load()
}

// serverConfig is the configuration one handshake runs with: TLS 1.3 only,
// no session tickets (nothing may follow the handshake that the loop would
// have to track), the current certificate, and client certificates
// verified against the current pool when mutual TLS is on. keys receives
// the connection's key log lines.
func (c *certs) serverConfig(keys *keyLog) *tls.Config {
	cfg := &tls.Config{
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		SessionTicketsDisabled: true,
		Certificates:           []tls.Certificate{c.cert},
		KeyLogWriter:           keys,
	}
	if c.clientCAs != nil {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = c.clientCAs
	}
	return cfg
}
