package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/ringrelay/ringrelay/internal/servertest"
)

// Contender is one column of a comparison: a server that speaks the
// protocol, started fresh on a free loopback port. It is either a ringrelay
// backend or any other relay (an opponent) given by its command line.
type Contender struct {
	Name string
	// Argv is the program and its arguments. In each argument {addr} is
	// replaced by HOST:PORT, {host} by HOST and {port} by PORT, {loops} by
	// the number of loops the server is to run and {cpus} by the CPUs it
	// runs on (see Placement).
	Argv []string
	// marker, if set, is the text of the log line StartLine waits for.
	marker string
	// TLS, if set, makes the generator dial this column over TLS 1.3
	// with this client configuration (bench/tls.go).
	TLS *tls.Config
}

// Backend is the contender that runs the ringrelay binary at path with
// -backend name, plus flags.
func Backend(path, name string, flags []string) Contender {
	argv := append([]string{path, "-listen", "{addr}", "-backend", name}, flags...)
	return Contender{Name: name, Argv: argv, marker: "listening"}
}

// ParseOpponent reads NAME=COMMAND LINE, for instance
// `c=/tmp/ref/c-uring-relay {addr}`. The command line is split at blanks;
// single or double quotes keep blanks inside one argument. It must name the
// address through {addr} or {port}.
func ParseOpponent(spec string) (Contender, error) {
	name, line, ok := strings.Cut(spec, "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsFunc(name, unicode.IsSpace) {
		return Contender{}, fmt.Errorf("opponent %q: want NAME=COMMAND, e.g. 'c=/tmp/ref/c-uring-relay {addr}'", spec)
	}
	argv, err := SplitCommand(line)
	if err != nil {
		return Contender{}, fmt.Errorf("opponent %s: %w", name, err)
	}
	if len(argv) == 0 {
		return Contender{}, fmt.Errorf("opponent %s: empty command", name)
	}
	joined := strings.Join(argv, " ")
	if !strings.Contains(joined, "{addr}") && !strings.Contains(joined, "{port}") {
		return Contender{}, fmt.Errorf("opponent %s: the command must say where to listen with {addr} or {port}: %q", name, line)
	}
	return Contender{Name: name, Argv: argv}, nil
}

// LoopFlags are the flags `ringbench scale` gives ringrelay to say how many
// loops to run and on which CPUs.
const LoopFlags = "-loops {loops} -cpus {cpus}"

// SplitCommand splits a command line at unquoted blanks. Quotes group; a
// backslash outside single quotes takes the next character literally.
func SplitCommand(line string) ([]string, error) {
	var (
		args  []string
		cur   strings.Builder
		inArg bool
		quote rune
		esc   bool
	)
	for _, r := range line {
		switch {
		case esc:
			cur.WriteRune(r)
			esc = false
		case r == '\\' && quote != '\'':
			esc, inArg = true, true
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inArg = r, true
		case unicode.IsSpace(r):
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteRune(r)
			inArg = true
		}
	}
	if quote != 0 || esc {
		return nil, fmt.Errorf("unterminated quote or escape in %q", line)
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args, nil
}

// CommandLine is Argv as one line, for the record.
func (c Contender) CommandLine() string {
	parts := make([]string, len(c.Argv))
	for i, a := range c.Argv {
		if a == "" || strings.ContainsFunc(a, func(r rune) bool { return unicode.IsSpace(r) || strings.ContainsRune(`'"\`, r) }) {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts[i] = a
	}
	return strings.Join(parts, " ")
}

// Placement is how many loops a server runs and where.
type Placement struct {
	// Loops is what {loops} becomes: the server's event loops.
	Loops int
	// CPUs pins the server process to these CPUs (none: not pinned), and
	// {cpus} becomes them, comma-separated. With fewer CPUs than loops,
	// loops share CPUs: ringrelay's -loops 2 -cpus 0 puts both on CPU 0.
	CPUs []int
}

// OnCPUs is one loop on cpus (one loop unpinned when cpus is empty): how
// compare runs its servers.
func OnCPUs(cpus []int) Placement { return Placement{Loops: 1, CPUs: cpus} }

// Scales reports whether the command line says how many loops to run:
// otherwise the server runs the same whatever the placement's loop count.
func (c Contender) Scales() bool {
	return slices.ContainsFunc(c.Argv, func(a string) bool { return strings.Contains(a, "{loops}") })
}

// argv is Argv with the address and placement filled in.
func (c Contender) argv(addr string, at Placement) []string {
	host, port, _ := strings.Cut(addr, ":")
	r := strings.NewReplacer("{addr}", addr, "{host}", host, "{port}", port,
		"{loops}", strconv.Itoa(max(at.Loops, 1)), "{cpus}", cpuList(at.CPUs))
	out := make([]string, len(c.Argv))
	for i, a := range c.Argv {
		out[i] = r.Replace(a)
	}
	return out
}

// Server is one contender's process, serving on a loopback port of its own.
type Server struct {
	Contender
	*servertest.Proc
}

// serverOutputTail is how much of a server's output is kept for error
// messages.
const serverOutputTail = 16 << 10

// StartServer starts c on a free loopback port, placed as at says, and
// returns once it accepts connections and sends IDs.
func StartServer(ctx context.Context, c Contender, at Placement) (*Server, error) {
	addr, err := servertest.FreeAddr()
	if err != nil {
		return nil, err
	}
	argv := c.argv(addr, at)
	p, err := servertest.Run(servertest.Command{
		Path: argv[0], Args: argv[1:], Addr: addr, CPUs: at.CPUs,
		RaiseFileLimit: true, OutputTail: serverOutputTail,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	hello := 4 // the ID, the first thing a plaintext relay sends
	if c.TLS != nil {
		hello = 0 // a TLS relay sends nothing before the handshake
	}
	if err := p.WaitReady(ctx, 15*time.Second, hello); err != nil {
		p.Kill()
		return nil, fmt.Errorf("%s (%s): %w", c.Name, strings.Join(argv, " "), err)
	}
	return &Server{Contender: c, Proc: p}, nil
}

// Alive reports whether the process is still running.
func (s *Server) Alive() bool { return !s.Exited() }

// StartLine is the server's log line that says where it listens, for the
// record (ringrelay's names the backend it really chose); for an opponent,
// its first line of output, if any. The output reaches us through a pipe
// and a copying goroutine, so ringrelay's line may lag behind the first
// accepted connection: wait for it a little.
func (s *Server) StartLine() string {
	for range 100 {
		for line := range strings.Lines(s.Logs()) {
			if s.marker == "" || strings.Contains(line, s.marker) {
				return strings.TrimSpace(line)
			}
		}
		if s.marker == "" {
			return ""
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ""
}

// Stop asks the server to shut down with SIGTERM and kills it if it has not
// exited after a grace period.
func (s *Server) Stop() error { return s.Proc.Stop(10 * time.Second) }

// FindServer returns path if it is set, else bin/ringrelay under the working
// directory, else the ringrelay next to this executable.
func FindServer(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	candidates := []string{filepath.Join("bin", "ringrelay")}
	if exe, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(exe), "ringrelay"))
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return filepath.Abs(c)
		}
	}
	return "", fmt.Errorf("no ringrelay binary at %s (run `make build`, or pass -server PATH)", strings.Join(candidates, " or "))
}

// TLSBackend is Backend serving TLS: ringrelay with -tls-cert and
// -tls-key, dialed by the generator with cfg. Its column is named
// name+"-tls".
func TLSBackend(path, name, cert, key string, flags []string, cfg *tls.Config) Contender {
	c := Backend(path, name, append([]string{"-tls-cert", cert, "-tls-key", key}, flags...))
	c.Name, c.TLS = name+"-tls", cfg
	return c
}
