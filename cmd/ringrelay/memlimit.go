package main

import (
	"bufio"
	"bytes"
	"io/fs"
	"math"
	"os"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
)

// The Go runtime's soft memory limit (GOMEMLIMIT) makes the collector
// work harder as the heap nears it, instead of letting the heap grow to
// twice the live data first. A limit the user set is the runtime's own
// business: the server never changes it. When none is set and the
// process runs in a cgroup with a memory limit (a container, a systemd
// unit with MemoryMax=), the server sets the soft limit to 90% of it, so
// that the collector runs before the kernel's OOM killer does; the rest
// is left for what the runtime does not count (thread stacks, the
// io_uring buffer rings, the epoll read arenas).

// memoryLimit is what the server knows about the soft memory limit.
type memoryLimit struct {
	bytes  int64  // the runtime's limit now; math.MaxInt64: none
	source string // "GOMEMLIMIT", "cgroup" or "none"
	cgroup int64  // the cgroup's limit, when source is "cgroup"
}

// cgroupShare is the part of a cgroup's memory limit given to the Go heap.
const cgroupShare = 0.9

// applyMemoryLimit honours GOMEMLIMIT when it is set, and otherwise
// derives a limit from the cgroup's (root is "/" but for tests).
func applyMemoryLimit(root fs.FS) memoryLimit {
	if os.Getenv("GOMEMLIMIT") != "" {
		return memoryLimit{bytes: debug.SetMemoryLimit(-1), source: "GOMEMLIMIT"}
	}
	if c, ok := cgroupMemoryMax(root); ok {
		debug.SetMemoryLimit(int64(float64(c) * cgroupShare))
		return memoryLimit{bytes: debug.SetMemoryLimit(-1), source: "cgroup", cgroup: c}
	}
	return memoryLimit{bytes: debug.SetMemoryLimit(-1), source: "none"}
}

// cgroupMemoryMax reads this process's cgroup memory limit: memory.max
// under cgroup v2, memory.limit_in_bytes under v1. Inside a container
// the cgroup path /proc/self/cgroup names may not exist under the mount
// (a private cgroup namespace shows "/"), so the mount's root is tried
// after the path. No limit, or one too large to mean anything (v1 writes
// "unlimited" as a page-rounded 2^63), reports false.
func cgroupMemoryMax(root fs.FS) (int64, bool) {
	b, err := fs.ReadFile(root, "proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		f := strings.SplitN(sc.Text(), ":", 3)
		if len(f) != 3 {
			continue
		}
		var files []string
		switch {
		case f[0] == "0" && f[1] == "":
			files = []string{path.Join("sys/fs/cgroup", f[2], "memory.max"), "sys/fs/cgroup/memory.max"}
		case hasController(f[1], "memory"):
			files = []string{path.Join("sys/fs/cgroup/memory", f[2], "memory.limit_in_bytes"), "sys/fs/cgroup/memory/memory.limit_in_bytes"}
		default:
			continue
		}
		for _, name := range files {
			if n, ok := readLimit(root, name); ok {
				return n, true
			}
		}
	}
	return 0, false
}

func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// readLimit reads one limit file: a byte count, or "max" for none.
func readLimit(root fs.FS, name string) (int64, bool) {
	b, err := fs.ReadFile(root, strings.TrimPrefix(name, "/"))
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 || n >= math.MaxInt64/2 {
		return 0, false
	}
	return n, true
}
