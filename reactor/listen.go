package reactor

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// listen opens a non-blocking TCP listening socket on addr ("host:port").
// It returns the descriptor and the bound address (the real port when addr
// asked for port 0).
func listen(addr string, backlog int) (int, net.Addr, error) {
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return -1, nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	family, sa := unix.AF_INET, unix.Sockaddr(nil)
	if ip4 := ta.IP.To4(); ip4 != nil || ta.IP == nil {
		s := &unix.SockaddrInet4{Port: ta.Port}
		if ip4 != nil {
			copy(s.Addr[:], ip4)
		}
		sa = s
	} else {
		family = unix.AF_INET6
		s := &unix.SockaddrInet6{Port: ta.Port}
		copy(s.Addr[:], ta.IP.To16())
		sa = s
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, fmt.Errorf("listen on %s: socket: %w", addr, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("listen on %s: SO_REUSEADDR: %w", addr, err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("listen on %s: bind: %w", addr, err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("listen on %s: getsockname: %w", addr, err)
	}
	return fd, sockaddrToTCP(bound), nil
}

// listenOn opens the loop's listener on addr, or none when addr is "": such
// a loop gets its connections only through Adopt.
func (l *eventLoop) listenOn(addr string) error {
	if addr == "" {
		return nil
	}
	fd, bound, err := listen(addr, l.cfg.Backlog)
	if err != nil {
		return err
	}
	l.listenFd, l.addr = fd, bound
	return nil
}

func sockaddrToTCP(sa unix.Sockaddr) *net.TCPAddr {
	switch s := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(s.Addr[:]).To16(), Port: s.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(s.Addr[:]), Port: s.Port}
	}
	return nil
}

// tuneAccepted applies per-connection socket options.
func tuneAccepted(fd int, noDelay bool) {
	if noDelay {
		// A failure here only costs latency; the connection still works.
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
}

// isFdExhaustion reports whether an accept error means the process or the
// system ran out of descriptors: the listener stays healthy, but accepting
// must pause or it would spin.
func isFdExhaustion(err error) bool {
	return err == unix.EMFILE || err == unix.ENFILE || err == unix.ENOBUFS || err == unix.ENOMEM
}
