package relay

import (
	"net/netip"
	"testing"
	"time"
)

func TestIPKeyGroupsIPv6ByPrefix(t *testing.T) {
	for _, tc := range []struct {
		addr    string
		prefix6 int
		want    string
	}{
		{"192.0.2.7", 64, "192.0.2.7"},
		{"2001:db8:1:2:aaaa::1", 64, "2001:db8:1:2::"},
		{"2001:db8:1:2:bbbb::9", 64, "2001:db8:1:2::"},
		{"2001:db8:1:3::1", 64, "2001:db8:1:3::"},
		{"2001:db8:1:2:aaaa::1", 48, "2001:db8:1::"},
		{"2001:db8:1:2:aaaa::1", 128, "2001:db8:1:2:aaaa::1"},
		{"::1", 64, "::"},
	} {
		got := ipKey(netip.MustParseAddr(tc.addr), tc.prefix6)
		if got != netip.MustParseAddr(tc.want) {
			t.Errorf("ipKey(%s, /%d) = %s, want %s", tc.addr, tc.prefix6, got, tc.want)
		}
	}
}

func TestIPTableLimits(t *testing.T) {
	var tb ipTable
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	t0 := time.Unix(1000, 0)

	// Open connections: two from a, the third refused; b is apart.
	for i := range 2 {
		if !tb.acquire(a, t0, 2, 0) {
			t.Fatalf("connection %d from a refused under a limit of 2", i+1)
		}
	}
	if tb.acquire(a, t0, 2, 0) {
		t.Fatal("a third open connection from a admitted over a limit of 2")
	}
	if !tb.acquire(b, t0, 2, 0) {
		t.Fatal("b refused for a's connections")
	}
	tb.release(a, t0)
	if !tb.acquire(a, t0, 2, 0) {
		t.Fatal("a refused after one of its connections closed")
	}

	// New connections per second: 3 per second, refused attempts count.
	var rt ipTable
	for i := range 3 {
		if !rt.acquire(a, t0, 0, 3) {
			t.Fatalf("new connection %d in the first second refused", i+1)
		}
	}
	if rt.acquire(a, t0.Add(999*time.Millisecond), 0, 3) {
		t.Fatal("a fourth new connection in one second admitted over a rate of 3")
	}
	if !rt.acquire(a, t0.Add(time.Second), 0, 3) {
		t.Fatal("a new connection in the next second refused")
	}

	// Addresses with nothing open are forgotten within a second.
	for range 4 {
		rt.release(a, t0.Add(time.Second))
	}
	rt.acquire(b, t0.Add(3*time.Second), 0, 0)
	if _, ok := rt.addrs[a]; ok || len(rt.addrs) != 1 {
		t.Errorf("table holds %d addresses after a closed everything; want only b", len(rt.addrs))
	}
}
