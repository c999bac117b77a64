package bench

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// coreOf says which physical core a CPU belongs to; CPUs with the same
// value are hyperthreads of one core.
type coreOf func(cpu int) string

// SplitCPUs divides cpus between the server and the generator: the server
// gets the first half of the physical cores, the generator the rest, so
// that no server loop shares a core with a generator thread. The server's
// list comes one thread per core first, then the cores' second threads,
// so the first loops get cores of their own and hyperthreads are used
// last. With a single CPU the server gets it and the generator nothing.
func SplitCPUs(cpus []int, core coreOf) (server, gen []int) {
	if len(cpus) < 2 {
		return slices.Clone(cpus), nil
	}
	var cores [][]int // the CPUs of each core, cores in order of their first CPU
	index := map[string]int{}
	for _, c := range slices.Sorted(slices.Values(cpus)) {
		k := core(c)
		i, ok := index[k]
		if !ok {
			i = len(cores)
			index[k] = i
			cores = append(cores, nil)
		}
		cores[i] = append(cores[i], c)
	}
	if len(cores) == 1 { // one core with several threads: split the threads
		half := (len(cores[0]) + 1) / 2
		return cores[0][:half], cores[0][half:]
	}
	half := (len(cores) + 1) / 2
	for thread := 0; ; thread++ {
		more := false
		for _, threads := range cores[:half] {
			if thread < len(threads) {
				server = append(server, threads[thread])
				more = true
			}
		}
		if !more {
			break
		}
	}
	for _, threads := range cores[half:] {
		gen = append(gen, threads...)
	}
	return server, gen
}

// sysCore reads a CPU's package and core from sysfs. A CPU whose topology
// cannot be read counts as a core of its own.
func sysCore(cpu int) string {
	dir := filepath.Join("/sys/devices/system/cpu", "cpu"+strconv.Itoa(cpu), "topology")
	pkg, err1 := os.ReadFile(filepath.Join(dir, "physical_package_id"))
	core, err2 := os.ReadFile(filepath.Join(dir, "core_id"))
	if err1 != nil || err2 != nil {
		return "cpu" + strconv.Itoa(cpu)
	}
	return strings.TrimSpace(string(pkg)) + "/" + strings.TrimSpace(string(core))
}

// DefaultSplit splits the CPUs this process may use with SplitCPUs, by the
// machine's topology.
func DefaultSplit(allowed []int) (server, gen []int) { return SplitCPUs(allowed, sysCore) }

// ThreadsPerCore is the most hyperthreads any of cpus' cores has among
// cpus, by the machine's topology.
func ThreadsPerCore(cpus []int) int {
	count := map[string]int{}
	for _, c := range cpus {
		count[sysCore(c)]++
	}
	most := 0
	for _, n := range count {
		most = max(most, n)
	}
	return most
}
