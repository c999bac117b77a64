// Command ringrelay is the relay server. See README.md for the flags and
// docs/protocol.md for the wire contract.
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

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringrelay/ringrelay/internal/bytesize"
	"github.com/ringrelay/ringrelay/metrics"
	"github.com/ringrelay/ringrelay/relay"
	"github.com/ringrelay/ringrelay/shard"
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
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var log *slog.Logger
	if cfg.LogFormat == "json" {
		log = slog.New(slog.NewJSONHandler(stderr, opts))
	} else {
		log = slog.New(slog.NewTextHandler(stderr, opts))
	}
	cfg.Reactor.Logger, cfg.Relay.Logger = log, log
	if ml := applyMemoryLimit(os.DirFS("/")); ml.source != "none" {
		attrs := []any{"limit", bytesize.Format(ml.bytes), "source", ml.source}
		if ml.source == "cgroup" {
			attrs = append(attrs, "cgroup_limit", bytesize.Format(ml.cgroup))
		}
		log.Info("Go memory limit", attrs...)
	}

	nloops, pins, err := cfg.layout()
	if err != nil {
		fmt.Fprintf(stderr, "ringrelay: %v\n", err)
		return 2
	}
	// Each loop locks its own goroutine to a thread, pins it (-cpus) and
	// only then opens its ring there: SINGLE_ISSUER binds a ring to the
	// thread that creates it. The runtime gets a P per loop plus one for
	// itself, the signal handler and the metrics server.
	if runtime.GOMAXPROCS(0) < nloops+1 {
		runtime.GOMAXPROCS(nloops + 1)
	}
	gc := relay.GroupConfig{
		Loops:   nloops,
		Listen:  cfg.Listen,
		Reactor: cfg.Reactor,
		Relay:   cfg.Relay,
		Metrics: make([]*relay.Metrics, nloops),
	}
	for k := range gc.Metrics {
		gc.Metrics[k] = new(relay.Metrics)
	}
	if pins != nil {
		gc.Pin = func(k int) error { return shard.PinThread(pins[k]) }
	}
	// The cluster's bridge starts before the loops serve: it connects to
	// NATS and makes sure no other process serves this -node.
	var nd *node
	gc.Join = func(servers []*relay.Server) (err error) {
		if nd, err = joinCluster(cfg, servers, log); err != nil {
			return fmt.Errorf("cannot join the cluster: %w", err)
		}
		return nil
	}
	if cfg.TLS.store != nil {
		gc.Listen = "" // the TLS handshake pool owns -listen (tls.go)
	}
	g, err := relay.StartGroup(gc)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	defer nd.close()
	stop := func() {
		g.Shutdown()
		_ = g.Wait()
	}
	tlsSrv, err := startTLS(cfg, g, log)
	if err != nil {
		stop()
		log.Error("cannot start TLS", "addr", cfg.Listen, "err", err)
		return 1
	}
	defer tlsSrv.close()
	var extra []prometheus.Collector
	if tlsSrv != nil {
		extra = tlsSrv.collectors()
	}

	if cfg.MetricsAddr != "" {
		loops := make([]metrics.Loop, nloops)
		for k := range loops {
			loops[k] = metrics.Loop{Relay: gc.Metrics[k], Reactor: g.Loop(k).Stats()}
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", metricsHandler(string(g.Loop(0).Backend()), nd, extra, loops...))
		mux.Handle("/connz", metrics.Connz(g, nloops))
		if err := serveHTTP("metrics", cfg.MetricsAddr, mux, log); err != nil {
			stop()
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
		if err := serveHTTP("pprof", cfg.PprofAddr, mux, log); err != nil {
			stop()
			log.Error("cannot serve pprof", "addr", cfg.PprofAddr, "err", err)
			return 1
		}
	}

	// Signals reach the loops only through Shutdown, which sets a flag and
	// wakes each loop's eventfd; nothing here touches loop state.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		log.Info("signal received, shutting down (send it again to exit at once)", "signal", s.String())
		g.Shutdown()
		s = <-sigs
		log.Warn("second signal, exiting at once", "signal", s.String())
		os.Exit(1)
	}()

	// SIGUSR2: lame duck (relay.Group.LameDuck), then the shutdown above
	// once every connection is closed. Later SIGUSR2s change nothing.
	duck := make(chan os.Signal, 1)
	signal.Notify(duck, syscall.SIGUSR2)
	go func() {
		<-duck
		log.Info("SIGUSR2 received: lame duck", "grace", cfg.LameDuckGrace, "duration", cfg.LameDuckDuration)
		if tlsSrv != nil {
			tlsSrv.close() // the handshake pool owns the listener
		}
		<-g.LameDuck(cfg.LameDuckGrace, cfg.LameDuckDuration)
		g.Shutdown()
	}()

	l0 := g.Loop(0)
	addr := g.Addr()
	if tlsSrv != nil {
		addr = tlsSrv.addr()
	}
	attrs := []any{"addr", addr.String(), "backend", string(l0.Backend()), "features", l0.Features(), "loops", nloops}
	if tlsSrv != nil {
		attrs = append(attrs, "tls", true, "client_certs", tlsSrv.store.Mutual())
	}
	if pins != nil {
		attrs = append(attrs, "cpus", shard.FormatCPUs(pins))
	}
	log.Info("listening", attrs...)
	if err := g.Wait(); err != nil {
		log.Error("event loop failed", "err", err)
		return 1
	}
	if nd.close() {
		return 1 // the bridge stopped serving: said why when it did
	}
	log.Info("shut down cleanly")
	return 0
}

// serveHTTP listens on addr now (so a bad address fails at start) and
// serves handler on its own goroutine, away from the loop.
func serveHTTP(what, addr string, h http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	// The address bound, which says the port when addr asked for any (:0).
	log.Info("serving "+what, "addr", ln.Addr().String())
	go func() {
		if err := http.Serve(ln, h); err != nil {
			log.Error("http server stopped", "addr", addr, "err", err)
		}
	}()
	return nil
}
