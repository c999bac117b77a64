package tlsrecord

import (
	"bytes"
	"strings"
	"testing"
)

const (
	klRandom = "52362c10a2665e323a2adb4b9da0c10d4a8823719272f8b4c97af24f92784812"
	klSecret = "9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5"
)

func TestParseKeyLogLine(t *testing.T) {
	kl, err := ParseKeyLogLine([]byte(LabelClientTraffic + " " + klRandom + " " + klSecret + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if kl.Label != LabelClientTraffic || !bytes.Equal(kl.ClientRandom[:], unhex(t, klRandom)) || !bytes.Equal(kl.Secret, unhex(t, klSecret)) {
		t.Fatalf("parsed %+v", kl)
	}
	s384 := strings.Repeat("ab", 48)
	if kl, err := ParseKeyLogLine([]byte(LabelServerTraffic + " " + klRandom + " " + s384)); err != nil || len(kl.Secret) != 48 {
		t.Fatalf("48-byte secret: %v, %d bytes", err, len(kl.Secret))
	}
	if _, err := ParseKeyLogLine([]byte(LabelClientRandom + " " + klRandom + " " + s384)); err != nil {
		t.Fatalf("TLS 1.2 line: %v", err)
	}
}

func TestParseKeyLogLineRejects(t *testing.T) {
	for _, tc := range []struct{ line, why string }{
		{"", "fields"},
		{"\n", "fields"},
		{"# comment", "fields"},
		{LabelClientTraffic + " " + klRandom, "fields"},
		{LabelClientTraffic + "  " + klRandom + " " + klSecret, "fields"},
		{LabelClientTraffic + " " + klRandom + " " + klSecret + " extra", "fields"},
		{LabelClientTraffic + " " + klRandom + " " + klSecret + "\r\n", "secret"},
		{"CLIENT_TRAFFIC_SECRET_1 " + klRandom + " " + klSecret, "label"},
		{"client_traffic_secret_0 " + klRandom + " " + klSecret, "label"},
		{LabelClientTraffic + " " + klRandom[:62] + " " + klSecret, "client random"},
		{LabelClientTraffic + " " + "zz" + klRandom[2:] + " " + klSecret, "client random"},
		{LabelClientTraffic + " " + klRandom + " " + klSecret[:62], "secret"},
		{LabelClientTraffic + " " + klRandom + " " + klSecret[:63] + "g", "secret"},
		{LabelClientRandom + " " + klRandom + " " + klSecret, "secret"},
	} {
		_, err := ParseKeyLogLine([]byte(tc.line))
		if err == nil {
			t.Errorf("%q parsed", tc.line)
			continue
		}
		if !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%q: error %q does not say what is wrong (%s)", tc.line, err, tc.why)
		}
	}
}
