// Command devnats is a NATS server for trying a ringrelay cluster on one
// machine (make cluster): the official server, embedded, on loopback,
// with a max_payload that holds a batch of a 1 MiB frame. For anything
// else, run nats-server itself.
package main

import (
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ringrelay/ringrelay/internal/bytesize"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:4222", "client `address` to listen on")
	maxPayload := flag.String("max-payload", "2MiB", "largest message the server accepts (`size`); must hold -max-frame plus 17 bytes")
	flag.Parse()
	if err := serve(*addr, *maxPayload); err != nil {
		fmt.Fprintf(os.Stderr, "devnats: %v\n", err)
		os.Exit(1)
	}
}

func serve(addr, maxPayload string) error {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %v", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("-addr %q: port: %v", addr, err)
	}
	mp, err := bytesize.Parse(maxPayload)
	if err != nil || mp < 1 || mp > math.MaxInt32 {
		return fmt.Errorf("-max-payload %q: want a size up to 2GiB", maxPayload)
	}
	s, err := server.NewServer(&server.Options{
		ServerName: "devnats",
		Host:       host,
		Port:       port,
		MaxPayload: int32(mp),
		NoSigs:     true,
	})
	if err != nil {
		return err
	}
	s.ConfigureLogger()
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		return fmt.Errorf("not ready to accept connections on %s", addr)
	}
	fmt.Fprintf(os.Stderr, "devnats: listening on %s, max_payload %s\n", s.ClientURL(), bytesize.Format(mp))
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	<-sigs
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}
