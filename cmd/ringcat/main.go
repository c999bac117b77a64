// Command ringcat talks to a ringrelay server by hand.
//
// It connects, prints the ID the relay assigned, then sends one frame per
// stdin line of the form "<dest-id> <text>" and prints every payload that
// arrives, prefixed with its arrival time. An ID is read as hex when it has
// exactly 8 hex digits (as ringcat prints them) or a 0x prefix, and as
// decimal otherwise.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ringrelay/ringrelay/relay/client"
)

const (
	dialTimeout = 10 * time.Second
	// drainTime is how long ringcat keeps printing arrivals after stdin
	// ends, so that replies to the last lines are not lost.
	drainTime = 500 * time.Millisecond
	maxLine   = 16 << 20
)

func main() {
	flags := flag.NewFlagSet("ringcat", flag.ExitOnError)
	addr := flags.String("addr", "127.0.0.1:8080", "relay address, host:port")
	useTLS := flags.Bool("tls", false, "connect with TLS 1.3 (the relay runs with -tls-cert); implied by the other -tls flags")
	caFile := flags.String("tls-ca", "", "PEM `file` of the CA that signed the relay's certificate (default: the system's roots)")
	certFile := flags.String("tls-cert", "", "PEM `file` with a client certificate, for a relay that asks for one (-tls-client-ca)")
	keyFile := flags.String("tls-key", "", "PEM `file` with the client certificate's private key")
	serverName := flags.String("tls-server-name", "", "`name` the relay's certificate must carry (default: the host of -addr)")
	flags.Usage = func() {
		fmt.Fprintf(flags.Output(), "usage: ringcat [-addr host:port] [-tls [-tls-ca file] [-tls-cert file -tls-key file]]\n\n"+
			"Reads lines \"<dest-id> <text>\" from stdin and sends each text to dest-id.\n"+
			"IDs are hex with 8 digits or a 0x prefix, decimal otherwise.\n\n")
		flags.PrintDefaults()
	}
	flags.Parse(os.Args[1:]) // exits 2 on a bad flag
	if flags.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "ringcat: unexpected argument %q\n", flags.Arg(0))
		flags.Usage()
		os.Exit(2)
	}

	tlsCfg, err := tlsConfig(*useTLS, *caFile, *certFile, *keyFile, *serverName)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ringcat: %v\n", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	var conn *client.Conn
	if tlsCfg != nil {
		conn, err = client.DialTLS(ctx, *addr, tlsCfg)
	} else {
		conn, err = client.Dial(ctx, *addr)
	}
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "ringcat: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("your id: %08x\n", conn.ID())

	stdinDone := make(chan struct{})
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		receive(conn, stdinDone)
	}()

	send(conn, os.Stdin)

	// Stdin ended: keep printing arrivals a little longer, then leave.
	close(stdinDone)
	conn.SetReadDeadline(time.Now().Add(drainTime))
	<-recvDone
	conn.Close()
}

// send turns stdin lines into frames until stdin ends. A bad line is reported
// and skipped; a failed write means the connection is gone.
func send(conn *client.Conn, in io.Reader) {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for line := 1; sc.Scan(); line++ {
		dest, text, err := parseLine(strings.TrimSuffix(sc.Text(), "\r"))
		if err == nil {
			err = conn.Send(dest, []byte(text))
			if err != nil && !errors.Is(err, client.ErrNULInPayload) {
				lost(err)
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "ringcat: line %d: %v\n", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "ringcat: reading stdin: %v\n", err)
	}
}

// receive prints payloads as they arrive. Once stdinDone is closed, the end
// of the connection is the expected end of the drain, not a failure.
func receive(conn *client.Conn, stdinDone <-chan struct{}) {
	for {
		payload, err := conn.Recv()
		if err != nil {
			select {
			case <-stdinDone:
				return
			default:
				lost(err)
			}
		}
		fmt.Printf("%s %s\n", time.Now().Format("2006-01-02T15:04:05.000Z07:00"), payload)
	}
}

func lost(err error) {
	fmt.Fprintf(os.Stderr, "ringcat: connection lost: %v\n", err)
	os.Exit(1)
}

// parseLine splits "<dest-id> <text>".
func parseLine(line string) (uint32, string, error) {
	id, text, found := strings.Cut(line, " ")
	if !found {
		return 0, "", fmt.Errorf("want \"<dest-id> <text>\", got %q", line)
	}
	dest, err := parseID(id)
	if err != nil {
		return 0, "", err
	}
	return dest, text, nil
}

// parseID reads an ID the way ringcat prints it (8 hex digits), with a 0x
// prefix, or in decimal.
func parseID(s string) (uint32, error) {
	digits, base := s, 10
	switch {
	case strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X"):
		digits, base = s[2:], 16
	case len(s) == 8:
		base = 16
	}
	v, err := strconv.ParseUint(digits, base, 32)
	if err != nil {
		return 0, fmt.Errorf("bad destination ID %q: want 8 hex digits, 0x<hex> or decimal", s)
	}
	return uint32(v), nil
}
