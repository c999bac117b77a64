package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/ringrelay/ringrelay/internal/servertest"
	"github.com/ringrelay/ringrelay/relay/client"
	"github.com/ringrelay/ringrelay/ring"
)

// Child processes started through servertest are reaped by its cleanups
// (or waited for by the tests), so nothing should be left running here.
func TestMain(m *testing.M) { goleak.VerifyTestMain(servertest.WithCleanup{M: m}) }

// exitWithin bounds every wait on a child so a hung server fails the test
// instead of hanging it. It is a safety net, not a timing assertion.
const exitWithin = 10 * time.Second

// errorLine returns the one line of stderr that run writes for a bad
// invocation ("ringrelay: ..."). The usage text can also land in stderr
// and it names every flag, so assertions about which flag is at fault
// must look at this line only.
func errorLine(t *testing.T, stderr string) string {
	t.Helper()
	var found []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "ringrelay: ") {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one %q line in stderr, got %d:\n%s", "ringrelay: ", len(found), stderr)
	}
	return found[0]
}

// namesFlag reports whether line mentions -name as a whole token, so that
// "-max-frame" does not count as a mention of "-max".
func namesFlag(line, name string) bool {
	re := regexp.MustCompile(`(^|[^\w-])-` + regexp.QuoteMeta(name) + `([^\w-]|$)`)
	return re.MatchString(line)
}

func TestBadInvocationsExit2AndNameTheFlag(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		flags []string // flags the error line must name
		value string   // the offending input, which the line must quote back
	}{
		{"unknown flag", []string{"-bogus"}, []string{"bogus"}, "-bogus"},
		{"unknown backend", []string{"-backend=io_uring"}, []string{"backend"}, "io_uring"},
		{"size not a number", []string{"-max-frame=abc"}, []string{"max-frame"}, "abc"},
		{"zero max-frame", []string{"-max-frame=0"}, []string{"max-frame"}, "0"},
		{"buffers not a power of two", []string{"-buffers=1000"}, []string{"buffers"}, "1000"},
		{"ring-entries too small", []string{"-ring-entries=3"}, []string{"ring-entries"}, "3"},
		{"recv-bundle not a boolean", []string{"-recv-bundle=sometimes"}, []string{"recv-bundle"}, "sometimes"},
		{"unknown policy", []string{"-slow-consumer=maybe"}, []string{"slow-consumer"}, "maybe"},
		{"negative write-timeout", []string{"-write-timeout=-1s"}, []string{"write-timeout"}, "-1s"},
		{"unknown log level", []string{"-log-level=verbose"}, []string{"log-level"}, "verbose"},
		{"unknown log format", []string{"-log-format=xml"}, []string{"log-format"}, "xml"},
		{"listen without port", []string{"-listen=nonsense"}, []string{"listen"}, "nonsense"},
		// Valid alone; wrong only against the default -max-frame of 1 MiB.
		{"queue smaller than a frame", []string{"-max-queue=1KiB"}, []string{"max-queue", "max-frame"}, "1024"},
		{"stray argument", []string{"-backend=epoll", "stray"}, nil, "stray"},
		{"cluster URL scheme", []string{"-cluster=http://127.0.0.1:4222"}, []string{"cluster"}, "http://127.0.0.1:4222"},
		{"node past node-bits", []string{"-cluster=nats://127.0.0.1:4222", "-node=16"}, []string{"node"}, "16"},
		{"node-bits too many", []string{"-cluster=nats://127.0.0.1:4222", "-node-bits=17"}, []string{"node-bits"}, "17"},
		{"node without cluster", []string{"-node=1"}, []string{"node", "cluster"}, "1"},
		{"zero loops", []string{"-loops=0"}, []string{"loops"}, "0"},
		{"loops not a number", []string{"-loops=many"}, []string{"loops"}, "many"},
		{"cpu list with a hole", []string{"-cpus=0,,1"}, []string{"cpus"}, "0,,1"},
		{"cpu outside the affinity mask", []string{"-cpus=1023"}, []string{"cpus"}, "1023"},
		{"negative lame-duck-grace", []string{"-lame-duck-grace=-1s"}, []string{"lame-duck-grace"}, "-1s"},
		{"lame-duck-duration not a duration", []string{"-lame-duck-duration=soon"}, []string{"lame-duck-duration"}, "soon"},
		{"lame-duck-duration over a day", []string{"-lame-duck-duration=48h"}, []string{"lame-duck-duration"}, "48h0m0s"},
	}
	seen := map[string]string{} // error line -> case that produced it
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != 2 {
				t.Fatalf("run(%q) = %d, want 2\nstderr:\n%s", tc.args, code, stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("run(%q) wrote to stdout: %q", tc.args, stdout.String())
			}
			line := errorLine(t, stderr.String())
			for _, f := range tc.flags {
				if !namesFlag(line, f) {
					t.Errorf("error line does not name -%s: %q", f, line)
				}
			}
			if !strings.Contains(line, tc.value) {
				t.Errorf("error line does not quote the bad input %q: %q", tc.value, line)
			}
			if !strings.Contains(stderr.String(), "ringrelay -h") {
				t.Errorf("stderr does not point at -h:\n%s", stderr.String())
			}
			if other, dup := seen[line]; dup {
				t.Errorf("same error line as case %q, so the table tells the cases apart by nothing: %q", other, line)
			}
			seen[line] = tc.name
		})
	}
}

// The flags of the table above, set to good values, parse: the failures
// come from the values, not from the flags or the way they are written.
func TestGoodValuesParse(t *testing.T) {
	args := []string{
		"-listen=127.0.0.1:0", "-backend=epoll", "-buffers=512", "-ring-entries=8",
		"-buffer-size=4KiB", "-recv-bundle=false", "-max-frame=64KiB", "-max-queue=128KiB", "-slow-consumer=drop",
		"-write-timeout=1s", "-lame-duck-grace=0s", "-lame-duck-duration=2m", "-log-level=debug", "-log-format=json", "-loops=2", "-cpus=0",
		"-cluster=nats://127.0.0.1:4222,nats://127.0.0.1:4223", "-node=3", "-node-bits=2", "-cluster-name=rr.test",
	}
	c, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatalf("parseFlags(%q): %v", args, err)
	}
	want := defaultConfig()
	want.Listen, want.LogLevel, want.LogFormat = "127.0.0.1:0", slog.LevelDebug, "json"
	want.Reactor.Backend, want.Reactor.Buffers, want.Reactor.RingEntries, want.Reactor.BufferSize = "epoll", 512, 8, 4096
	want.Reactor.NoRecvBundle = true
	want.Relay.MaxFrame, want.Relay.MaxQueue, want.Relay.SlowConsumer = 65536, 131072, "drop"
	want.Relay.WriteTimeout = time.Second
	want.LameDuckGrace, want.LameDuckDuration = 0, 2*time.Minute
	want.Loops, want.CPUs = "2", "0"
	want.Cluster.Servers = []string{"nats://127.0.0.1:4222", "nats://127.0.0.1:4223"}
	want.Cluster.Node, want.Cluster.NodeBits, want.Cluster.Name, want.Cluster.MaxFrame = 3, 2, "rr.test", 65536
	if !reflect.DeepEqual(c, want) {
		t.Errorf("parseFlags(%q)\n got %+v\nwant %+v", args, c, want)
	}
}

func TestSizeSuffixes(t *testing.T) {
	cases := []struct {
		in   string
		want int
	}{
		{"512", 512},
		{"512B", 512},
		{"64KiB", 64 << 10},
		{"3MiB", 3 << 20},
		{"1GiB", 1 << 30},
	}
	for _, tc := range cases {
		// -max-queue is raised so that no size here trips the
		// queue-smaller-than-a-frame check.
		args := []string{"-max-frame=" + tc.in, "-max-queue=2GiB"}
		c, err := parseFlags(args, io.Discard)
		if err != nil {
			t.Errorf("parseFlags(%q): %v", args, err)
			continue
		}
		if c.Relay.MaxFrame != tc.want {
			t.Errorf("-max-frame=%s gave %d bytes, want %d", tc.in, c.Relay.MaxFrame, tc.want)
		}
	}
	// auto is 0 (the backend's own size) for -buffer-size, the one size
	// with a backend default.
	c, err := parseFlags([]string{"-buffer-size=64KiB"}, io.Discard)
	if err != nil || c.Reactor.BufferSize != 64<<10 {
		t.Errorf("-buffer-size=64KiB gave %d, %v", c.Reactor.BufferSize, err)
	}
	c, err = parseFlags([]string{"-buffer-size=auto"}, io.Discard)
	if err != nil || c.Reactor.BufferSize != 0 {
		t.Errorf("-buffer-size=auto gave %d, %v; want 0", c.Reactor.BufferSize, err)
	}
	for _, bad := range []string{"", "KiB", "1.5MiB", "-1", "1kb", "1 TiB", "auto"} {
		if _, err := parseFlags([]string{"-max-frame=" + bad}, io.Discard); err == nil {
			t.Errorf("-max-frame=%q was accepted", bad)
		}
	}

	// End to end: run accepts the suffix (and -probe makes it exit
	// before serving).
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-max-frame=64KiB", "-probe"}, &stdout, &stderr); code != 0 {
		t.Fatalf("run -max-frame=64KiB -probe = %d, want 0\nstderr:\n%s", code, stderr.String())
	}
}

func TestHelp(t *testing.T) {
	autoMemory, _ := defaultMaxMemory() // what this machine's -h shows
	// Every flag, the group it belongs to, and its default as -h must show
	// it ("" for flags whose default is off or empty, shown without one).
	// The numbers are the ones docs/protocol.md and README.md promise.
	type entry struct{ group, def string }
	want := map[string]entry{
		"listen":               {"Network", "127.0.0.1:8080"},
		"backend":              {"Network", "auto"},
		"nodelay":              {"Network", "true"},
		"max-conns":            {"Network", "100000"},
		"ring-entries":         {"io_uring tuning", "4096"},
		"buffers":              {"io_uring tuning", "1024"},
		"buffer-size":          {"io_uring tuning", "auto"},
		"recv-bundle":          {"io_uring tuning", "true"},
		"spin":                 {"io_uring tuning", "50µs"},
		"max-frame":            {"Limits", "1MiB"},
		"max-queue":            {"Limits", "4MiB"},
		"slow-consumer":        {"Limits", "backpressure"},
		"write-timeout":        {"Limits", "30s"},
		"frame-timeout":        {"Limits", "1m0s"},
		"shutdown-timeout":     {"Limits", "5s"},
		"max-unknown-dest":     {"Untrusted networks", "4096"},
		"unknown-dest-window":  {"Untrusted networks", "10s"},
		"max-conns-per-ip":     {"Untrusted networks", "0"},
		"max-new-conns-per-ip": {"Untrusted networks", "0"},
		"conns-per-ip-prefix6": {"Untrusted networks", "64"},
		"max-memory":           {"Untrusted networks", memFlag{&autoMemory}.String()},
		"lame-duck-grace":      {"Restarts", "5s"},
		"lame-duck-duration":   {"Restarts", "30s"},
		"metrics-addr":         {"Observability", ""},
		"pprof-addr":           {"Observability", ""},
		"log-level":            {"Observability", "info"},
		"log-format":           {"Observability", "text"},
		"probe":                {"Other", ""},
		"loops":                {"Loops and CPUs", "auto"},
		"cpus":                 {"Loops and CPUs", ""},
		"cluster":              {"Cluster", ""},
		"node":                 {"Cluster", "0"},
		"node-bits":            {"Cluster", "4"},
		"cluster-name":         {"Cluster", "ringrelay"},
		"cluster-creds":        {"Cluster", ""},
		"cluster-user":         {"Cluster", ""},
		"cluster-password":     {"Cluster", ""},
		"cluster-tls-ca":       {"Cluster", ""},
		"cluster-tls-cert":     {"Cluster", ""},
		"cluster-tls-key":      {"Cluster", ""},

		"tls-cert":              {"TLS", ""},
		"tls-key":               {"TLS", ""},
		"tls-client-ca":         {"TLS", ""},
		"tls-handshake-timeout": {"TLS", "2s"},
		"tls-max-handshakes":    {"TLS", "128"},
	}
	titles := []string{"Network", "TLS", "Loops and CPUs", "io_uring tuning", "Limits", "Untrusted networks", "Restarts", "Observability", "Cluster", "Other"}

	for _, arg := range []string{"-h", "-help", "--help"} {
		t.Run(arg, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run([]string{arg}, &stdout, &stderr); code != 0 {
				t.Fatalf("run(%s) = %d, want 0", arg, code)
			}
			text := stdout.String() + stderr.String()

			// Walk the text: a line that starts in column 0 and ends
			// with ':' opens a group, "  -name ..." is a flag, and the
			// line after it is the flag's help.
			var gotTitles []string
			got := map[string]entry{}
			lines := strings.Split(text, "\n")
			group := ""
			for i, l := range lines {
				switch {
				case l != "" && l[0] != ' ' && strings.HasSuffix(l, ":"):
					group = strings.TrimSuffix(l, ":")
					for _, title := range titles {
						if strings.HasPrefix(group, title) {
							group = title
						}
					}
					gotTitles = append(gotTitles, group)
				case strings.HasPrefix(l, "  -"):
					name := strings.Fields(l)[0][1:]
					if _, dup := got[name]; dup {
						t.Errorf("-%s listed twice", name)
					}
					if i+1 >= len(lines) {
						t.Fatalf("-%s has no help line", name)
					}
					e := entry{group: group}
					if m := regexp.MustCompile(`\(default (\S+)\)$`).FindStringSubmatch(lines[i+1]); m != nil {
						e.def = m[1]
					}
					got[name] = e
				}
			}
			if !slices.Equal(gotTitles, titles) {
				t.Errorf("group titles %q, want %q", gotTitles, titles)
			}
			for name, w := range want {
				g, ok := got[name]
				switch {
				case !ok:
					t.Errorf("-%s missing from -h", name)
				case g != w:
					t.Errorf("-%s shown as %+v, want %+v", name, g, w)
				}
			}
			for name := range got {
				if _, ok := want[name]; !ok {
					t.Errorf("-h lists -%s, which this test does not know: add it to the table", name)
				}
			}
		})
	}
}

// helpFlags returns the names of the flags that help lists, one
// "  -name ..." line each.
func helpFlags(help string) map[string]bool {
	listed := map[string]bool{}
	for _, l := range strings.Split(help, "\n") {
		if strings.HasPrefix(l, "  -") {
			listed[strings.Fields(l)[0][1:]] = true
		}
	}
	return listed
}

// unlisted returns the flags registered on fs that help does not list.
func unlisted(fs *flag.FlagSet, help string) []string {
	listed := helpFlags(help)
	var missing []string
	fs.VisitAll(func(f *flag.Flag) {
		if !listed[f.Name] {
			missing = append(missing, f.Name)
		}
	})
	return missing
}

// TestEveryFlagInHelp walks the FlagSet the server parses with, so a flag
// registered outside the groups (and so missing from -h) fails it even
// when nobody added it to TestHelp's table.
func TestEveryFlagInHelp(t *testing.T) {
	c := defaultConfig()
	fs, groups := newFlagSet(&c)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n < 18 {
		t.Fatalf("the FlagSet has %d flags, want at least the 18 of TestHelp", n)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-h"}, &stdout, &stderr); code != 0 {
		t.Fatalf("run(-h) = %d, want 0", code)
	}
	help := stdout.String() + stderr.String()
	if missing := unlisted(fs, help); len(missing) > 0 {
		t.Errorf("flags registered but missing from -h: %q\n%s", missing, help)
	}

	// The check itself: a flag registered beside the groups is caught.
	fs.Bool("stray", false, "registered outside flagGroups")
	var out bytes.Buffer
	usage(&out, fs, groups)
	if missing := unlisted(fs, out.String()); !slices.Equal(missing, []string{"stray"}) {
		t.Errorf("with a stray flag registered, unlisted = %q, want [stray]", missing)
	}
}

// -log-level is parsed by slog.Level: the four names of -h map to slog's
// levels, and anything else is a one-line error that lists them.
func TestLogLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{
		"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError,
	} {
		c, err := parseFlags([]string{"-log-level=" + in}, io.Discard)
		if err != nil || c.LogLevel != want {
			t.Errorf("-log-level=%s: got %v, %v; want %v", in, c.LogLevel, err, want)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-log-level=loud"}, &stdout, &stderr); code != 2 {
		t.Fatalf("-log-level=loud exited %d, want 2", code)
	}
	if line := errorLine(t, stderr.String()); !strings.Contains(line, "must be debug, info, warn or error") {
		t.Errorf("error line does not list the levels: %q", line)
	}
}

// uringOracle says, without the code under test, whether this host should
// run the uring backend: a raw io_uring_setup must succeed and the kernel
// must be 6.0 or newer (multishot recv with buffer rings). When it should
// not, why is the errno or the kernel release.
func uringOracle(t *testing.T) (ok bool, why string, setupErr error) {
	t.Helper()
	var params [120]byte // struct io_uring_params, zeroed: default ring
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 8, uintptr(unsafe.Pointer(&params[0])), 0)
	if errno != 0 {
		return false, "io_uring_setup: " + errno.Error(), errno
	}
	unix.Close(int(fd))
	release := osRelease(t)
	major, _ := strconv.Atoi(strings.SplitN(release, ".", 2)[0])
	if major < 6 {
		return false, "kernel " + release, nil
	}
	return true, "", nil
}

func osRelease(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatalf("kernel release: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// probeField returns the value printed after "name:" in -probe output.
func probeField(t *testing.T, out, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `:[ \t]+(.*)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q line in -probe output:\n%s", name, out)
	}
	return m[1]
}

func TestProbe(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-probe"}, &stdout, &stderr); code != 0 {
		t.Fatalf("-probe exited %d, want 0\nstderr:\n%s", code, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("-probe wrote to stderr: %q", stderr.String())
	}
	out := stdout.String()
	if got, want := probeField(t, out, "kernel"), osRelease(t); got != want {
		t.Errorf("kernel line says %q, /proc says %q", got, want)
	}
	wantDisabled := "(sysctl absent)"
	if b, err := os.ReadFile("/proc/sys/kernel/io_uring_disabled"); err == nil {
		wantDisabled = strings.TrimSpace(string(b))
	}
	if got := probeField(t, out, "io_uring_disabled"); got != wantDisabled {
		t.Errorf("io_uring_disabled line says %q, want %q", got, wantDisabled)
	}

	ok, why, setupErr := uringOracle(t)
	setup := probeField(t, out, "io_uring setup")
	if setup == "ok" {
		want := "no (doorbells use the eventfd)"
		if ring.Probe().MsgRing {
			want = "yes (doorbell between io_uring loops; eventfd otherwise)"
		}
		if got := probeField(t, out, "  MSG_RING"); got != want {
			t.Errorf("MSG_RING line says %q, want %q", got, want)
		}
	}
	pick := probeField(t, out, "auto would pick")
	switch {
	case ok:
		if setup != "ok" {
			t.Errorf("io_uring setup line says %q, but a raw io_uring_setup works here", setup)
		}
		if pick != "uring" {
			t.Errorf("auto would pick %q, want uring on this host", pick)
		}
	case setupErr != nil:
		t.Logf("io_uring does not work on this host (%s); checking the epoll verdict", why)
		if want := "failed: " + setupErr.Error(); setup != want {
			t.Errorf("io_uring setup line says %q, want %q", setup, want)
		}
		if !strings.HasPrefix(pick, "epoll, because ") || !strings.Contains(pick, setupErr.Error()) {
			t.Errorf("auto would pick %q, want epoll because of %q", pick, setupErr.Error())
		}
	default:
		t.Logf("io_uring sets up but the kernel is too old (%s)", why)
		if !strings.HasPrefix(pick, "epoll, because ") {
			t.Errorf("auto would pick %q, want epoll", pick)
		}
	}
}

func TestProbeUnderSeccomp(t *testing.T) {
	p := servertest.Launch(t, servertest.Options{DenyIOUring: true, NoListen: true, Args: []string{"-probe"}})
	if code := p.Wait(t, exitWithin); code != 0 {
		t.Fatalf("-probe under seccomp exited %d, want 0\noutput:\n%s", code, p.Logs())
	}
	out := p.Logs()
	if got := probeField(t, out, "io_uring setup"); got != "failed: operation not permitted" {
		t.Errorf("io_uring setup line says %q, want the EPERM from the filter", got)
	}
	pick := probeField(t, out, "auto would pick")
	if !strings.HasPrefix(pick, "epoll, because ") {
		t.Errorf("auto would pick %q, want epoll", pick)
	}
	for _, s := range []string{"operation not permitted", "seccomp"} {
		if !strings.Contains(pick, s) {
			t.Errorf("the reason for epoll does not say %q: %q", s, pick)
		}
	}
	if strings.Contains(out, "multishot") {
		t.Errorf("feature lines printed although setup failed:\n%s", out)
	}
}

const uringFD = "anon_inode:[io_uring]"

// listeningBackend returns the backend named by the server's "listening"
// log line, and checks that the line names the address it was given.
func listeningBackend(t *testing.T, p *servertest.Proc) string {
	t.Helper()
	// The port accepts as soon as the loop is open, a moment before the
	// line is written: wait for the line.
	re := regexp.MustCompile(`(?m)msg=listening addr=(\S+) backend=(\w+)`)
	var m []string
	for deadline := time.Now().Add(exitWithin); ; time.Sleep(10 * time.Millisecond) {
		if m = re.FindStringSubmatch(p.Logs()); m != nil {
			break
		}
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("no listening line in the log:\n%s", p.Logs())
		}
	}
	if m[1] != p.Addr {
		t.Errorf("listening line names %s, server was started on %s", m[1], p.Addr)
	}
	return m[2]
}

// connect dials two clients; their reads and writes give up after
// exitWithin so a broken relay fails instead of hanging.
func connect(t *testing.T, addr string) (*client.Conn, *client.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), exitWithin)
	defer cancel()
	var cs [2]*client.Conn
	for i := range cs {
		c, err := client.Dial(ctx, addr)
		if err != nil {
			t.Fatalf("client %d: %v", i+1, err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(exitWithin))
		cs[i] = c
	}
	if cs[0].ID() == cs[1].ID() {
		t.Fatalf("both clients got ID %08x", cs[0].ID())
	}
	return cs[0], cs[1]
}

// relayBothWays checks that c1 reaches c2 and c2 reaches c1.
func relayBothWays(t *testing.T, c1, c2 *client.Conn) {
	t.Helper()
	for _, m := range []struct {
		from, to *client.Conn
		msg      string
	}{
		{c1, c2, "hello, number 2"},
		{c2, c1, "hello back, number 1"},
	} {
		if err := m.from.Send(m.to.ID(), []byte(m.msg)); err != nil {
			t.Fatalf("send %q: %v", m.msg, err)
		}
		got, err := m.to.Recv()
		if err != nil {
			t.Fatalf("receive %q: %v", m.msg, err)
		}
		if string(got) != m.msg {
			t.Fatalf("received %q, want %q", got, m.msg)
		}
	}
}

func TestBackendSelection(t *testing.T) {
	uringOK, why, _ := uringOracle(t)
	cases := []struct {
		name       string
		deny       bool
		backend    string
		want       string // backend it must run on
		fallback   bool   // must log the fallback warning with the reason
		needsUring bool   // only meaningful where io_uring works
	}{
		{"auto under seccomp falls back", true, "auto", "epoll", true, false},
		{"epoll under seccomp", true, "epoll", "epoll", false, false},
		{"auto", false, "auto", "uring", false, true},
		{"uring", false, "uring", "uring", false, true},
		{"epoll", false, "epoll", "epoll", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.needsUring && !uringOK {
				t.Skipf("io_uring is not usable on this host: %s", why)
			}
			p := servertest.Start(t, servertest.Options{DenyIOUring: tc.deny, Args: []string{"-backend=" + tc.backend}})

			if got := listeningBackend(t, p); got != tc.want {
				t.Errorf("runs on %s, want %s\nlog:\n%s", got, tc.want, p.Logs())
			}
			fallback := regexp.MustCompile(`(?m)^.*falling back to epoll.*$`).FindString(p.Logs())
			switch {
			case tc.fallback && fallback == "":
				t.Errorf("no fallback line in the log:\n%s", p.Logs())
			case tc.fallback:
				for _, s := range []string{"operation not permitted", "seccomp"} {
					if !strings.Contains(fallback, s) {
						t.Errorf("fallback line does not say %q: %s", s, fallback)
					}
				}
			case fallback != "":
				t.Errorf("unexpected fallback line: %s", fallback)
			}

			fds := p.FDs(t)
			if !slices.ContainsFunc(fds, func(s string) bool { return strings.HasPrefix(s, "socket:[") }) {
				t.Fatalf("no socket among the server's descriptors, so the listing is not its own: %q", fds)
			}
			if has := slices.Contains(fds, uringFD); has != (tc.want == "uring") {
				t.Errorf("io_uring descriptor open = %v on %s; descriptors: %q", has, tc.want, fds)
			}

			c1, c2 := connect(t, p.Addr)
			relayBothWays(t, c1, c2)

			p.Signal(t, syscall.SIGTERM)
			if code := p.Wait(t, exitWithin); code != 0 {
				t.Fatalf("exit code after SIGTERM = %d, want 0\nlog:\n%s", code, p.Logs())
			}
			// Shutdown closes every connection: the clients see a clean end.
			for i, c := range []*client.Conn{c1, c2} {
				if _, err := c.Recv(); !errors.Is(err, io.EOF) {
					t.Errorf("client %d after shutdown: %v, want EOF", i+1, err)
				}
			}
		})
	}
}

// runChild runs the built ringrelay (under the seccomp launcher when deny)
// to completion and returns its exit code and its stdout and stderr apart,
// which servertest's combined log cannot tell.
func runChild(t *testing.T, deny bool, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	dir := servertest.Binaries(t)
	argv := append([]string{filepath.Join(dir, "ringrelay")}, args...)
	if deny {
		argv = append([]string{filepath.Join(dir, "seccompexec")}, argv...)
	}
	var out, errb bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", argv[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(exitWithin):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%q still running after %v\nstdout:\n%s\nstderr:\n%s", args, exitWithin, out.String(), errb.String())
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

func TestUringRefusedUnderSeccomp(t *testing.T) {
	code, stdout, stderr := runChild(t, true, "-listen=127.0.0.1:0", "-backend=uring")
	if code != 1 {
		t.Fatalf("exit code %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if stdout != "" {
		t.Errorf("stdout not empty: %q", stdout)
	}
	for _, s := range []string{"operation not permitted", "-backend=epoll"} {
		if !strings.Contains(stderr, s) {
			t.Errorf("stderr does not say %q:\n%s", s, stderr)
		}
	}
	if strings.Contains(stderr, "msg=listening") {
		t.Errorf("server reported listening although it must refuse to start:\n%s", stderr)
	}
	if strings.Contains(stderr, "falling back") {
		t.Errorf("-backend=uring fell back instead of failing:\n%s", stderr)
	}
}
