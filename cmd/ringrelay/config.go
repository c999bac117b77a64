package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/ringrelay/ringrelay/cluster"
	"github.com/ringrelay/ringrelay/internal/bytesize"
	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
	"github.com/ringrelay/ringrelay/shard"
)

// Config is every setting of the server, filled from flags and checked by
// Validate before anything starts. The loop's and the protocol's settings
// are the reactor and relay packages' own Config structs: each flag is
// bound straight to the field it sets, and its default is that field's
// value in defaultConfig.
type Config struct {
	Listen  string
	Reactor reactor.Config
	Relay   relay.Config
	Cluster cluster.Config // off unless -cluster names servers (cluster.go)
	TLS     tlsConfig      // off unless -tls-cert is set (tls.go)

	// Loops and CPUs are the -loops and -cpus flags as written; layout
	// resolves them.
	Loops string
	CPUs  string

	// LameDuckGrace and LameDuckDuration say what SIGUSR2 does: keep
	// relaying for the grace, then close the connections over the
	// duration (relay.Group.LameDuck).
	LameDuckGrace    time.Duration
	LameDuckDuration time.Duration

	MetricsAddr string
	PprofAddr   string
	LogLevel    slog.Level
	LogFormat   string

	Probe bool

	memNote string // what -max-memory's auto came to, for -h
}

func defaultConfig() Config {
	c := Config{
		Listen:    "127.0.0.1:8080",
		Loops:     "auto",
		Reactor:   reactor.DefaultConfig(),
		Relay:     relay.DefaultConfig(),
		Cluster:   cluster.DefaultConfig(),
		TLS:       defaultTLS(),
		LogLevel:  slog.LevelInfo,
		LogFormat: "text",

		LameDuckGrace:    5 * time.Second,
		LameDuckDuration: 30 * time.Second,
	}
	c.Relay.MaxMemory, c.memNote = defaultMaxMemory()
	return c
}

// A flagGroup is one section of -h, its flags in the order shown.
type flagGroup struct {
	title string
	flags []flagDef
}

// A flagDef is one flag. define registers it, bound to its Config field;
// a `quoted` word in usage names the flag's argument in -h.
type flagDef struct {
	name   string
	define func(name, usage string)
	usage  string
}

// flagGroups is the one place a flag is defined: a flag exists only as an
// entry of a group, so it always has a place in -h.
func (c *Config) flagGroups(fs *flag.FlagSet) []flagGroup {
	value := func(v flag.Value) func(name, usage string) {
		return func(name, usage string) { fs.Var(v, name, usage) }
	}
	level := (*logLevel)(&c.LogLevel)
	return []flagGroup{
		{"Network", []flagDef{
			{"listen", bind(fs.StringVar, &c.Listen), "TCP `address` to listen on (host:port; use 0.0.0.0:PORT to accept from the network)"},
			{"backend", bind(fs.StringVar, (*string)(&c.Reactor.Backend)), "I/O `engine`: auto (io_uring, else epoll with a logged reason), uring, or epoll"},
			{"nodelay", bind(fs.BoolVar, &c.Reactor.NoDelay), "set TCP_NODELAY on accepted sockets so small frames leave at once"},
			{"max-conns", bind(fs.IntVar, &c.Relay.MaxConns), "open connections allowed (`count`); newer ones are accepted and closed at once"},
		}},
		c.tlsFlags(fs),
		{"Loops and CPUs", []flagDef{
			{"loops", bind(fs.StringVar, &c.Loops), "event loops (`count`), each on its own thread with its own connections; auto is one per CPU this process may run on (its affinity mask, as taskset sets it)"},
			{"cpus", bind(fs.StringVar, &c.CPUs), "pin loop k to the k-th CPU of this `list` (\"0-3,8\"; cycled when -loops is larger); with -loops auto, one loop per listed CPU"},
		}},
		{"io_uring tuning (the epoll backend uses -buffers and -buffer-size for its read arena)", []flagDef{
			{"ring-entries", value(uint32Flag{&c.Reactor.RingEntries}), "io_uring submission queue `entries` (power of two); the completion queue gets 4x"},
			{"buffers", bind(fs.IntVar, &c.Reactor.Buffers), "`count` of receive buffers shared by all connections (power of two, at most 32768)"},
			{"buffer-size", value(sizeFlag{&c.Reactor.BufferSize, true}), "size of one receive buffer in `bytes` (KiB, MiB or GiB suffixes); auto is 4KiB on io_uring, 16KiB on epoll"},
			{"recv-bundle", value(notFlag{&c.Reactor.NoRecvBundle}), "let one io_uring recv fill several receive buffers where the kernel can (Linux 6.15+); -recv-bundle=false reads one buffer per recv"},
			{"spin", bind(fs.DurationVar, &c.Reactor.Spin), "how long an io_uring wait may watch for completions before it blocks (adaptive): lower latency at light load for CPU spent spinning; 0 never spins"},
		}},
		{"Limits", []flagDef{
			{"max-frame", value(sizeFlag{p: &c.Relay.MaxFrame}), "longest payload in `bytes`, not counting the 4-byte header and the NUL; a longer frame closes its sender"},
			{"max-queue", value(sizeFlag{p: &c.Relay.MaxQueue}), "`bytes` of output queued per destination before -slow-consumer applies"},
			{"slow-consumer", bind(fs.StringVar, (*string)(&c.Relay.SlowConsumer)), "`policy` for a destination over -max-queue: backpressure (pause its senders; lossless), drop, or disconnect"},
			{"write-timeout", bind(fs.DurationVar, &c.Relay.WriteTimeout), "close a destination whose queued output makes no progress this long"},
			{"frame-timeout", bind(fs.DurationVar, &c.Relay.FrameTimeout), "close a connection whose frame stays incomplete this long"},
			{"shutdown-timeout", bind(fs.DurationVar, &c.Relay.ShutdownTimeout), "on SIGINT/SIGTERM, how long to keep writing queued output before closing"},
		}},
		{"Untrusted networks (README, Security notes)", []flagDef{
			{"max-unknown-dest", bind(fs.IntVar, &c.Relay.MaxUnknownDest), "close a connection that sends more than this `count` of frames to unknown IDs within -unknown-dest-window (ID scanning); repeats to its last 4 unknown IDs are not counted, so a client still sending to a peer that left is not closed; 0 is off"},
			{"unknown-dest-window", bind(fs.DurationVar, &c.Relay.UnknownDestWindow), "the window -max-unknown-dest counts over"},
			{"max-conns-per-ip", bind(fs.IntVar, &c.Relay.MaxConnsPerIP), "open connections allowed from one source address (`count`); newer ones are accepted and closed at once; 0 is off, as by default: every local client shares 127.0.0.1"},
			{"max-new-conns-per-ip", bind(fs.IntVar, &c.Relay.MaxNewConnsPerIP), "new connections allowed per second from one source address (`count`); over it accepted and closed at once; 0 is off"},
			{"conns-per-ip-prefix6", bind(fs.IntVar, &c.Relay.ConnsPerIPPrefix6), "IPv6 sources count as one address per prefix of this many `bits` for the two limits above (a host often holds a whole /64)"},
			{"max-memory", value(memFlag{&c.Relay.MaxMemory}), "`bytes` of client buffers (partial frames and queued output) of all connections together; over it the connections holding the most are closed. auto is a quarter of the cgroup memory limit, else of physical memory (" + c.memNote + "); 0 is off"},
		}},
		{"Restarts: lame duck on SIGUSR2 (stop accepting, keep relaying, close connections gradually, exit 0)", []flagDef{
			{"lame-duck-grace", bind(fs.DurationVar, &c.LameDuckGrace), "after SIGUSR2, how long open connections keep relaying before any is closed"},
			{"lame-duck-duration", bind(fs.DurationVar, &c.LameDuckDuration), "the window over which the connections are then closed, evenly spread, so clients reconnect gradually; 0 closes them all at once"},
		}},
		{"Observability", []flagDef{
			{"metrics-addr", bind(fs.StringVar, &c.MetricsAddr), "serve Prometheus metrics at http://`address`/metrics (off when empty)"},
			{"pprof-addr", bind(fs.StringVar, &c.PprofAddr), "serve net/http/pprof at http://`address`/debug/pprof/ (off when empty)"},
			{"log-level", func(name, usage string) { fs.TextVar(level, name, *level, usage) }, "`level`: debug, info, warn or error; per-connection events are logged at debug only"},
			{"log-format", bind(fs.StringVar, &c.LogFormat), "`format` of log lines: text or json"},
		}},
		c.clusterFlags(fs),
		{"Other", []flagDef{
			{"probe", bind(fs.BoolVar, &c.Probe), "print what this host's io_uring supports and which backend auto would pick, then exit"},
		}},
	}
}

// bind turns one of the FlagSet's typed methods (StringVar, IntVar, ...)
// into a flag definition whose default is the field's current value.
func bind[T any](xxxVar func(p *T, name string, value T, usage string), p *T) func(name, usage string) {
	return func(name, usage string) { xxxVar(p, name, *p, usage) }
}

// newFlagSet defines every flag of flagGroups on a new FlagSet bound to
// c's fields, and returns the groups for usage.
func newFlagSet(c *Config) (*flag.FlagSet, []flagGroup) {
	fs := flag.NewFlagSet("ringrelay", flag.ContinueOnError)
	// The flag package prints its error and calls Usage on every parse
	// error; stay quiet then (the caller prints the one-line error) and
	// print the help only when it was asked for.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	groups := c.flagGroups(fs)
	for _, g := range groups {
		for _, f := range g.flags {
			f.define(f.name, f.usage)
		}
	}
	return fs, groups
}

// parseFlags fills a Config from args. Errors are meant for the user as is.
func parseFlags(args []string, stderr io.Writer) (Config, error) {
	c := defaultConfig()
	fs, groups := newFlagSet(&c)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stderr, fs, groups)
		}
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (flags start with -)", fs.Arg(0))
	}
	return c, c.Validate()
}

func usage(w io.Writer, fs *flag.FlagSet, groups []flagGroup) {
	fmt.Fprintf(w, "Usage: ringrelay [flags]\n\nA message relay over TCP on io_uring (epoll fallback). See README.md.\n")
	for _, g := range groups {
		fmt.Fprintf(w, "\n%s:\n", g.title)
		for _, def := range g.flags {
			f := fs.Lookup(def.name)
			arg, help := flag.UnquoteUsage(f)
			line := "  -" + f.Name
			if arg != "" {
				line += " " + arg
			}
			fmt.Fprintf(w, "%s\n    \t%s", line, help)
			if f.DefValue != "" && f.DefValue != "false" {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(w)
		}
	}
}

// Validate checks every setting and every combination; the error names
// the flag at fault. The protocol's own limits are relay.Config.Validate's.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("-listen %q: %v", c.Listen, err)
	}
	r := &c.Reactor
	switch r.Backend {
	case reactor.Auto, reactor.Uring, reactor.Epoll:
	default:
		return fmt.Errorf("-backend %q: must be auto, uring or epoll", r.Backend)
	}
	if r.RingEntries < 8 || r.RingEntries > 32768 || r.RingEntries&(r.RingEntries-1) != 0 {
		return fmt.Errorf("-ring-entries %d: must be a power of two between 8 and 32768", r.RingEntries)
	}
	if r.Buffers < 1 || r.Buffers > 32768 || r.Buffers&(r.Buffers-1) != 0 {
		return fmt.Errorf("-buffers %d: must be a power of two between 1 and 32768", r.Buffers)
	}
	if r.BufferSize != 0 && (r.BufferSize < 64 || r.BufferSize > 16<<20) {
		return fmt.Errorf("-buffer-size %d: must be auto or between 64 B and 16 MiB", r.BufferSize)
	}
	if r.Spin < 0 || r.Spin > 10*time.Millisecond {
		return fmt.Errorf("-spin %v: must be between 0 (never spin) and 10ms", r.Spin)
	}
	if c.Relay.MaxQueue < c.Relay.MaxFrame+1 {
		return fmt.Errorf("-max-queue %d is smaller than one frame (-max-frame %d + 1): a full-size frame could never be queued", c.Relay.MaxQueue, c.Relay.MaxFrame)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"-lame-duck-grace", c.LameDuckGrace}, {"-lame-duck-duration", c.LameDuckDuration}} {
		if d.v < 0 || d.v > 24*time.Hour {
			return fmt.Errorf("%s %v: must be between 0 and 24h", d.flag, d.v)
		}
	}
	for _, a := range []struct{ flag, addr string }{{"-metrics-addr", c.MetricsAddr}, {"-pprof-addr", c.PprofAddr}} {
		if a.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("%s %q: %v", a.flag, a.addr, err)
		}
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("-log-format %q: must be text or json", c.LogFormat)
	}
	if err := c.Relay.Validate(); err != nil {
		return fmt.Errorf("-%w", err)
	}
	if err := c.validateCluster(); err != nil {
		return err
	}
	if err := c.validateTLS(); err != nil {
		return err
	}
	_, _, err := c.layout()
	return err
}

// layout resolves -loops and -cpus against the CPUs this process may run
// on: the number of loops, and the CPU of each (nil: not pinned).
func (c *Config) layout() (loops int, pins []int, err error) {
	allowed, err := shard.AllowedCPUs()
	if err != nil {
		return 0, nil, err
	}
	return shard.Layout(c.Loops, c.CPUs, allowed)
}

// logLevel is -log-level: slog.Level parses the name (debug, info, warn,
// error, in any case), and -h shows it in lower case as the help and the
// README spell it.
type logLevel slog.Level

func (l logLevel) MarshalText() ([]byte, error) {
	return []byte(strings.ToLower(slog.Level(l).String())), nil
}

func (l *logLevel) UnmarshalText(b []byte) error {
	if err := (*slog.Level)(l).UnmarshalText(b); err != nil {
		return errors.New("must be debug, info, warn or error")
	}
	return nil
}

// sizeFlag binds a byte count to a flag written the way bytesize writes
// sizes (4096, 16KiB, 1MiB). Where auto is set, the word auto stands for
// 0: the backend picks the size.
type sizeFlag struct {
	p    *int
	auto bool
}

func (s sizeFlag) String() string {
	switch {
	case s.p == nil:
		return ""
	case s.auto && *s.p == 0:
		return "auto"
	}
	return bytesize.Format(int64(*s.p))
}

func (s sizeFlag) Set(v string) error {
	if s.auto && v == "auto" {
		*s.p = 0
		return nil
	}
	n, err := bytesize.Parse(v)
	if err != nil {
		return err
	}
	*s.p = int(n)
	return nil
}

// uint32Flag binds a uint32 field (reactor.Config.RingEntries), a width
// the flag package has no flag for. Its errors read like the package's
// own numeric flags.
// notFlag is a boolean flag that sets the negation of a Config field
// whose zero value is the default (-recv-bundle sets NoRecvBundle).
type notFlag struct{ p *bool }

func (n notFlag) IsBoolFlag() bool { return true }

func (n notFlag) String() string {
	if n.p == nil {
		return "true"
	}
	return strconv.FormatBool(!*n.p)
}

func (n notFlag) Set(v string) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return errors.New("parse error")
	}
	*n.p = !b
	return nil
}

type uint32Flag struct{ p *uint32 }

func (u uint32Flag) String() string {
	if u.p == nil {
		return ""
	}
	return strconv.FormatUint(uint64(*u.p), 10)
}

func (u uint32Flag) Set(v string) error {
	n, err := strconv.ParseInt(v, 0, 64)
	switch {
	case err != nil:
		return errors.New("parse error")
	case n < 0 || n > math.MaxUint32:
		return errors.New("value out of range")
	}
	*u.p = uint32(n)
	return nil
}
