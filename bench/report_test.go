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
- servers (server pinned to CPU 0, generator to CPU 1), each started on a free port ({addr}):
  - uring: ` + "`" + `bin/ringrelay -listen {addr} -backend uring` + "`" + `
  - epoll: ` + "`" + `bin/ringrelay -listen {addr} -backend epoll` + "`" + `
- 1 run(s) per point and server, median shown; 500ms warm-up, 5s measured
- frames/s: frames delivered to clients (pingpong counts both directions); MB/s: payload, 10^6 B/s; CPU µs/frame: server CPU time over the window / frames delivered; gen CPU %: the generator's own CPU time, % of one core

### uring vs epoll

In parentheses: the ratio to uring, the first column (for frames/s above 1x is faster than uring; for p99, CPU µs/frame and memory below 1x is better). A * marks a median taken with the generator near saturation: that figure may measure the generator, not the server.

frames/s:

| point | uring | epoll | status |
| --- | ---: | ---: | --- |
| pingpong-p50-w16 | 500,000 * | 400,000 (0.80x) | ok |
| flood-1k | 254,955 | 379,845 (1.49x) | FAILED (epoll) |

round-trip p99 µs:

| point | uring | epoll | status |
| --- | ---: | ---: | --- |
| pingpong-p50-w16 | 9,000 | 10,000 (1.11x) | ok |

server CPU µs/frame:

| point | uring | epoll | status |
| --- | ---: | ---: | --- |
| pingpong-p50-w16 | 1.20 | 1.80 (1.50x) | ok |
| flood-1k | 3.92 | 2.55 (0.65x) | FAILED (epoll) |

server memory per idle connection, KiB (RSS growth / connections):

| point | uring | epoll | status |
| --- | ---: | ---: | --- |
| idle-1000 | 1.00 | 2.00 (2.00x) | ok |

### All figures

| point | server | frames/s | MB/s | p50 µs | p99 µs | p99.9 µs | max µs | srv CPU µs/frame | srv RSS MiB | RSS/conn KiB | gen CPU % | errors |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| idle-1000 | uring | - | - | - | - | - | - | - | 18.0 | 1.00 | - | 0 |
| idle-1000 | epoll | - | - | - | - | - | - | - | 19.0 | 2.00 | - | 0 |
| pingpong-p50-w16 | uring | 500,000 | 32.0 | 1,844 | 9,000 | 12,000 | 15,000 | 1.20 | 14.0 | - | 95 | 0 |
| pingpong-p50-w16 | epoll | 400,000 | 25.6 | 3,158 | 10,000 | 13,156 | 15,065 | 1.80 | 10.0 | - | 78 | 0 |
| flood-1k | uring | 254,955 | 261.1 | - | - | - | - | 3.92 | 32.0 | - | 24 | 0 |
| flood-1k | epoll | 379,845 | 389.0 | - | - | - | - | 2.55 | 10.0 | - | 66 | FAILED (2) |

Generator near saturation (>= 90% of the CPUs it could use); these rows may understate the server: pingpong-p50-w16 on uring (95%).

### Errors

- flood-1k on epoll: 2 error(s)
  - flood receiver: frame out of order: sender 0 sent seq 7, want 6

`
	if got := b.String(); got != want {
		t.Errorf("markdown differs.\n--- got:\n%s\n--- want:\n%s", got, want)
	}
}

// An opponent is a column like the backends: its command is listed, and
// each of its figures carries its ratio to the first column.
func TestWriteMarkdownWithOpponent(t *testing.T) {
	var b strings.Builder
	if err := WriteMarkdown(&b, withOpponent(fixedReport())); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{
		"  - c: `/tmp/ref/c-uring-relay {addr}`\n",
		"### uring vs epoll vs c\n",
		"| point | uring | epoll | c | status |\n",
		"| pingpong-p50-w16 | 500,000 * | 400,000 (0.80x) | 1,000,000 (2.00x) | ok |\n",
		"| pingpong-p50-w16 | 9,000 | 10,000 (1.11x) | 4,500 (0.50x) | ok |\n",
		"| flood-1k | 3.92 | 2.55 (0.65x) | 2.00 (0.51x) | FAILED (epoll) |\n",
		"| idle-1000 | 1.00 | 2.00 (2.00x) | 4.00 (4.00x) | ok |\n",
		"| pingpong-p50-w16 | c | 1,000,000 | 64.0 | 900.0 | 4,500 |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
}

// The generator is the limit when its CPU time reaches 90% of the CPUs it
// could keep busy: the fewer of its threads and its pinned CPUs.
func TestGeneratorBound(t *testing.T) {
	r := fixedReport()
	r.Settings.GeneratorCPUs = []int{1, 2, 3, 4}
	for _, tc := range []struct {
		cpu     float64
		threads int
		want    bool
	}{
		{95, 1, true},   // one thread, one CPU's worth: saturated
		{95, 4, false},  // four threads could use 400%
		{370, 4, true},  // ... and nearly do
		{370, 0, true},  // unknown threads: the pinned CPUs count
		{300, 0, false}, // 75% of 4 CPUs
		{95, 8, false},  // more threads than CPUs: the CPUs count
	} {
		if got := generatorBound(r, Figures{GeneratorCPU: tc.cpu, GeneratorThreads: tc.threads}); got != tc.want {
			t.Errorf("%.0f%% with %d threads on 4 CPUs: bound %v, want %v", tc.cpu, tc.threads, got, tc.want)
		}
	}
	r.Settings.GeneratorCPUs = nil
	if !generatorBound(r, Figures{GeneratorCPU: 95, GeneratorThreads: 1}) {
		t.Error("an unpinned generator with one busy thread is not flagged")
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

// Runs that disagree by more than 1.5x are named with their range; a
// spread within that, a single run and a failed run are not.
func TestWriteMarkdownNamesDisagreeingRuns(t *testing.T) {
	r := fixedReport()
	r.Settings.Runs = 3
	runs := func(fps ...float64) []Figures {
		fs := make([]Figures, len(fps))
		for i, v := range fps {
			fs[i] = Figures{Seconds: 5, Conns: 2, Frames: int64(v * 5), FramesPerSec: v}
		}
		return fs
	}
	pp, fl := &r.Points[1], &r.Points[2]
	pp.Backends[0].Runs = runs(480000, 500000, 560000) // 1.17x: noise
	pp.Backends[1].Runs = runs(9810, 24051, 12865)     // 2.45x: two behaviours
	fl.Backends[0].Runs = runs(100000, 149000)         // 1.49x: under the limit
	failed := runs(100000, 400000)
	failed[1].Errors = 1
	fl.Backends[1].Runs = failed // the failed run does not count
	var b strings.Builder
	if err := WriteMarkdown(&b, r); err != nil {
		t.Fatal(err)
	}
	want := "\nRuns disagree (the fastest over 1.5x the slowest); the median of these rows stands for neither: pingpong-p50-w16 on epoll (9,810 to 24,051 frames/s).\n"
	if got := b.String(); !strings.Contains(got, want) {
		t.Errorf("missing %q (and nothing else on that line) in:\n%s", want, got)
	}

	b.Reset()
	if err := WriteMarkdown(&b, fixedReport()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "Runs disagree") {
		t.Errorf("single runs were said to disagree:\n%s", b.String())
	}
}
