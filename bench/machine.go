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
}

// DescribeMachine reads the CPU model from /proc/cpuinfo and the kernel from
// uname. Anything it cannot read is left as "unknown".
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
	return m
}

func (m Machine) String() string {
	return fmt.Sprintf("%s, %d cores, %s, %s", m.CPUModel, m.Cores, m.Kernel, m.Go)
}
