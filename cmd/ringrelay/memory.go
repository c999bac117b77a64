package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ringrelay/ringrelay/internal/bytesize"
)

// The default of -max-memory: a quarter of what the process may use, so
// that a default install cannot be taken past its memory by client
// buffers. Not half: buffers live in the Go heap, and with GOGC=100 the
// heap may grow to twice what is live before a collection, so a budget of
// a quarter can cost up to half at its peak, leaving the other half for
// the fixed pools, the runtime and everything else on the host (the
// kernel's socket buffers are not in the process's memory at all). What
// the process may use is its cgroup's memory limit (v2 memory.max, else
// v1 memory.limit_in_bytes) when one is set, else physical memory.

// memoryAvailable returns what the process may use and where that came
// from, for -h.
func memoryAvailable() (bytes int64, source string) {
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 { // "max", or v1's "no limit" (near 2^63)
			continue
		}
		if phys := physicalMemory(); phys > 0 && n >= phys {
			break // a cgroup limit above the machine's memory limits nothing
		}
		return n, "the cgroup memory limit"
	}
	if phys := physicalMemory(); phys > 0 {
		return phys, "physical memory"
	}
	return 0, ""
}

func physicalMemory() int64 {
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit)
}

// defaultMaxMemory is -max-memory's default and its explanation for -h.
func defaultMaxMemory() (int64, string) {
	avail, source := memoryAvailable()
	if avail == 0 {
		return 0, "off here: neither a cgroup limit nor physical memory could be read"
	}
	// Whole MiB, so that -h shows it plainly.
	return avail / 4 &^ (1<<20 - 1), fmt.Sprintf("here a quarter of %s, %.1f GiB", source, float64(avail)/(1<<30))
}

// memFlag is -max-memory: a size, or 0 (off), or auto (the default).
type memFlag struct{ p *int64 }

func (m memFlag) String() string {
	if m.p == nil {
		return ""
	}
	if *m.p == 0 {
		return "0"
	}
	return bytesize.Format(*m.p)
}

func (m memFlag) Set(v string) error {
	if v == "auto" {
		*m.p, _ = defaultMaxMemory()
		return nil
	}
	n, err := bytesize.Parse(v)
	if err != nil {
		return err
	}
	*m.p = n
	return nil
}
