package natstest

import (
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestStopHoldsPorts: while a server is stopped, its client and route
// ports stay its own. A dial is refused as if nothing were there, and no
// other socket can bind them (a connect(2) picking its ephemeral port
// would otherwise take one, and then hold it in TIME_WAIT for a minute,
// so the server could not come back); Restart brings the server back on
// both and the mesh closes again.
func TestStopHoldsPorts(t *testing.T) {
	c := Start(t, 2, Options{})
	client := c.Server(1).Addr().(*net.TCPAddr).Port
	route := c.Server(1).ClusterAddr().Port
	c.Stop(1)

	for _, port := range []int{client, route} {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if nc, err := net.Dial("tcp", addr); !errors.Is(err, syscall.ECONNREFUSED) {
			if nc != nil {
				nc.Close()
			}
			t.Errorf("dial %s of a stopped server: %v, want connection refused", addr, err)
		}
		// What connect(2) would do with an ephemeral port: bind it
		// without SO_REUSEADDR.
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		err = unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
		unix.Close(fd)
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("bind %s while its server is stopped: %v, want address in use", addr, err)
		}
	}

	c.Restart(1)
	if got := c.Server(1).Addr().(*net.TCPAddr).Port; got != client {
		t.Errorf("restarted on client port %d, want %d", got, client)
	}
	nc, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(client)))
	if err != nil {
		t.Fatalf("dial the restarted server: %v", err)
	}
	nc.Close()
}
