package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
)

// Config is every setting of the server, filled from flags and checked by
// Validate before anything starts.
type Config struct {
	// Network
	Listen   string
	Backend  string
	NoDelay  bool
	MaxConns int

	// io_uring tuning (the read arena on epoll)
	RingEntries int
	Buffers     int
	BufferSize  size

	// Limits
	MaxFrame        size
	MaxQueue        size
	SlowConsumer    string
	WriteTimeout    time.Duration
	FrameTimeout    time.Duration
	ShutdownTimeout time.Duration

	// Observability
	MetricsAddr string
	PprofAddr   string
	LogLevel    string
	LogFormat   string

	Probe bool
}

func defaultConfig() Config {
	r := reactor.DefaultConfig()
	l := relay.DefaultConfig()
	return Config{
		Listen:          "127.0.0.1:8080",
		Backend:         string(reactor.Auto),
		NoDelay:         r.NoDelay,
		MaxConns:        l.MaxConns,
		RingEntries:     int(r.RingEntries),
		Buffers:         r.Buffers,
		BufferSize:      size(r.BufferSize),
		MaxFrame:        size(l.MaxFrame),
		MaxQueue:        size(l.MaxQueue),
		SlowConsumer:    string(l.SlowConsumer),
		WriteTimeout:    l.WriteTimeout,
		FrameTimeout:    l.FrameTimeout,
		ShutdownTimeout: l.ShutdownTimeout,
		LogLevel:        "info",
		LogFormat:       "text",
	}
}

type flagGroup struct {
	title string
	names []string
}

var groups = []flagGroup{
	{"Network", []string{"listen", "backend", "nodelay", "max-conns"}},
	{"io_uring tuning (the epoll backend uses -buffers and -buffer-size for its read arena)", []string{"ring-entries", "buffers", "buffer-size"}},
	{"Limits", []string{"max-frame", "max-queue", "slow-consumer", "write-timeout", "frame-timeout", "shutdown-timeout"}},
	{"Observability", []string{"metrics-addr", "pprof-addr", "log-level", "log-format"}},
	{"Other", []string{"probe"}},
}

// parseFlags fills a Config from args. Errors are meant for the user as is.
func parseFlags(args []string, stderr io.Writer) (Config, error) {
	c := defaultConfig()
	fs := flag.NewFlagSet("ringrelay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.Listen, "listen", c.Listen, "TCP `address` to listen on (host:port; use 0.0.0.0:PORT to accept from the network)")
	fs.StringVar(&c.Backend, "backend", c.Backend, "I/O `engine`: auto (io_uring, else epoll with a logged reason), uring, or epoll")
	fs.BoolVar(&c.NoDelay, "nodelay", c.NoDelay, "set TCP_NODELAY on accepted sockets so small frames leave at once")
	fs.IntVar(&c.MaxConns, "max-conns", c.MaxConns, "open connections allowed (`count`); newer ones are accepted and closed at once")
	fs.IntVar(&c.RingEntries, "ring-entries", c.RingEntries, "io_uring submission queue `entries` (power of two); the completion queue gets 4x")
	fs.IntVar(&c.Buffers, "buffers", c.Buffers, "`count` of receive buffers shared by all connections (power of two, at most 32768)")
	fs.Var(&c.BufferSize, "buffer-size", "size of one receive buffer in `bytes` (KiB, MiB or GiB suffixes); auto is 4KiB on io_uring, 16KiB on epoll")
	fs.Var(&c.MaxFrame, "max-frame", "longest payload in `bytes`, not counting the 4-byte header and the NUL; a longer frame closes its sender")
	fs.Var(&c.MaxQueue, "max-queue", "`bytes` of output queued per destination before -slow-consumer applies")
	fs.StringVar(&c.SlowConsumer, "slow-consumer", c.SlowConsumer, "`policy` for a destination over -max-queue: backpressure (pause its senders; lossless), drop, or disconnect")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "close a destination whose queued output makes no progress this long")
	fs.DurationVar(&c.FrameTimeout, "frame-timeout", c.FrameTimeout, "close a connection whose frame stays incomplete this long")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "on SIGINT/SIGTERM, how long to keep writing queued output before closing")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "serve Prometheus metrics at http://`address`/metrics (off when empty)")
	fs.StringVar(&c.PprofAddr, "pprof-addr", c.PprofAddr, "serve net/http/pprof at http://`address`/debug/pprof/ (off when empty)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "`level`: debug, info, warn or error; per-connection events are logged at debug only")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "`format` of log lines: text or json")
	fs.BoolVar(&c.Probe, "probe", false, "print what this host's io_uring supports and which backend auto would pick, then exit")

	// The flag package calls Usage on every parse error; stay quiet then
	// (the caller prints the one-line error) and print the help only when
	// it was asked for.
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(fs, stderr)
		}
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (flags start with -)", fs.Arg(0))
	}
	return c, c.Validate()
}

func usage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, "Usage: ringrelay [flags]\n\nA message relay over TCP on io_uring (epoll fallback). See README.md.\n")
	for _, g := range groups {
		fmt.Fprintf(w, "\n%s:\n", g.title)
		for _, name := range g.names {
			f := fs.Lookup(name)
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
// the flag at fault.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("-listen %q: %v", c.Listen, err)
	}
	switch reactor.Backend(c.Backend) {
	case reactor.Auto, reactor.Uring, reactor.Epoll:
	default:
		return fmt.Errorf("-backend %q: must be auto, uring or epoll", c.Backend)
	}
	if c.RingEntries < 8 || c.RingEntries > 32768 || c.RingEntries&(c.RingEntries-1) != 0 {
		return fmt.Errorf("-ring-entries %d: must be a power of two between 8 and 32768", c.RingEntries)
	}
	if c.Buffers < 1 || c.Buffers > 32768 || c.Buffers&(c.Buffers-1) != 0 {
		return fmt.Errorf("-buffers %d: must be a power of two between 1 and 32768", c.Buffers)
	}
	if c.BufferSize != 0 && (c.BufferSize < 64 || c.BufferSize > 16<<20) {
		return fmt.Errorf("-buffer-size %d: must be auto or between 64 B and 16 MiB", c.BufferSize)
	}
	if c.MaxQueue < c.MaxFrame+1 {
		return fmt.Errorf("-max-queue %d is smaller than one frame (-max-frame %d + 1): a full-size frame could never be queued", c.MaxQueue, c.MaxFrame)
	}
	for _, a := range []struct{ flag, addr string }{{"-metrics-addr", c.MetricsAddr}, {"-pprof-addr", c.PprofAddr}} {
		if a.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("%s %q: %v", a.flag, a.addr, err)
		}
	}
	if _, err := c.level(); err != nil {
		return err
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("-log-format %q: must be text or json", c.LogFormat)
	}
	rc := c.relayConfig(nil)
	if err := rc.Validate(); err != nil {
		return fmt.Errorf("-%w", err)
	}
	return nil
}

func (c *Config) level() (slog.Level, error) {
	switch c.LogLevel {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("-log-level %q: must be debug, info, warn or error", c.LogLevel)
}

func (c *Config) relayConfig(log *slog.Logger) relay.Config {
	return relay.Config{
		MaxFrame:        int(c.MaxFrame),
		MaxQueue:        int(c.MaxQueue),
		SlowConsumer:    relay.Policy(c.SlowConsumer),
		WriteTimeout:    c.WriteTimeout,
		FrameTimeout:    c.FrameTimeout,
		MaxConns:        c.MaxConns,
		ShutdownTimeout: c.ShutdownTimeout,
		Logger:          log,
	}
}

func (c *Config) reactorConfig(log *slog.Logger) reactor.Config {
	r := reactor.DefaultConfig()
	r.Backend = reactor.Backend(c.Backend)
	r.RingEntries = uint32(c.RingEntries)
	r.Buffers = c.Buffers
	r.BufferSize = int(c.BufferSize)
	r.NoDelay = c.NoDelay
	r.Logger = log
	return r
}

// size is a byte count flag that accepts plain numbers or KiB/MiB/GiB.
type size int

func (s *size) String() string {
	v := int(*s)
	switch {
	case v == 0:
		return "auto"
	case v >= 1<<20 && v%(1<<20) == 0:
		return strconv.Itoa(v>>20) + "MiB"
	case v >= 1<<10 && v%(1<<10) == 0:
		return strconv.Itoa(v>>10) + "KiB"
	}
	return strconv.Itoa(v)
}

func (s *size) Set(v string) error {
	if v == "auto" {
		*s = 0
		return nil
	}
	mult := 1
	num := v
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(v, u.suffix) {
			num, mult = strings.TrimSuffix(v, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil || n < 0 || n > (1<<40)/mult {
		return fmt.Errorf("%q is not a size: use bytes, or a number with KiB, MiB or GiB", v)
	}
	*s = size(n * mult)
	return nil
}
