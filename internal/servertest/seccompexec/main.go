// Command seccompexec runs a program under a seccomp filter that makes the
// io_uring system calls fail with EPERM, the way Docker's and containerd's
// default profiles do. Tests use it to prove ringrelay's fallback:
//
//	seccompexec /path/to/ringrelay -backend=auto ...
package main

import (
	"fmt"
	"os"
	"syscall"

	seccomp "github.com/elastic/go-seccomp-bpf"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: seccompexec PROGRAM [ARGS...]")
		os.Exit(2)
	}
	filter := seccomp.Filter{
		NoNewPrivs: true,
		Flag:       seccomp.FilterFlagTSync,
		Policy: seccomp.Policy{
			DefaultAction: seccomp.ActionAllow,
			Syscalls: []seccomp.SyscallGroup{{
				Action: seccomp.ActionErrno, // EPERM
				Names:  []string{"io_uring_setup", "io_uring_enter", "io_uring_register"},
			}},
		},
	}
	if err := seccomp.LoadFilter(filter); err != nil {
		fmt.Fprintf(os.Stderr, "seccompexec: load filter: %v\n", err)
		os.Exit(1)
	}
	// The filter survives exec, so the program starts already confined.
	err := syscall.Exec(os.Args[1], os.Args[1:], os.Environ())
	fmt.Fprintf(os.Stderr, "seccompexec: exec %s: %v\n", os.Args[1], err)
	os.Exit(1)
}
