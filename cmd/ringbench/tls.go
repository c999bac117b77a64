package main

// TLS columns for `ringbench compare`: -tls-backends runs ringrelay
// backends with -tls-cert and -tls-key as extra columns (named
// BACKEND-tls), -tls-opponent adds a relay that serves TLS, and the
// generator dials those columns over TLS 1.3, trusting -tls-ca.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/ringrelay/ringrelay/bench"
)

type tlsFlags struct {
	backends, cert, key, ca *string
	opponents               multiFlag
}

func defineTLSFlags(fs *flag.FlagSet) *tlsFlags {
	t := &tlsFlags{
		backends: fs.String("tls-backends", "", "comma-separated backends to run again serving TLS (-tls-cert, -tls-key), as columns named BACKEND-tls"),
		cert:     fs.String("tls-cert", "", "PEM `file`: the certificate the TLS columns serve ({tlscert} in a -tls-opponent command)"),
		key:      fs.String("tls-key", "", "PEM `file`: its private key ({tlskey} in a -tls-opponent command)"),
		ca:       fs.String("tls-ca", "", "PEM `file`: the CA the generator trusts for the TLS columns"),
	}
	fs.Var(&t.opponents, "tls-opponent", "a relay that serves TLS as a column, repeatable: `NAME=COMMAND` as -opponent\n"+
		"(e.g. -tls-opponent 'tls-relay=/tmp/ref/tls-relay -addr {addr} -cert {tlscert} -key {tlskey}')")
	return t
}

// columns returns the TLS columns the flags ask for (none without them).
func (t *tlsFlags) columns(server string, flags []string) ([]bench.Contender, error) {
	backends := splitList(*t.backends)
	if len(backends) == 0 && len(t.opponents) == 0 {
		return nil, nil
	}
	if *t.cert == "" || *t.key == "" || *t.ca == "" {
		return nil, usageError{errors.New("TLS columns need -tls-cert, -tls-key and -tls-ca")}
	}
	cfg, err := loadTLSClient(*t.ca)
	if err != nil {
		return nil, usageError{err}
	}
	var cols []bench.Contender
	if len(backends) > 0 {
		path, err := bench.FindServer(server)
		if err != nil {
			return nil, err
		}
		for _, b := range backends {
			cols = append(cols, bench.TLSBackend(path, b, *t.cert, *t.key, flags, cfg))
		}
	}
	for _, spec := range t.opponents {
		o, err := bench.ParseOpponent(spec)
		if err != nil {
			return nil, usageError{err}
		}
		for i, a := range o.Argv {
			switch a {
			case "{tlscert}":
				o.Argv[i] = *t.cert
			case "{tlskey}":
				o.Argv[i] = *t.key
			}
		}
		o.TLS = cfg
		cols = append(cols, o)
	}
	return cols, nil
}

// loadTLSClient is the generator's TLS configuration: trust the CA in
// caFile, expect a certificate for localhost (the servers run on
// loopback).
func loadTLSClient(caFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("-tls-ca: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("-tls-ca %s: no PEM certificate in it", caFile)
	}
	return &tls.Config{RootCAs: roots, ServerName: "localhost"}, nil
}
