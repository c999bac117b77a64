package bench

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/servertest"
)

func TestParseOpponent(t *testing.T) {
	for _, tc := range []struct {
		spec string
		name string
		argv []string
	}{
		{"c=/tmp/ref/c-uring-relay {addr}", "c", []string{"/tmp/ref/c-uring-relay", "{addr}"}},
		{"gnet = /tmp/ref/gnet-relay -multicore=false  -addr {addr}", "gnet", []string{"/tmp/ref/gnet-relay", "-multicore=false", "-addr", "{addr}"}},
		{`x=/opt/my relay/x "--name=a b" 'it''s' --port={port} a\ b`, "x", []string{"/opt/my", "relay/x", "--name=a b", "its", "--port={port}", "a b"}},
		{`q="/opt/my relay/x" -l {host}:{port} ''`, "q", []string{"/opt/my relay/x", "-l", "{host}:{port}", ""}},
	} {
		c, err := ParseOpponent(tc.spec)
		if err != nil {
			t.Errorf("%q: %v", tc.spec, err)
			continue
		}
		if c.Name != tc.name || !slices.Equal(c.Argv, tc.argv) {
			t.Errorf("%q: got %q %q, want %q %q", tc.spec, c.Name, c.Argv, tc.name, tc.argv)
		}
	}
	for _, bad := range []string{
		"/tmp/ref/c-uring-relay {addr}",           // no name
		"=/tmp/ref/c-uring-relay {addr}",          // empty name
		"my c=/tmp/ref/c-uring-relay {addr}",      // blank in the name
		"c=",                                      // no command
		"c=/tmp/ref/c-uring-relay 127.0.0.1:9106", // no placeholder: it would listen elsewhere
		`c=/tmp/ref/c-uring-relay "{addr}`,        // open quote
	} {
		if c, err := ParseOpponent(bad); err == nil {
			t.Errorf("%q accepted as %+v", bad, c)
		}
	}
}

func TestContenderAddressAndCommandLine(t *testing.T) {
	c, err := ParseOpponent(`g=/bin/relay -addr {addr} -host {host} -port {port} "two words"`)
	if err != nil {
		t.Fatal(err)
	}
	got := c.argv("127.0.0.1:9106", Placement{})
	want := []string{"/bin/relay", "-addr", "127.0.0.1:9106", "-host", "127.0.0.1", "-port", "9106", "two words"}
	if !slices.Equal(got, want) {
		t.Errorf("argv %q, want %q", got, want)
	}
	if line := c.CommandLine(); line != `/bin/relay -addr {addr} -host {host} -port {port} 'two words'` {
		t.Errorf("command line %s", line)
	}
	// What CommandLine prints parses back to the same arguments.
	back, err := ParseOpponent("g=" + c.CommandLine())
	if err != nil || !slices.Equal(back.Argv, c.Argv) {
		t.Errorf("round trip: %q, %v", back.Argv, err)
	}
	b := Backend("/bin/ringrelay", "epoll", []string{"-max-conns=5"})
	if !slices.Equal(b.argv("h:1", Placement{}), []string{"/bin/ringrelay", "-listen", "h:1", "-backend", "epoll", "-max-conns=5"}) {
		t.Errorf("backend argv %q", b.argv("h:1", Placement{}))
	}
}

// Compare runs an opponent exactly like a backend: here ringrelay's own
// binary, started through -opponent syntax, beside the epoll backend. Both
// columns are measured, the opponent's command is recorded, and the report
// shows ratios against the first column.
func TestCompareWithOpponent(t *testing.T) {
	bin := filepath.Join(servertest.Binaries(t), "ringrelay")
	opp, err := ParseOpponent("other=" + bin + " -backend epoll -listen {addr}")
	if err != nil {
		t.Fatal(err)
	}
	cfg := CompareConfig{
		Columns:  []Contender{Backend(bin, "epoll", nil), opp},
		Points:   []Point{must(NewPoint("pingpong", 2, 4, 0, 0, 64)), must(NewPoint("idle", 0, 0, 0, 50, 0))},
		Runs:     2,
		Warmup:   50 * time.Millisecond,
		Duration: 200 * time.Millisecond,
	}
	var log strings.Builder
	r, err := Compare(context.Background(), cfg, NewProgress(&log))
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if r.Failed() {
		t.Fatalf("a point failed: %+v", r.Points)
	}
	if !slices.Equal(r.Settings.Backends, []string{"epoll", "other"}) || !strings.Contains(r.Settings.Commands["other"], "-listen {addr}") {
		t.Errorf("settings %+v", r.Settings)
	}
	if !strings.Contains(r.Settings.StartLines["epoll"], "listening") {
		t.Errorf("start line of the backend: %q", r.Settings.StartLines["epoll"])
	}
	for _, p := range r.Points {
		for _, br := range p.Backends {
			if len(br.Runs) != 2 || !br.Median.ServerMeasured || br.Median.ServerRSS <= 0 {
				t.Errorf("%s on %s: %+v", p.Point.Name, br.Backend, br)
			}
			if p.Point.Workload == "pingpong" && (br.Median.FramesPerSec <= 0 || br.Median.ServerCPUSeconds < 0) {
				t.Errorf("%s on %s: nothing measured: %+v", p.Point.Name, br.Backend, br.Median)
			}
		}
	}
	var md strings.Builder
	if err := WriteMarkdown(&md, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "| point | epoll | other | status |") || !strings.Contains(md.String(), "x) | ok |") {
		t.Errorf("no side-by-side table with ratios:\n%s", md.String())
	}
}

// An opponent that cannot start is an error that names it and shows its
// output.
func TestStartServerReportsAFailedOpponent(t *testing.T) {
	c, err := ParseOpponent("broken=/bin/sh -c 'echo no such flag {addr} >&2; exit 2'")
	if err != nil {
		t.Fatal(err)
	}
	_, err = StartServer(context.Background(), c, Placement{})
	if err == nil || !strings.Contains(err.Error(), "broken") || !strings.Contains(err.Error(), "no such flag 127.0.0.1:") {
		t.Errorf("error: %v", err)
	}
}
