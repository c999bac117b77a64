package tlsrecord

import (
	"bytes"
	"encoding/hex"
	"fmt"
)

// The NSS key log labels crypto/tls writes for TLS 1.3, and the TLS 1.2
// master-secret label, so a line of either version parses.
const (
	LabelClientHandshake = "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
	LabelServerHandshake = "SERVER_HANDSHAKE_TRAFFIC_SECRET"
	LabelClientTraffic   = "CLIENT_TRAFFIC_SECRET_0"
	LabelServerTraffic   = "SERVER_TRAFFIC_SECRET_0"
	LabelExporter        = "EXPORTER_SECRET"
	LabelClientRandom    = "CLIENT_RANDOM"
)

// KeyLogLine is one parsed NSS key log line: "<label> <client random hex>
// <secret hex>". ClientRandom names the connection (the handshake side
// reads it from ClientHelloInfo or ConnectionState to pair lines with
// connections).
type KeyLogLine struct {
	Label        string
	ClientRandom [32]byte
	Secret       []byte
}

// ParseKeyLogLine parses one key log line, with or without its trailing
// newline. It is strict: exactly three fields separated by single spaces,
// a known label, a 32-byte client random and a secret of the length the
// label implies (32 or 48 bytes for TLS 1.3 secrets, 48 for CLIENT_RANDOM),
// all in hexadecimal. Comments and blank lines are errors: crypto/tls
// writes neither.
func ParseKeyLogLine(line []byte) (KeyLogLine, error) {
	var kl KeyLogLine
	line = bytes.TrimSuffix(line, []byte("\n"))
	fields := bytes.Split(line, []byte(" "))
	if len(fields) != 3 {
		return kl, fmt.Errorf("tlsrecord: key log line has %d space-separated fields, want 3 (label, client random, secret)", len(fields))
	}
	label := string(fields[0])
	switch label {
	case LabelClientHandshake, LabelServerHandshake, LabelClientTraffic, LabelServerTraffic, LabelExporter, LabelClientRandom:
	default:
		return kl, fmt.Errorf("tlsrecord: key log label %q is not one this parser knows", truncate(fields[0]))
	}
	kl.Label = label
	if len(fields[1]) != 2*len(kl.ClientRandom) {
		return kl, fmt.Errorf("tlsrecord: key log %s: client random has %d hex digits, want %d", label, len(fields[1]), 2*len(kl.ClientRandom))
	}
	if _, err := hex.Decode(kl.ClientRandom[:], fields[1]); err != nil {
		return kl, fmt.Errorf("tlsrecord: key log %s: client random: %w", label, err)
	}
	n := len(fields[2])
	okLen := n == 2*48 || (label != LabelClientRandom && n == 2*32)
	if !okLen {
		return kl, fmt.Errorf("tlsrecord: key log %s: secret has %d hex digits, want %s", label, n, map[bool]string{true: "96", false: "64 or 96"}[label == LabelClientRandom])
	}
	kl.Secret = make([]byte, n/2)
	if _, err := hex.Decode(kl.Secret, fields[2]); err != nil {
		return KeyLogLine{}, fmt.Errorf("tlsrecord: key log %s: secret: %w", label, err)
	}
	return kl, nil
}

func truncate(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}
