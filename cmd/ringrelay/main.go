// Command ringrelay is the relay server. See README.md for the flags and
// PROTOCOL.md for the wire contract.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/ringrelay/ringrelay/metrics"
	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
)

func main() {
	// At least two Ps, whatever the CPU affinity (GOMAXPROCS follows it:
	// 1 under taskset -c 0), unless GOMAXPROCS is set. With one P, each
	// time the loop blocks in io_uring_enter for more than 20 us the
	// runtime's sysmon finds no idle P and takes the loop's away, then
	// ticks every 20 us: at moderate load that doubled the server's CPU
	// per frame. The second P stays idle; it only has to exist.
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < 2 {
		runtime.GOMAXPROCS(2)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "ringrelay: %v\nRun 'ringrelay -h' for the flags.\n", err)
		return 2
	}
	if cfg.Probe {
		printProbe(stdout)
		return 0
	}
	level, _ := cfg.level()
	opts := &slog.HandlerOptions{Level: level}
	var log *slog.Logger
	if cfg.LogFormat == "json" {
		log = slog.New(slog.NewJSONHandler(stderr, opts))
	} else {
		log = slog.New(slog.NewTextHandler(stderr, opts))
	}

	// The loop is opened on this goroutine and run on it: on io_uring the
	// goroutine is locked to its thread, which is the ring's only issuer.
	loop, err := reactor.Open(cfg.Listen, cfg.reactorConfig(log))
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	m := new(relay.Metrics)
	srv := relay.NewServer(loop, cfg.relayConfig(log), m)

	if cfg.MetricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics.Handler(string(loop.Backend()), metrics.Loop{Relay: m, Reactor: loop.Stats()}))
		if err := serveHTTP(cfg.MetricsAddr, mux, log); err != nil {
			loop.Close()
			log.Error("cannot serve metrics", "addr", cfg.MetricsAddr, "err", err)
			return 1
		}
	}
	if cfg.PprofAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		if err := serveHTTP(cfg.PprofAddr, mux, log); err != nil {
			loop.Close()
			log.Error("cannot serve pprof", "addr", cfg.PprofAddr, "err", err)
			return 1
		}
	}

	// Signals reach the loop only through Shutdown, which sets a flag and
	// wakes the loop's eventfd; nothing here touches loop state.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		log.Info("signal received, shutting down (send it again to exit at once)", "signal", s.String())
		srv.Shutdown()
		s = <-sigs
		log.Warn("second signal, exiting at once", "signal", s.String())
		os.Exit(1)
	}()

	log.Info("listening", "addr", loop.Addr().String(), "backend", string(loop.Backend()), "features", loop.Features())
	if err := srv.Run(); err != nil {
		log.Error("event loop failed", "err", err)
		return 1
	}
	log.Info("shut down cleanly")
	return 0
}

// serveHTTP listens on addr now (so a bad address fails at start) and
// serves handler on its own goroutine, away from the loop.
func serveHTTP(addr string, h http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	go func() {
		if err := http.Serve(ln, h); err != nil {
			log.Error("http server stopped", "addr", addr, "err", err)
		}
	}()
	return nil
}
