package bench

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Machine describes where a benchmark ran.
type Machine struct {
	CPUModel string `json:"cpu_model"`
	Cores    int    `json:"cores"` // logical CPUs online
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
	// TCP is the kernel's default congestion control. It matters on
	// loopback: with bbr, TCP paces its own sends with high-resolution
	// timers, whose cost differs widely between machines (see README,
	// Troubleshooting).
	TCP string `json:"tcp_congestion,omitempty"`
}

// DescribeMachine reads the CPU model from /proc/cpuinfo, the kernel from
// uname and the TCP congestion control from /proc/sys. Anything it cannot
// read is left as "unknown" (the congestion control as empty).
func DescribeMachine() Machine {
	m := Machine{CPUModel: "unknown", Cores: runtime.NumCPU(), Kernel: "unknown", Go: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		cores := 0
		for sc.Scan() {
			key, val, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(key) {
			case "processor":
				cores++
			case "model name":
				if m.CPUModel == "unknown" {
					m.CPUModel = strings.TrimSpace(val)
				}
			}
		}
		if cores > 0 {
			m.Cores = cores
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = fmt.Sprintf("%s %s %s", unix.ByteSliceToString(u.Sysname[:]),
			unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Machine[:]))
	}
	if b, err := os.ReadFile(congestionControlFile); err == nil {
		m.TCP = strings.TrimSpace(string(b))
	}
	return m
}

// congestionControlFile holds the default TCP congestion control.
const congestionControlFile = "/proc/sys/net/ipv4/tcp_congestion_control"

func (m Machine) String() string {
	s := fmt.Sprintf("%s, %d cores, %s, %s", m.CPUModel, m.Cores, m.Kernel, m.Go)
	if m.TCP != "" {
		s += ", TCP " + m.TCP
	}
	return s
}
