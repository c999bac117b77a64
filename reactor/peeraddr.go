package reactor

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// PeerAddr returns the address of the connection's remote end. Unlike the
// other Conn methods it makes a system call (getpeername), so an owner
// asks once, at Opened, and only when it needs the address (a limit per
// source address).
func (c *Conn) PeerAddr() (netip.Addr, error) {
	sa, err := unix.Getpeername(int(c.fd))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("getpeername: %w", err)
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(a.Addr), nil
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(a.Addr).Unmap(), nil
	}
	return netip.Addr{}, fmt.Errorf("getpeername: not an IP socket address (%T)", sa)
}
