package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/ringrelay/ringrelay/internal/bytesize"
	"github.com/ringrelay/ringrelay/shard"
)

// Config is everything the bridge needs; Validate checks it once.
type Config struct {
	// Servers are the NATS URLs to try (nats://host:4222, tls://...).
	// Servers the cluster gossips are used too, on reconnect.
	Servers []string
	// Name prefixes every subject: NAME.node.K carries batches for node
	// K, NAME.nodes the announcements.
	Name string
	// Node is this node's index, NodeBits the bits of an ID that hold it.
	Node, NodeBits int

	// Credentials: a .creds file, or a user and password; not both.
	CredsFile      string
	User, Password string
	// TLS: a CA file to trust the servers, and a client certificate and
	// key for servers that ask for one.
	TLSCA, TLSCert, TLSKey string

	// MaxFrame is the largest payload a frame may carry, NUL not
	// counted: the relay's -max-frame. The servers' max_payload must fit
	// one such frame in a batch, or Start refuses.
	MaxFrame int
	// MaxBatch caps a batch in bytes; 0 means the server's max_payload.
	MaxBatch int

	// AnnounceEvery is how often a node says it is up on NAME.nodes; a
	// peer is up until AnnounceMissed of its announcements in a row have
	// not come.
	AnnounceEvery  time.Duration
	AnnounceMissed int
	// StartupWait is how long Start listens for another process with this
	// node index before it serves.
	StartupWait time.Duration

	// PendingMsgs and PendingBytes bound the batches received but not yet
	// handed to the loops; past them NATS drops batches (counted as
	// slow-consumer drops).
	PendingMsgs, PendingBytes int
	// SinkWait is how long a received frame may wait for room in a full
	// loop inbox before it is dropped. The loop signals room (Room), so a
	// long wait costs nothing while it lasts; it holds back the batches
	// behind it, which NATS buffers up to PendingMsgs and PendingBytes.
	SinkWait time.Duration
	// DrainBudget is about how many bytes the bridge takes from one
	// loop's outbox per pass, so one busy loop does not starve the rest.
	DrainBudget int
	// ReconnectWait is the pause between reconnect attempts to a server.
	ReconnectWait time.Duration
	// ShutdownTimeout bounds Close: how long it keeps draining the loops'
	// outboxes and publishing before it gives up on what is left
	// (counted as DropShutdown). The relay's -shutdown-timeout.
	ShutdownTimeout time.Duration

	Logger *slog.Logger
}

// DefaultConfig returns the defaults; Servers stays empty (no cluster).
func DefaultConfig() Config {
	return Config{
		Name:            "ringrelay",
		NodeBits:        4,
		MaxFrame:        1 << 20,
		AnnounceEvery:   2 * time.Second,
		AnnounceMissed:  3,
		StartupWait:     2 * time.Second,
		PendingMsgs:     4096,
		PendingBytes:    64 << 20,
		SinkWait:        100 * time.Millisecond,
		DrainBudget:     256 << 10,
		ReconnectWait:   time.Second,
		ShutdownTimeout: 5 * time.Second,
		Logger:          slog.Default(),
	}
}

// ParseServers splits a -cluster value: comma-separated URLs.
func ParseServers(s string) []string {
	var out []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// Validate returns the first setting that cannot work, named as its flag.
func (c Config) Validate() error {
	if len(c.Servers) == 0 {
		return errors.New("cluster: no NATS server given")
	}
	for _, s := range c.Servers {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return fmt.Errorf("cluster %q: want a URL like nats://host:4222", s)
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("cluster %q: scheme %q, want nats, tls, ws or wss", s, u.Scheme)
		}
	}
	if err := checkName(c.Name); err != nil {
		return err
	}
	if err := (shard.Scheme{Bits: c.NodeBits, Self: c.Node}).Validate(); err != nil {
		return err
	}
	if c.NodeBits == 0 {
		return errors.New("node-bits 0 leaves room for one node only: a cluster needs at least 1")
	}
	if c.CredsFile != "" && (c.User != "" || c.Password != "") {
		return errors.New("cluster-creds and cluster-user/-password: give one or the other")
	}
	if (c.User == "") != (c.Password == "") {
		return errors.New("cluster-user and cluster-password go together")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("cluster-tls-cert and cluster-tls-key go together")
	}
	for _, f := range []struct{ flag, path string }{
		{"cluster-creds", c.CredsFile}, {"cluster-tls-ca", c.TLSCA},
		{"cluster-tls-cert", c.TLSCert}, {"cluster-tls-key", c.TLSKey},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s: %w", f.flag, err)
		}
	}
	switch {
	case c.MaxFrame < 1:
		return fmt.Errorf("max-frame %d: must be at least 1 byte", c.MaxFrame)
	case c.MaxBatch != 0 && c.MaxBatch < BatchHeader+FrameOverhead+c.MaxFrame:
		return fmt.Errorf("cluster max batch %s: must hold one frame of max-frame %s (at least %s)",
			bytesize.Format(int64(c.MaxBatch)), bytesize.Format(int64(c.MaxFrame)),
			bytesize.Format(int64(BatchHeader+FrameOverhead+c.MaxFrame)))
	case c.AnnounceEvery <= 0:
		return fmt.Errorf("cluster announce interval %v: must be positive", c.AnnounceEvery)
	case c.AnnounceMissed < 1:
		return fmt.Errorf("cluster announcements missed %d: must be at least 1", c.AnnounceMissed)
	case c.StartupWait <= 0:
		return fmt.Errorf("cluster startup wait %v: must be positive (it is how a duplicate -node is found)", c.StartupWait)
	case c.PendingMsgs < 1 || c.PendingBytes < BatchHeader+FrameOverhead+c.MaxFrame:
		return fmt.Errorf("cluster pending limits %d batches, %s: need at least 1 batch and room for one max-frame batch",
			c.PendingMsgs, bytesize.Format(int64(c.PendingBytes)))
	case c.SinkWait < 0:
		return fmt.Errorf("cluster sink wait %v: must not be negative", c.SinkWait)
	case c.ShutdownTimeout < 0:
		return fmt.Errorf("cluster shutdown timeout %v: must not be negative", c.ShutdownTimeout)
	case c.DrainBudget < 1:
		return fmt.Errorf("cluster drain budget %d: must be at least 1 byte", c.DrainBudget)
	case c.ReconnectWait <= 0:
		return fmt.Errorf("cluster reconnect wait %v: must be positive", c.ReconnectWait)
	case c.Logger == nil:
		return errors.New("cluster: no logger")
	}
	return nil
}

// checkName accepts a subject prefix of dot-separated tokens of letters,
// digits, '-' and '_': no wildcards, no spaces, no empty token.
func checkName(name string) error {
	if name == "" {
		return errors.New("cluster-name: empty")
	}
	for _, tok := range strings.Split(name, ".") {
		if tok == "" {
			return fmt.Errorf("cluster-name %q: empty token between dots", name)
		}
		for _, r := range tok {
			ok := r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
			if !ok {
				return fmt.Errorf("cluster-name %q: %q is not allowed (letters, digits, '-', '_' and '.')", name, r)
			}
		}
	}
	return nil
}

// nodeSubject is where batches for node k go.
func (c Config) nodeSubject(k int) string { return fmt.Sprintf("%s.node.%d", c.Name, k) }

// announceSubject is where nodes announce themselves.
func (c Config) announceSubject() string { return c.Name + ".nodes" }
