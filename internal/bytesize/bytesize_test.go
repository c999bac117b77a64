package bytesize

import "testing"

func TestFormat(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0B", 1: "1B", 1500: "1500B", 1024: "1KiB", 16 << 10: "16KiB",
		1 << 20: "1MiB", 3 << 30: "3GiB", 1<<20 + 1024: "1025KiB",
	} {
		if got := Format(n); got != want {
			t.Errorf("Format(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestParse(t *testing.T) {
	for s, want := range map[string]int64{
		"0": 0, "4096": 4096, "4096B": 4096, "4KiB": 4096, "1 MiB": 1 << 20,
		"2GiB": 2 << 30, "1024GiB": Max,
	} {
		got, err := Parse(s)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "-1", "1.5MiB", "1TiB", "1025GiB", "MiB", "ten", "1 KB"} {
		if n, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) = %d, want an error", s, n)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, n := range []int64{1, 512, 4 << 10, 1<<20 + 7, 1 << 30} {
		got, err := Parse(Format(n))
		if err != nil || got != n {
			t.Errorf("Parse(Format(%d)) = %d, %v", n, got, err)
		}
	}
}
