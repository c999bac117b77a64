package servertest

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

func cpuSet(cpus []int) *unix.CPUSet {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	return &set
}

// PinProcess moves every thread of process pid to cpus. Threads created
// later inherit the mask of the thread that creates them, so once all
// threads are moved the whole process stays there.
func PinProcess(pid int, cpus ...int) error {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return fmt.Errorf("list threads of %d: %w", pid, err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, cpuSet(cpus)); err != nil && err != unix.ESRCH {
			return fmt.Errorf("pin thread %d of %d to CPUs %v: %w", tid, pid, cpus, err)
		}
	}
	return nil
}

// PinSelf moves this process to cpus and sizes the Go scheduler to match,
// so that it does not time-slice more Ps than it has cores.
func PinSelf(cpus ...int) error {
	if err := PinProcess(os.Getpid(), cpus...); err != nil {
		return err
	}
	runtime.GOMAXPROCS(len(cpus))
	return nil
}

// startPinned starts cmd with its affinity already set to cpus, so not even
// the child's first threads run elsewhere. The child inherits the mask of
// the thread that forks it, and os/exec forks from the calling thread: we
// lock this goroutine to its thread, narrow that thread's mask for the
// duration of Start, and put it back. (The Go runtime never spawns new
// threads from a locked thread, so nothing else inherits the narrowed mask.)
func startPinned(cmd *exec.Cmd, cpus []int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return fmt.Errorf("sched_getaffinity: %w", err)
	}
	if err := unix.SchedSetaffinity(0, cpuSet(cpus)); err != nil {
		return fmt.Errorf("pin to CPUs %v: %w", cpus, err)
	}
	startErr := cmd.Start()
	if err := unix.SchedSetaffinity(0, &old); err != nil {
		// This thread must not go back to the pool with the child's mask.
		panic(fmt.Sprintf("restore CPU affinity after starting %s: %v", cmd.Path, err))
	}
	if startErr != nil {
		return startErr
	}
	// Belt and braces: should a runtime ever fork elsewhere, pin whatever
	// threads the child already has.
	return PinProcess(cmd.Process.Pid, cpus...)
}
