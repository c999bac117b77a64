package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	pem := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(pem, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := func() Config {
		c := DefaultConfig()
		c.Servers = []string{"nats://127.0.0.1:4222"}
		return c
	}
	cases := []struct {
		name string
		mod  func(*Config)
		err  string
	}{
		{"defaults with a server", func(*Config) {}, ""},
		{"tls and a CA file", func(c *Config) { c.Servers = []string{"tls://h:4222"}; c.TLSCA = pem }, ""},
		{"user and password", func(c *Config) { c.User, c.Password = "u", "p" }, ""},
		{"no server", func(c *Config) { c.Servers = nil }, "no NATS server"},
		{"not a URL", func(c *Config) { c.Servers = []string{"127.0.0.1:4222"} }, "want a URL"},
		{"http", func(c *Config) { c.Servers = []string{"http://h:80"} }, `scheme "http"`},
		{"wildcard name", func(c *Config) { c.Name = "ring.*" }, `'*' is not allowed`},
		{"empty token", func(c *Config) { c.Name = "ring..relay" }, "empty token"},
		{"node too big", func(c *Config) { c.Node = 16 }, "node 16: with node-bits 4 it must be 0 to 15"},
		{"node-bits 17", func(c *Config) { c.NodeBits = 17 }, "node-bits 17: must be 0 to 16"},
		{"node-bits 0", func(c *Config) { c.NodeBits = 0 }, "a cluster needs at least 1"},
		{"creds and user", func(c *Config) { c.CredsFile = pem; c.User, c.Password = "u", "p" }, "one or the other"},
		{"user alone", func(c *Config) { c.User = "u" }, "go together"},
		{"cert without key", func(c *Config) { c.TLSCert = pem }, "cluster-tls-cert and cluster-tls-key go together"},
		{"missing CA", func(c *Config) { c.TLSCA = filepath.Join(dir, "nope.pem") }, "cluster-tls-ca: stat"},
		{"max-frame 0", func(c *Config) { c.MaxFrame = 0 }, "max-frame 0"},
		{"batch below a frame", func(c *Config) { c.MaxBatch = 1 << 20 }, "must hold one frame of max-frame 1MiB (at least 1048593B)"},
		{"announce 0", func(c *Config) { c.AnnounceEvery = 0 }, "announce interval"},
		{"missed 0", func(c *Config) { c.AnnounceMissed = 0 }, "missed 0"},
		{"startup 0", func(c *Config) { c.StartupWait = 0 }, "duplicate -node"},
		{"pending small", func(c *Config) { c.PendingBytes = 1 << 20 }, "pending limits"},
		{"reconnect 0", func(c *Config) { c.ReconnectWait = 0 }, "reconnect wait"},
		{"sink wait negative", func(c *Config) { c.SinkWait = -time.Second }, "sink wait"},
		{"no logger", func(c *Config) { c.Logger = nil }, "no logger"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mod(&c)
			err := c.Validate()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("err %v, want one with %q", err, tc.err)
			}
		})
	}
}

func TestParseServers(t *testing.T) {
	got := ParseServers(" nats://a:1, ,nats://b:2,")
	if len(got) != 2 || got[0] != "nats://a:1" || got[1] != "nats://b:2" {
		t.Fatalf("%q", got)
	}
	if ParseServers("") != nil {
		t.Fatal("an empty -cluster gives servers")
	}
}

func TestAnnouncementCodec(t *testing.T) {
	a := announcement{node: 5, state: stateServing, ask: true, instance: 0xdeadbeef}
	got, err := decodeAnnouncement(a.encode(), 16)
	if err != nil || got != a {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	bad := func(mod func([]byte)) []byte {
		b := a.encode()
		mod(b)
		return b
	}
	for name, b := range map[string][]byte{
		"short":      a.encode()[:15],
		"magic":      bad(func(b []byte) { b[0] = 'X' }),
		"version":    bad(func(b []byte) { b[3] = 2 }),
		"node":       bad(func(b []byte) { b[5] = 16 }),
		"state 0":    bad(func(b []byte) { b[6] = 0 }),
		"state 4":    bad(func(b []byte) { b[6] = 4 }),
		"flags":      bad(func(b []byte) { b[7] = 2 }),
		"instance 0": bad(func(b []byte) { copy(b[8:], make([]byte, 8)) }),
		"long":       append(a.encode(), 0),
	} {
		if _, err := decodeAnnouncement(b, 16); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
