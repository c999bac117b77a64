package bench

import (
	"strings"
	"testing"
)

func TestWriteMarkdown(t *testing.T) {
	var b strings.Builder
	if err := WriteMarkdown(&b, fixedReport()); err != nil {
		t.Fatal(err)
	}
	want := `## ringbench, 2025-11-25 20:40:03 UTC

- machine: Test CPU <3GHz>, 2 cores, Linux 6.18.0 x86_64, go1.26
- server: ` + "`bin/ringrelay`" + `, server pinned to CPU 0, generator to CPU 1
- 1 run(s) per point and backend, median shown; 500ms warm-up, 5s measured
- frames/s: frames delivered to clients (pingpong counts both directions); MB/s: payload, 10^6 B/s; CPU µs/frame: server CPU time over the window / frames delivered; gen CPU %: the generator's own CPU time, % of one core

### uring vs epoll

Ratios are uring/epoll: for frames/s above 1 favours uring; for p99 and CPU/frame below 1 favours uring.

| point | frames/s uring | frames/s epoll | ratio | p99 µs uring | p99 µs epoll | ratio | CPU µs/frame uring | CPU µs/frame epoll | ratio | status |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |
| pingpong-p50-w16 | 500,000 | 400,000 | 1.25 | 9,000 | 10,000 | 0.90 | 1.20 | 1.80 | 0.67 | ok |
| flood-1k | 254,955 | 379,845 | 0.67 | - | - | - | 3.92 | 2.55 | 1.54 | FAILED (epoll) |

Server memory per idle connection (RSS growth / connections; below 1 favours uring):

| point | RSS/conn KiB uring | RSS/conn KiB epoll | ratio | status |
| --- | ---: | ---: | ---: | --- |
| idle-1000 | 1.00 | 2.00 | 0.50 | ok |

### All figures

| point | backend | frames/s | MB/s | p50 µs | p99 µs | p99.9 µs | max µs | srv CPU µs/frame | srv RSS MiB | RSS/conn KiB | gen CPU % | errors |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| idle-1000 | uring | - | - | - | - | - | - | - | 18.0 | 1.00 | - | 0 |
| idle-1000 | epoll | - | - | - | - | - | - | - | 19.0 | 2.00 | - | 0 |
| pingpong-p50-w16 | uring | 500,000 | 32.0 | 1,844 | 9,000 | 12,000 | 15,000 | 1.20 | 14.0 | - | 95 | 0 |
| pingpong-p50-w16 | epoll | 400,000 | 25.6 | 3,158 | 10,000 | 13,156 | 15,065 | 1.80 | 10.0 | - | 78 | 0 |
| flood-1k | uring | 254,955 | 261.1 | - | - | - | - | 3.92 | 32.0 | - | 24 | 0 |
| flood-1k | epoll | 379,845 | 389.0 | - | - | - | - | 2.55 | 10.0 | - | 66 | FAILED (2) |

Generator near saturation (>= 90% of its 1 CPU(s)); these rows may understate the server: pingpong-p50-w16 on uring (95%).

### Errors

- flood-1k on epoll: 2 error(s)
  - flood receiver: frame out of order: sender 0 sent seq 7, want 6

`
	if got := b.String(); got != want {
		t.Errorf("markdown differs.\n--- got:\n%s\n--- want:\n%s", got, want)
	}
}

func TestWriteMarkdownOneBackendHasNoComparison(t *testing.T) {
	r := fixedReport()
	r.Settings.Backends = r.Settings.Backends[:1]
	for i := range r.Points {
		r.Points[i].Backends = r.Points[i].Backends[:1]
	}
	var b strings.Builder
	if err := WriteMarkdown(&b, r); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "| ratio |") {
		t.Errorf("a single backend got a ratio column:\n%s", b.String())
	}
	if !strings.Contains(b.String(), "| pingpong-p50-w16 | uring | 500,000 |") {
		t.Errorf("the details row is missing:\n%s", b.String())
	}
}

func TestNumberFormats(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{count(0), "-"},
		{count(999.4), "999"},
		{count(1000), "1,000"},
		{count(1234567.8), "1,234,568"},
		{micros(3.456), "3.46"},
		{micros(45.66), "45.7"},
		{micros(1844), "1,844"},
		{ratio(3, 0), "-"},
		{ratio(1, 3), "0.33"},
		{si(950), "950"},
		{si(12500), "12.5k"},
		{si(1e6), "1M"},
		{si(3.45e6), "3.45M"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
