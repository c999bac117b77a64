package ring

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
)

func usableReport() Report {
	return Report{Kernel: "6.8.0", Major: 6, Minor: 8, MultishotAccept: true, MultishotRecv: true, BufferRing: true}
}

func TestUsableDecision(t *testing.T) {
	cases := []struct {
		name   string
		edit   func(*Report)
		reason Reason // 0: usable
		text   string
	}{
		{"usable", func(*Report) {}, 0, ""},
		{"seccomp EPERM", func(r *Report) { r.SetupErr = syscall.EPERM }, Blocked, "operation not permitted"},
		{"wrapped EPERM", func(r *Report) { r.SetupErr = fmt.Errorf("io_uring_setup: %w", syscall.EPERM) }, Blocked, "seccomp"},
		{"sysctl disabled", func(r *Report) { r.Disabled = 2; r.SetupErr = syscall.EPERM }, Disabled, "io_uring_disabled"},
		{"sysctl group-only, allowed", func(r *Report) { r.Disabled = 1 }, 0, ""},
		{"no io_uring", func(r *Report) { r.SetupErr = syscall.ENOSYS }, NotImplemented, "function not implemented"},
		{"EINVAL", func(r *Report) { r.SetupErr = syscall.EINVAL }, Rejected, "invalid argument"},
		{"old kernel", func(r *Report) { r.Kernel, r.Major, r.Minor = "5.15.0", 5, 15 }, TooOld, "6.0"},
		{"missing opcode", func(r *Report) { r.OpsMissing = []string{"SEND"} }, MissingFeature, "SEND"},
		{"no buffer ring", func(r *Report) { r.BufferRing = false }, MissingFeature, "PBUF_RING"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := usableReport()
			c.edit(&r)
			err := r.Usable()
			if c.reason == 0 {
				if err != nil {
					t.Fatalf("Usable() = %v, want nil", err)
				}
				return
			}
			var ue *UnavailableError
			if !errors.As(err, &ue) {
				t.Fatalf("Usable() = %v, want *UnavailableError", err)
			}
			if ue.Reason != c.reason {
				t.Errorf("reason = %d, want %d (%v)", ue.Reason, c.reason, err)
			}
			if !strings.Contains(err.Error(), c.text) {
				t.Errorf("message %q does not mention %q", err.Error(), c.text)
			}
		})
	}
}

func TestParseRelease(t *testing.T) {
	cases := map[string][2]int{
		"6.18.44-fc-v782":   {6, 18},
		"5.15.0-91-generic": {5, 15},
		"6.1":               {6, 1},
		"6.0rc3":            {6, 0},
		"garbage":           {0, 0},
	}
	for in, want := range cases {
		if maj, min := parseRelease(in); maj != want[0] || min != want[1] {
			t.Errorf("parseRelease(%q) = %d.%d, want %d.%d", in, maj, min, want[0], want[1])
		}
	}
}

// Recv bundles are used from 6.15 only: earlier releases with them may
// complete a bundle's buffers out of order.
func TestBundlesSafeIn(t *testing.T) {
	for release, want := range map[string]bool{
		"6.18.44-fc-v669":   true,
		"6.15.0":            true,
		"7.0.1":             true,
		"6.14.8-300.fc42":   false,
		"6.12.30-generic":   false,
		"6.10.0":            false,
		"5.15.0-91-generic": false,
		"garbage":           false,
	} {
		if got := bundlesSafeIn(release); got != want {
			t.Errorf("bundlesSafeIn(%q) = %v, want %v", release, got, want)
		}
	}
}

// TestProbeThisHost checks the probe agrees with itself on the machine the
// tests run on: either io_uring works and the report says which features,
// or setup failed and the report carries the errno.
func TestProbeThisHost(t *testing.T) {
	rep := Probe()
	if rep.Kernel == "" || rep.Major == 0 {
		t.Fatalf("no kernel version in report: %+v", rep)
	}
	err := rep.Usable()
	if rep.SetupErr != nil {
		if err == nil {
			t.Fatalf("setup failed (%v) but Usable() = nil", rep.SetupErr)
		}
		return
	}
	if rep.Major >= 6 && err != nil {
		t.Fatalf("setup worked on %s but Usable() = %v", rep.Kernel, err)
	}
	if rep.Major > 6 || rep.Major == 6 && rep.Minor >= 1 {
		if !rep.SingleIssuer || !rep.DeferTaskrun {
			t.Errorf("kernel %s should offer SINGLE_ISSUER and DEFER_TASKRUN: %+v", rep.Kernel, rep)
		}
	}
}
