package shard

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// AutoLoops is what ParseLoops returns for "auto".
const AutoLoops = 0

// ParseLoops reads the -loops flag: "auto" (one loop per CPU the process
// may run on) or a whole number of loops, at least 1.
func ParseLoops(s string) (int, error) {
	if strings.TrimSpace(s) == "auto" {
		return AutoLoops, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("-loops %q: want auto or a number of loops, at least 1", s)
	}
	if n > maxCPUs {
		return 0, fmt.Errorf("-loops %q: more than %d loops", s, maxCPUs)
	}
	return n, nil
}

// maxCPUs bounds CPU numbers and loop counts: the kernel's CPUSet holds
// 1024 CPUs.
const maxCPUs = 1024

// ParseCPUs reads a CPU list as taskset and /sys write them: numbers and
// ranges separated by commas, "0-3,8,10-11". Order is kept (loop k goes to
// the k-th CPU listed); a CPU listed twice is an error.
func ParseCPUs(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("CPU list %q: empty list", s)
	}
	var cpus []int
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, err := parseCPURange(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("CPU list %q: %w", s, err)
		}
		for c := lo; c <= hi; c++ {
			if slices.Contains(cpus, c) {
				return nil, fmt.Errorf("CPU list %q: CPU %d listed twice", s, c)
			}
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

func parseCPURange(part string) (lo, hi int, err error) {
	if part == "" {
		return 0, 0, fmt.Errorf("empty item (two commas, or a comma at an end)")
	}
	a, b, isRange := strings.Cut(part, "-")
	if lo, err = parseCPU(a); err != nil {
		return 0, 0, fmt.Errorf("%q: %w", part, err)
	}
	if !isRange {
		return lo, lo, nil
	}
	if hi, err = parseCPU(b); err != nil {
		return 0, 0, fmt.Errorf("%q: %w", part, err)
	}
	if hi < lo {
		return 0, 0, fmt.Errorf("%q: range runs backwards", part)
	}
	return lo, hi, nil
}

func parseCPU(s string) (int, error) {
	s = strings.TrimSpace(s)
	c, err := strconv.Atoi(s)
	if err != nil || c < 0 || s[0] == '+' {
		return 0, fmt.Errorf("%q is not a CPU number", s)
	}
	if c >= maxCPUs {
		return 0, fmt.Errorf("CPU %d is beyond %d", c, maxCPUs-1)
	}
	return c, nil
}

// AllowedCPUs lists the CPUs the calling thread may run on (its affinity
// mask; `taskset -c 0 ringrelay` leaves one), in increasing order. Called
// before any thread is pinned, that is the process's mask.
func AllowedCPUs() ([]int, error) { return Affinity(0) }

// Affinity lists the CPUs thread or process pid may run on (0: the
// calling thread), in increasing order.
func Affinity(pid int) ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(pid, &set); err != nil {
		return nil, fmt.Errorf("sched_getaffinity %d: %w", pid, err)
	}
	var cpus []int
	for c := range maxCPUs {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// Layout turns the -loops and -cpus flags into a loop count and, when
// pinning was asked for, the CPU of each loop (pins[k] for loop k; nil
// means no pinning). cpus may be empty (not given).
//
//   - auto without -cpus: one loop per allowed CPU, unpinned.
//   - auto with -cpus: one loop per listed CPU.
//   - N with -cpus: loop k on the (k mod len)-th listed CPU, so
//     "-loops 2 -cpus 0" puts both loops on CPU 0.
//
// Every listed CPU must be in the process's affinity mask (allowed, as
// returned by AllowedCPUs), or pinning would fail later, on a loop thread.
func Layout(loops, cpus string, allowed []int) (n int, pins []int, err error) {
	n, err = ParseLoops(loops)
	if err != nil {
		return 0, nil, err
	}
	if strings.TrimSpace(cpus) == "" {
		if n == AutoLoops {
			n = max(len(allowed), 1)
		}
		return n, nil, nil
	}
	list, err := ParseCPUs(cpus)
	if err != nil {
		return 0, nil, fmt.Errorf("-cpus: %w", err)
	}
	for _, c := range list {
		if !slices.Contains(allowed, c) {
			return 0, nil, fmt.Errorf("-cpus %q: CPU %d is not one this process may run on (%s)", cpus, c, FormatCPUs(allowed))
		}
	}
	if n == AutoLoops {
		n = len(list)
	}
	pins = make([]int, n)
	for k := range pins {
		pins[k] = list[k%len(list)]
	}
	return n, pins, nil
}

// FormatCPUs writes a CPU list back in the form ParseCPUs reads, with runs
// folded into ranges: "0-3,8".
func FormatCPUs(cpus []int) string {
	var b strings.Builder
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(cpus[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(cpus[j]))
		}
		i = j + 1
	}
	return b.String()
}

// PinThread restricts the calling OS thread to one CPU. The caller must
// hold the thread (runtime.LockOSThread) for as long as the pin matters,
// and should let the goroutine end without UnlockOSThread, so the runtime
// retires the pinned thread instead of reusing it for other goroutines.
func PinThread(cpu int) error {
	if cpu < 0 || cpu >= maxCPUs {
		return fmt.Errorf("pin to CPU %d: no such CPU", cpu)
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin to CPU %d: sched_setaffinity: %w", cpu, err)
	}
	return nil
}
