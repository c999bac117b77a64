package servertest

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// RaiseFileLimit lifts this process's RLIMIT_NOFILE soft limit to its hard
// limit and returns the new soft limit. It goes through package syscall on
// purpose: that is how the Go runtime learns not to hand the original, lower
// limit to child processes.
func RaiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit NOFILE: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("setrlimit NOFILE to %d: %w", lim.Max, err)
		}
	}
	return lim.Cur, nil
}

// raiseChildFileLimit lifts the RLIMIT_NOFILE soft limit of process pid to
// its hard limit.
func raiseChildFileLimit(pid int) (uint64, error) {
	var lim unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
		return 0, fmt.Errorf("prlimit NOFILE of %d: %w", pid, err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
			return 0, fmt.Errorf("prlimit NOFILE of %d to %d: %w", pid, lim.Max, err)
		}
	}
	return lim.Cur, nil
}
