package reactor

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// RemoteAddr is the peer's address (getpeername), or the zero AddrPort
// when the socket no longer has one (the peer reset it) or the
// connection is gone. Like Unacked it makes a system call, so owners ask
// it off the data path only (an operator's page of connections); it does
// not allocate: the address is read into a buffer on the stack rather
// than through unix.Getpeername, which returns a heap-allocated Sockaddr.
func (c *Conn) RemoteAddr() netip.AddrPort {
	if c.flags&flagOpen == 0 {
		return netip.AddrPort{}
	}
	var rsa unix.RawSockaddrAny
	n := uint32(unix.SizeofSockaddrAny)
	_, _, errno := unix.RawSyscall(unix.SYS_GETPEERNAME, uintptr(c.fd),
		uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&n)))
	if errno != 0 {
		return netip.AddrPort{}
	}
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&rsa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port(sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&rsa))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port(sa.Port))
	}
	return netip.AddrPort{}
}

// port converts a port in network byte order, as the kernel stores it.
func port(p uint16) uint16 {
	var b [2]byte
	*(*uint16)(unsafe.Pointer(&b[0])) = p
	return binary.BigEndian.Uint16(b[:])
}

// TLSSuite is the cipher suite of a TLS connection (one AdoptTLS
// opened; always TLS 1.3), or 0 for a plaintext one. Like RemoteAddr it is
// for an operator's page, off the data path.
func (c *Conn) TLSSuite() uint16 {
	if c.flags&(flagOpen|flagTLS) != flagOpen|flagTLS || int(c.slot) >= len(c.loop.tls) {
		return 0
	}
	if ts := c.loop.tls[c.slot]; ts != nil && ts.rec != nil {
		return ts.rec.Suite()
	}
	return 0
}
