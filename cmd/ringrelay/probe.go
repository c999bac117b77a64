package main

import (
	"fmt"
	"io"

	"github.com/ringrelay/ringrelay/ring"
)

// printProbe writes what io_uring offers on this host, feature by feature,
// and which backend -backend=auto would pick.
func printProbe(w io.Writer) {
	rep := ring.Probe()
	yes := func(b bool) string {
		if b {
			return "available"
		}
		return "not available"
	}
	fmt.Fprintf(w, "kernel:                %s\n", rep.Kernel)
	switch rep.Disabled {
	case -1:
		fmt.Fprintf(w, "io_uring_disabled:     (sysctl absent)\n")
	default:
		fmt.Fprintf(w, "io_uring_disabled:     %d\n", rep.Disabled)
	}
	if rep.SetupErr != nil {
		fmt.Fprintf(w, "io_uring setup:        failed: %v\n", rep.SetupErr)
	} else {
		fmt.Fprintf(w, "io_uring setup:        ok\n")
		fmt.Fprintf(w, "  multishot accept:    %s\n", yes(rep.MultishotAccept))
		fmt.Fprintf(w, "  multishot recv:      %s\n", yes(rep.MultishotRecv))
		fmt.Fprintf(w, "  buffer rings:        %s\n", yes(rep.BufferRing))
		if rep.RecvBundle {
			fmt.Fprintf(w, "  recv bundles:        available\n")
		} else {
			fmt.Fprintf(w, "  recv bundles:        not used (needs Linux 6.15: earlier releases may reorder them)\n")
		}
		fmt.Fprintf(w, "  SINGLE_ISSUER:       %s\n", yes(rep.SingleIssuer))
		fmt.Fprintf(w, "  DEFER_TASKRUN:       %s\n", yes(rep.DeferTaskrun))
		fmt.Fprintf(w, "  send_zc:             %s (not used)\n", yes(rep.SendZC))
		if rep.MsgRing {
			fmt.Fprintf(w, "  MSG_RING:            yes (doorbell between io_uring loops; eventfd otherwise)\n")
		} else {
			fmt.Fprintf(w, "  MSG_RING:            no (doorbells use the eventfd)\n")
		}
	}
	if err := rep.Usable(); err != nil {
		fmt.Fprintf(w, "auto would pick:       epoll, because %v\n", err)
		return
	}
	fmt.Fprintf(w, "auto would pick:       uring\n")
}
