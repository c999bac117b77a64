package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringrelay/ringrelay/cluster"
	"github.com/ringrelay/ringrelay/metrics"
	"github.com/ringrelay/ringrelay/relay"
	"github.com/ringrelay/ringrelay/shard"
)

// clusterFlags is the -h group of the cluster's flags, bound to
// c.Cluster (package cluster's Config).
func (c *Config) clusterFlags(fs *flag.FlagSet) flagGroup {
	cc := &c.Cluster
	return flagGroup{"Cluster (several nodes joined through NATS; see README.md)", []flagDef{
		{"cluster", func(name, usage string) { fs.Var(serversFlag{&cc.Servers}, name, usage) }, "NATS server `URLs`, comma-separated (nats://host:4222, tls://...); off when empty: one node, no NATS"},
		{"node", bind(fs.IntVar, &cc.Node), "this node's `index`, unique in the cluster: 0 to 2^node-bits - 1"},
		{"node-bits", bind(fs.IntVar, &cc.NodeBits), "`bits` at the top of every ID that hold the node index (1 to 16, the same on every node)"},
		{"cluster-name", bind(fs.StringVar, &cc.Name), "subject `prefix`: batches for node K go on NAME.node.K, announcements on NAME.nodes"},
		{"cluster-creds", bind(fs.StringVar, &cc.CredsFile), "NATS credentials `file` (or -cluster-user and -cluster-password)"},
		{"cluster-user", bind(fs.StringVar, &cc.User), "NATS `user` name"},
		{"cluster-password", bind(fs.StringVar, &cc.Password), "NATS `password`"},
		{"cluster-tls-ca", bind(fs.StringVar, &cc.TLSCA), "CA certificate `file` that signs the NATS servers' certificates"},
		{"cluster-tls-cert", bind(fs.StringVar, &cc.TLSCert), "client certificate `file`, for NATS servers that ask for one (with -cluster-tls-key)"},
		{"cluster-tls-key", bind(fs.StringVar, &cc.TLSKey), "client certificate's key `file`"},
	}}
}

// clustered reports whether -cluster was given.
func (c *Config) clustered() bool { return len(c.Cluster.Servers) > 0 }

// validateCluster checks the cluster flags when -cluster is set, and
// refuses cluster flags given without it.
func (c *Config) validateCluster() error {
	cc := &c.Cluster
	if !c.clustered() {
		d := cluster.DefaultConfig()
		for _, f := range []struct {
			name, value string
			set         bool
		}{
			{"node", strconv.Itoa(cc.Node), cc.Node != d.Node},
			{"node-bits", strconv.Itoa(cc.NodeBits), cc.NodeBits != d.NodeBits},
			{"cluster-name", cc.Name, cc.Name != d.Name},
			{"cluster-creds", cc.CredsFile, cc.CredsFile != ""},
			{"cluster-user", cc.User, cc.User != ""},
			{"cluster-password", "(hidden)", cc.Password != ""},
			{"cluster-tls-ca", cc.TLSCA, cc.TLSCA != ""},
			{"cluster-tls-cert", cc.TLSCert, cc.TLSCert != ""},
			{"cluster-tls-key", cc.TLSKey, cc.TLSKey != ""},
		} {
			if f.set {
				return fmt.Errorf("-%s %s: a cluster setting, but -cluster names no NATS server", f.name, f.value)
			}
		}
		return nil
	}
	cc.MaxFrame = c.Relay.MaxFrame
	cc.ShutdownTimeout = c.Relay.ShutdownTimeout
	if err := cc.Validate(); err != nil {
		return fmt.Errorf("-%w", err)
	}
	return nil
}

// serversFlag is -cluster: a comma-separated list of NATS URLs.
type serversFlag struct{ p *[]string }

func (s serversFlag) String() string {
	if s.p == nil {
		return ""
	}
	return strings.Join(*s.p, ",")
}

func (s serversFlag) Set(v string) error {
	*s.p = cluster.ParseServers(v)
	if len(*s.p) == 0 {
		return errors.New("no URL given")
	}
	return nil
}

// node is this process's part of a cluster: the bridge, and whether it
// stopped serving.
type node struct {
	bridge *cluster.Bridge
	failed atomic.Bool
	done   chan struct{} // closed by close: the watcher ends
	once   sync.Once
}

// joinCluster readies the servers (one per loop) for the cluster, starts
// the bridge (it connects, and refuses a duplicate -node within its
// startup wait), and shuts the servers down if the bridge later stops
// serving. Call it before the servers run. It returns nil, nil without
// -cluster.
func joinCluster(cfg Config, servers []*relay.Server, log *slog.Logger) (*node, error) {
	if !cfg.clustered() {
		return nil, nil
	}
	cc := cfg.Cluster
	cc.Logger = log
	scheme, err := shard.NewScheme(cc.NodeBits, cc.Node)
	if err != nil {
		return nil, err
	}
	rs, err := relay.Join(servers, scheme)
	if err != nil {
		return nil, err
	}
	l := rs.Links()
	b, err := cluster.Start(cc, cluster.QueueLoops(l.Out, l.In, l.Owner, l.Wake))
	if errors.Is(err, cluster.ErrDuplicateNode) {
		return nil, fmt.Errorf("%w: refusing to serve a node index another process serves", err)
	}
	if err != nil {
		return nil, err
	}
	rs.Attach(b)
	n := &node{bridge: b, done: make(chan struct{})}
	go func() {
		select {
		case <-b.Failed():
		case <-n.done:
			return
		}
		n.failed.Store(true)
		log.Error("cluster: stopped serving; shutting down", "err", b.Err())
		for _, s := range servers {
			s.Shutdown()
		}
	}()
	return n, nil
}

// close leaves the cluster; it reports whether the bridge had failed.
func (n *node) close() (failed bool) {
	if n == nil {
		return false
	}
	n.once.Do(func() {
		close(n.done)
		n.bridge.Close()
	})
	return n.failed.Load() || n.bridge.Err() != nil
}

// metricsHandler serves the loops' metrics, the bridge's when n is set,
// and extra (the TLS collectors when TLS is on).
func metricsHandler(backend string, n *node, extra []prometheus.Collector, loops ...metrics.Loop) http.Handler {
	reg := metrics.NewRegistry(backend, loops...)
	if n != nil {
		reg.MustRegister(metrics.NewClusterCollector(n.bridge.Snapshot))
	}
	reg.MustRegister(extra...)
	return metrics.HandlerFor(reg)
}
