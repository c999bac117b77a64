package main

import "testing"

func TestParseLine(t *testing.T) {
	good := []struct {
		line string
		dest uint32
		text string
	}{
		{"1a5c59c9 hello, number 1", 0x1a5c59c9, "hello, number 1"},
		{"0x2F7F6B17 hi", 0x2f7f6b17, "hi"},
		{"12345 decimal id", 12345, "decimal id"},
		{"00000001 leading zeros are hex", 1, "leading zeros are hex"},
		{"ffffffff  two spaces keep one", 0xffffffff, " two spaces keep one"},
		{"1a5c59c9 ", 0x1a5c59c9, ""},
	}
	for _, g := range good {
		dest, text, err := parseLine(g.line)
		if err != nil || dest != g.dest || text != g.text {
			t.Errorf("parseLine(%q) = %08x %q %v, want %08x %q", g.line, dest, text, err, g.dest, g.text)
		}
	}
	for _, bad := range []string{"", "nonsense", "zzzzzzzz hi", "0x hi", "123456789012 too big", "-1 negative"} {
		if _, _, err := parseLine(bad); err == nil {
			t.Errorf("parseLine(%q) accepted", bad)
		}
	}
}
