package tlshandshake

// The one place that reads NSS key log lines. crypto/tls hands out a
// connection's traffic secrets only through Config.KeyLogWriter, one line
// per secret. When the record layer (tlsrecord) lands, parseKeyLogLine is
// replaced by its parser; nothing else in the package reads the format.

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
)

// Labels of the two secrets the record layer needs (RFC 8446 §7.1;
// NSS key log names).
const (
	labelClientTraffic = "CLIENT_TRAFFIC_SECRET_0"
	labelServerTraffic = "SERVER_TRAFFIC_SECRET_0"
)

var errKeyLogLine = errors.New("malformed key log line")

// parseKeyLogLine splits one NSS key log line, "LABEL <client random in
// hex> <secret in hex>", with or without its newline. The client random
// is 32 bytes; the secret is as long as the suite's hash.
func parseKeyLogLine(line []byte) (label string, clientRandom, secret []byte, err error) {
	line = bytes.TrimRight(line, "\r\n")
	f := bytes.Fields(line)
	if len(f) != 3 {
		return "", nil, nil, fmt.Errorf("%w: %d fields, want 3", errKeyLogLine, len(f))
	}
	clientRandom, err = hex.AppendDecode(nil, f[1])
	if err != nil || len(clientRandom) != 32 {
		return "", nil, nil, fmt.Errorf("%w: client random is not 32 bytes of hex", errKeyLogLine)
	}
	secret, err = hex.AppendDecode(nil, f[2])
	if err != nil || len(secret) == 0 {
		return "", nil, nil, fmt.Errorf("%w: secret is not hex", errKeyLogLine)
	}
	return string(f[0]), clientRandom, secret, nil
}
