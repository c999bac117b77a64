package servertest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports, and Go has no sysconf.
const clockTicks = 100

// CPUTime returns the user+system CPU time process pid has used, from
// /proc/<pid>/stat (resolution 1/clockTicks s).
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name in field 2 may hold spaces and parentheses; fields
	// after the last ')' are plain. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: only %d fields", pid, len(f)+2)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime %q %q", pid, f[11], f[12])
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// RSS returns the resident set size of process pid in bytes (VmRSS).
func RSS(pid int) (int64, error) {
	kb, err := statusField(pid, "VmRSS")
	return kb << 10, err
}

// Threads returns the number of OS threads of process pid.
func Threads(pid int) (int64, error) { return statusField(pid, "Threads") }

// statusField reads the number after "key:" in /proc/<pid>/status (the
// unit, such as "kB", is dropped).
func statusField(pid int, key string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			v, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: %s %q: %w", pid, key, rest, err)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s line", pid, key)
}

// FDCount returns how many descriptors process pid holds open (the
// entries of /proc/<pid>/fd, without reading where each one points).
func FDCount(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	return len(ents), nil
}

// FDs returns what each of process pid's descriptors refers to, by
// number: the link in /proc/PID/fd, such as a path, "socket:[123]" or
// "anon_inode:[io_uring]". A descriptor closed while it is read is left
// out, the one that read the directory among them: so FDs has one entry
// fewer than FDCount counts.
func FDs(pid int) (map[int]string, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	fds := make(map[int]string, len(ents))
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink(dir + "/" + e.Name()); err == nil {
			fds[n] = target
		}
	}
	return fds, nil
}

// NewFDs describes the descriptors in after that are not in before, or
// refer to something else now: "fd 12 socket:[4711]", one per line.
func NewFDs(before, after map[int]string) string {
	var b strings.Builder
	for _, n := range slices.Sorted(maps.Keys(after)) {
		if before[n] != after[n] {
			fmt.Fprintf(&b, "fd %d %s\n", n, after[n])
		}
	}
	return b.String()
}

// TCPQueues returns, for the IPv4 TCP socket from local to remote (both
// "ip:port"), the bytes in its send queue that the peer has not
// acknowledged (written but not yet taken by the peer's kernel) and the
// bytes in its receive queue that its owner has not read, from
// /proc/net/tcp of this network namespace.
func TCPQueues(local, remote string) (tx, rx int, err error) {
	l, err1 := procTCPAddr(local)
	r, err2 := procTCPAddr(remote)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, err
	}
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.Lines(string(b)) {
		// sl local_address rem_address st tx_queue:rx_queue ...
		f := strings.Fields(line)
		if len(f) < 5 || f[1] != l || f[2] != r {
			continue
		}
		txs, rxs, _ := strings.Cut(f[4], ":")
		t, err1 := strconv.ParseInt(txs, 16, 64)
		x, err2 := strconv.ParseInt(rxs, 16, 64)
		if err := errors.Join(err1, err2); err != nil {
			return 0, 0, fmt.Errorf("/proc/net/tcp: queues %q: %w", f[4], err)
		}
		return int(t), int(x), nil
	}
	return 0, 0, fmt.Errorf("/proc/net/tcp: no socket from %s to %s", local, remote)
}

// procTCPAddr writes an IPv4 "ip:port" as /proc/net/tcp does: the address
// as the kernel holds it (network order) printed as a host-order word, then
// the port, both in hex.
func procTCPAddr(hostport string) (string, error) {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil || !ap.Addr().Is4() {
		return "", fmt.Errorf("%q is not an IPv4 address and port", hostport)
	}
	ip := ap.Addr().As4()
	return fmt.Sprintf("%08X:%04X", binary.NativeEndian.Uint32(ip[:]), ap.Port()), nil
}

// SelfCPU returns the user+system CPU time this process has used, all
// threads together.
func SelfCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
