package tlshandshake

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseKeyLogLine(t *testing.T) {
	random := strings.Repeat("ab", 32)
	label, r, secret, err := parseKeyLogLine([]byte("CLIENT_TRAFFIC_SECRET_0 " + random + " 00ff10\n"))
	if err != nil || label != labelClientTraffic || len(r) != 32 || r[0] != 0xab || !bytes.Equal(secret, []byte{0, 0xff, 0x10}) {
		t.Errorf("got %q %x %x %v", label, r, secret, err)
	}
	for _, bad := range []string{
		"",
		"CLIENT_TRAFFIC_SECRET_0 " + random, // no secret
		"CLIENT_TRAFFIC_SECRET_0 abcd 00ff", // short random
		"CLIENT_TRAFFIC_SECRET_0 " + random + " 0g",           // not hex
		"CLIENT_TRAFFIC_SECRET_0 " + random + " 00 extra",     // a fourth field
		"CLIENT_TRAFFIC_SECRET_0 " + random[:63] + "x 00ff\n", // random not hex
	} {
		if _, _, _, err := parseKeyLogLine([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
