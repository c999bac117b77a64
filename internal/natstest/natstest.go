// Package natstest runs embedded NATS servers for the tests that need a
// bus: one server, or several joined by routes, on loopback ports the
// kernel picks, stopped when the test ends. It owns the one way the tests
// start a server, wait for the route mesh and for subscribers' interest,
// and stop and restart a server on its old ports, which it keeps bound
// while the server is down so that nothing else can take them.
//
// Clients are told no other server's address (NoAdvertise), so a client
// stays on the server it was given: a test that stops server i sees that
// server's clients lose the bus until it is back, while the others go on.
package natstest

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/sys/unix"

	"github.com/ringrelay/ringrelay/internal/servertest"
)

// Options are what a test may ask of every server of a Cluster; the zero
// value is a plain server with NATS's default payload limit.
type Options struct {
	// MaxPayload is the largest message a server accepts (0: NATS's
	// default, 1 MiB).
	MaxPayload int32
	// User and Password, when set, are required of every client.
	User, Password string
	// TLS, when set, makes every client connect over TLS with this
	// configuration (ClientAuth in it decides whether a client
	// certificate is required).
	TLS *tls.Config
}

// Cluster is n embedded NATS servers; with more than one, each is routed
// to the first and learns the others from it.
type Cluster struct {
	t       servertest.TB
	opts    []*server.Options
	servers []*server.Server
	// held[i] are the ports of server i, stopped, kept from the kernel's
	// other users until Restart (see hold).
	held [][]int
}

// readyWait bounds a server's start, meshWait the routes between servers
// and interestWait the spread of a subscription: generous, since they are
// failures when hit, not measurements.
const (
	readyWait    = 30 * time.Second
	meshWait     = 20 * time.Second
	interestWait = 10 * time.Second
)

// Start runs n servers (n >= 1) and, with several, waits until every one
// has a route to every other. They are shut down when the test ends.
func Start(t servertest.TB, n int, o Options) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest.Start: %d servers", n)
	}
	c := &Cluster{t: t}
	t.Cleanup(func() {
		for _, s := range c.servers {
			s.Shutdown()
			s.WaitForShutdown()
		}
		for _, fds := range c.held {
			release(fds)
		}
	})
	for i := range n {
		so := &server.Options{
			ServerName: fmt.Sprintf("s%d", i),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			NoLog:      true,
			NoSigs:     true,
			MaxPayload: o.MaxPayload,
			Username:   o.User,
			Password:   o.Password,
		}
		if o.TLS != nil {
			so.TLS, so.TLSConfig, so.TLSTimeout = true, o.TLS, 5
			so.TLSVerify = o.TLS.ClientAuth == tls.RequireAndVerifyClientCert
		}
		if n > 1 {
			so.Cluster = server.ClusterOpts{
				Name:        "natstest",
				Host:        "127.0.0.1",
				Port:        server.RANDOM_PORT,
				NoAdvertise: true,
			}
			if i > 0 {
				so.Routes = server.RoutesFromStr(fmt.Sprintf("nats://127.0.0.1:%d", c.servers[0].ClusterAddr().Port))
			}
		}
		c.opts = append(c.opts, so)
		c.servers = append(c.servers, c.run(so))
		c.held = append(c.held, nil)
	}
	c.WaitMesh()
	return c
}

// run starts one server and waits until it takes connections. A server
// restarted on its old ports may find one taken for a moment (see hold):
// then it tries again, within the same wait.
func (c *Cluster) run(o *server.Options) *server.Server {
	c.t.Helper()
	deadline := time.Now().Add(readyWait)
	for {
		s, err := server.NewServer(o)
		if err != nil {
			c.t.Fatalf("nats server %s: %v", o.ServerName, err)
		}
		logged := &problems{}
		s.SetLogger(logged, false, false)
		go s.Start()
		for !logged.portTaken() && time.Now().Before(deadline) {
			if s.ReadyForConnections(100 * time.Millisecond) {
				return s
			}
		}
		s.Shutdown()
		s.WaitForShutdown()
		if !logged.portTaken() || time.Now().After(deadline) {
			c.t.Fatalf("nats server %s not ready within %v; it logged:\n%s", o.ServerName, readyWait, logged)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// problems is a server's log, warnings and errors only: what a test that
// fails to start a server says about why.
type problems struct {
	mu    sync.Mutex
	lines []string
}

func (p *problems) add(level, format string, v ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.lines) < 50 {
		p.lines = append(p.lines, level+": "+fmt.Sprintf(format, v...))
	}
}

// portTaken reports whether the server could not listen on a port that
// something else holds.
func (p *problems) portTaken() bool {
	return strings.Contains(p.String(), "address already in use")
}

func (p *problems) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.lines) == 0 {
		return "(no warning or error)\n"
	}
	return strings.Join(p.lines, "\n") + "\n"
}

func (p *problems) Warnf(format string, v ...any)  { p.add("warning", format, v...) }
func (p *problems) Errorf(format string, v ...any) { p.add("error", format, v...) }
func (p *problems) Fatalf(format string, v ...any) { p.add("fatal", format, v...) }
func (p *problems) Noticef(string, ...any)         {}
func (p *problems) Debugf(string, ...any)          {}
func (p *problems) Tracef(string, ...any)          {}

// Len is the number of servers.
func (c *Cluster) Len() int { return len(c.servers) }

// URL is server i's client URL (nats://, or tls:// when Options.TLS is
// set).
func (c *Cluster) URL(i int) string {
	u := c.servers[i].ClientURL()
	if c.opts[i].TLSConfig != nil {
		u = strings.Replace(u, "nats://", "tls://", 1)
	}
	return u
}

// Server is server i, for what the helpers here do not cover.
func (c *Cluster) Server(i int) *server.Server { return c.servers[i] }

// WaitMesh waits until every server has a route to every other.
func (c *Cluster) WaitMesh() {
	c.t.Helper()
	servertest.WaitFor(c.t, "a full route mesh between the NATS servers", meshWait, func() bool {
		for _, s := range c.servers {
			if s.NumRemotes() != len(c.servers)-1 {
				return false
			}
		}
		return true
	})
}

// WaitInterest waits until every server sees a subscriber on each
// subject.
func (c *Cluster) WaitInterest(subjects ...string) {
	c.t.Helper()
	servertest.WaitFor(c.t, "interest in "+strings.Join(subjects, ", ")+" on every NATS server", interestWait, func() bool {
		for _, s := range c.servers {
			for _, subj := range subjects {
				if !s.GlobalAccount().SubscriptionInterest(subj) {
					return false
				}
			}
		}
		return true
	})
}

// Stop shuts server i down, remembering its ports for Restart and
// keeping them meanwhile (see hold).
func (c *Cluster) Stop(i int) {
	s := c.servers[i]
	// The running server reads its options from other goroutines: the
	// restart gets a copy with the ports filled in.
	o := c.opts[i].Clone()
	o.Port = s.Addr().(*net.TCPAddr).Port
	ports := []int{o.Port}
	if len(c.servers) > 1 {
		o.Cluster.Port = s.ClusterAddr().Port
		ports = append(ports, o.Cluster.Port)
	}
	c.opts[i] = o
	s.Shutdown()
	s.WaitForShutdown()
	c.held[i] = hold(ports)
}

// Restart starts server i again on its old client and route ports and
// waits for the route mesh.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	release(c.held[i])
	c.held[i] = nil
	c.servers[i] = c.run(c.opts[i])
	c.WaitMesh()
}

// hold binds a socket to each port, without listening: while a server is
// stopped, no connect(2) elsewhere in the process or on the machine can
// take its port as an ephemeral one, which would keep it from listening
// there again, and a client dialling it is refused as if nothing were
// bound. A port that cannot be held is left to chance.
func hold(ports []int) []int {
	var fds []int
	for _, port := range ports {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			continue
		}
		// SO_REUSEADDR: the stopped server's connections may linger in
		// TIME_WAIT, and the restarted server's listener sets it too.
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if err == nil {
			err = unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
		}
		if err != nil {
			unix.Close(fd)
			continue
		}
		fds = append(fds, fd)
	}
	return fds
}

func release(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
