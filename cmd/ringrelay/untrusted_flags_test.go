package main

import (
	"io"
	"strings"
	"testing"
)

func TestUntrustedFlags(t *testing.T) {
	c, err := parseFlags([]string{"-max-memory=256MiB", "-max-conns-per-ip=10", "-max-new-conns-per-ip=5", "-conns-per-ip-prefix6=48", "-max-unknown-dest=100", "-unknown-dest-window=1m"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Relay
	if r.MaxMemory != 256<<20 || r.MaxConnsPerIP != 10 || r.MaxNewConnsPerIP != 5 || r.ConnsPerIPPrefix6 != 48 || r.MaxUnknownDest != 100 || r.UnknownDestWindow.Minutes() != 1 {
		t.Errorf("flags gave %+v", r)
	}
	auto, note := defaultMaxMemory()
	if c, err := parseFlags([]string{"-max-memory=auto"}, io.Discard); err != nil || c.Relay.MaxMemory != auto {
		t.Errorf("-max-memory=auto gave %d, %v; want %d (%s)", c.Relay.MaxMemory, err, auto, note)
	}
	if avail, _ := memoryAvailable(); avail > 0 && (auto > avail/4 || auto < avail/4-(1<<20)) {
		t.Errorf("auto budget %d is not a quarter of the %d bytes the process may use", auto, avail)
	}
	if c, err := parseFlags([]string{"-max-memory=0"}, io.Discard); err != nil || c.Relay.MaxMemory != 0 {
		t.Errorf("-max-memory=0 gave %d, %v; want 0 (off)", c.Relay.MaxMemory, err)
	}
	for _, tc := range []struct{ arg, want string }{
		{"-max-memory=-1", "-max-memory"},
		{"-max-memory=lots", "-max-memory"},
		{"-max-conns-per-ip=-1", "max-conns-per-ip -1: must not be negative"},
		{"-max-new-conns-per-ip=-3", "max-new-conns-per-ip -3: must not be negative"},
		{"-conns-per-ip-prefix6=0", "conns-per-ip-prefix6 0: must be between 1 and 128"},
		{"-conns-per-ip-prefix6=129", "conns-per-ip-prefix6 129: must be between 1 and 128"},
		{"-max-unknown-dest=-1", "max-unknown-dest -1: must not be negative"},
		{"-unknown-dest-window=0s", "unknown-dest-window 0s: must be positive"},
	} {
		_, err := parseFlags([]string{tc.arg}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %q", tc.arg, err, tc.want)
		}
	}
	// A bad value exits 2 with the one-line message.
	var stdout, stderr strings.Builder
	if code := run([]string{"-max-conns-per-ip=-1"}, &stdout, &stderr); code != 2 {
		t.Errorf("run -max-conns-per-ip=-1 = %d, want 2", code)
	}
}
