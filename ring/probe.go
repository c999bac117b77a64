package ring

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/pawelgaczynski/giouring"
	"golang.org/x/sys/unix"
)

// Report is what the probe found out about io_uring on this host.
type Report struct {
	Kernel   string // uname release, e.g. "6.8.0-45-generic"
	Major    int
	Minor    int
	Disabled int   // kernel.io_uring_disabled (0, 1 or 2; -1 when the sysctl is absent)
	SetupErr error // why io_uring_setup failed, nil when it worked

	// Features the uring backend uses or could use.
	SingleIssuer    bool // IORING_SETUP_SINGLE_ISSUER (6.0)
	DeferTaskrun    bool // IORING_SETUP_DEFER_TASKRUN (6.1)
	MultishotAccept bool // IORING_ACCEPT_MULTISHOT (5.19)
	MultishotRecv   bool // IORING_RECV_MULTISHOT (6.0)
	BufferRing      bool // IORING_REGISTER_PBUF_RING (5.19)
	RecvBundle      bool // IORING_FEAT_RECVSEND_BUNDLE (6.10), used from 6.15 (see Ring.Bundles)
	SendZC          bool // IORING_OP_SEND_ZC (6.0)
	MsgRing         bool // IORING_OP_MSG_RING (5.18)
	OpsMissing      []string
}

// Reason classifies why io_uring cannot be used.
type Reason int

const (
	// Blocked: io_uring_setup returned EPERM: a seccomp filter (Docker 25+,
	// containerd 2.0 default profiles) or kernel.io_uring_disabled.
	Blocked Reason = iota + 1
	// Disabled: kernel.io_uring_disabled is 2.
	Disabled
	// NotImplemented: io_uring_setup returned ENOSYS: the kernel was built
	// without io_uring, or a filter pretends so.
	NotImplemented
	// Rejected: io_uring_setup returned EINVAL or another error.
	Rejected
	// TooOld: the kernel predates a feature the backend needs.
	TooOld
	// MissingFeature: an opcode or registration the backend needs failed.
	MissingFeature
)

// UnavailableError says why the io_uring backend cannot run here, and what
// to do about it.
type UnavailableError struct {
	Reason Reason
	Detail string // what failed, e.g. "io_uring_setup: operation not permitted"
	Err    error  // the underlying errno, when there is one
}

func (e *UnavailableError) Error() string {
	var why string
	switch e.Reason {
	case Blocked:
		why = "blocked by a seccomp filter or kernel.io_uring_disabled"
	case Disabled:
		why = "kernel.io_uring_disabled=2 turns io_uring off host-wide"
	case NotImplemented:
		why = "this kernel has no io_uring, or a filter hides it"
	case Rejected:
		why = "the kernel refused the ring"
	case TooOld:
		why = "the uring backend needs Linux 6.0+ (multishot recv with buffer rings)"
	case MissingFeature:
		why = "a feature the uring backend needs is missing"
	}
	return fmt.Sprintf("%s (%s)", e.Detail, why)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// Usable reports whether the uring backend can run on the probed host: nil,
// or an *UnavailableError naming the first obstacle.
func (r *Report) Usable() error {
	if r.Disabled == 2 {
		return &UnavailableError{Reason: Disabled, Detail: "kernel.io_uring_disabled = 2", Err: r.SetupErr}
	}
	if r.SetupErr != nil {
		var errno syscall.Errno
		errors.As(r.SetupErr, &errno)
		switch errno {
		case syscall.EPERM, syscall.EACCES:
			return &UnavailableError{Reason: Blocked, Detail: "io_uring_setup: " + errno.Error(), Err: errno}
		case syscall.ENOSYS:
			return &UnavailableError{Reason: NotImplemented, Detail: "io_uring_setup: " + errno.Error(), Err: errno}
		}
		return &UnavailableError{Reason: Rejected, Detail: r.SetupErr.Error(), Err: r.SetupErr}
	}
	if r.Major < 6 {
		return &UnavailableError{Reason: TooOld, Detail: "kernel " + r.Kernel}
	}
	if len(r.OpsMissing) > 0 {
		return &UnavailableError{Reason: MissingFeature, Detail: "opcodes not supported: " + strings.Join(r.OpsMissing, ", ")}
	}
	if !r.BufferRing {
		return &UnavailableError{Reason: MissingFeature, Detail: "provided buffer rings (IORING_REGISTER_PBUF_RING) not supported"}
	}
	return nil
}

// Probe sets up a small ring and asks the kernel what it supports. It
// never fails: everything it learns, including why setup failed, is in the
// report.
func Probe() *Report {
	rep := &Report{Disabled: readDisabled()}
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		rep.Kernel = unix.ByteSliceToString(uts.Release[:])
		rep.Major, rep.Minor = parseRelease(rep.Kernel)
	}

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r, err := New(8)
	if err != nil {
		rep.SetupErr = errors.Unwrap(err)
		if rep.SetupErr == nil {
			rep.SetupErr = err
		}
		return rep
	}
	defer r.Close()
	rep.SingleIssuer = strings.Contains(r.mode, "single-issuer")
	rep.DeferTaskrun = strings.Contains(r.mode, "defer-taskrun")
	rep.RecvBundle = r.Bundles()

	p, err := r.r.GetProbeRing()
	if err != nil {
		rep.OpsMissing = append(rep.OpsMissing, "IORING_REGISTER_PROBE")
		return rep
	}
	need := []struct {
		op   uint8
		name string
	}{
		{giouring.OpAccept, "ACCEPT"},
		{giouring.OpRecv, "RECV"},
		{giouring.OpSend, "SEND"},
		{giouring.OpRead, "READ"},
		{giouring.OpClose, "CLOSE"},
		{giouring.OpAsyncCancel, "ASYNC_CANCEL"},
	}
	for _, n := range need {
		if !p.IsSupported(n.op) {
			rep.OpsMissing = append(rep.OpsMissing, n.name)
		}
	}
	rep.SendZC = p.IsSupported(giouring.OpSendZC)
	rep.MsgRing = p.IsSupported(giouring.OpMsgRing)
	// Multishot accept and recv have no probe bit; they came with 5.19 and
	// 6.0, and a kernel that registers a buffer ring has at least the first.
	atLeast := func(maj, min int) bool { return rep.Major > maj || rep.Major == maj && rep.Minor >= min }
	rep.MultishotAccept = atLeast(5, 19)
	rep.MultishotRecv = atLeast(6, 0)
	if br, err := r.NewBufferRing(0, 1, 64, false); err == nil {
		rep.BufferRing = true
		br.Close()
	}
	return rep
}

func readDisabled() int {
	b, err := os.ReadFile("/proc/sys/kernel/io_uring_disabled")
	if err != nil {
		return -1
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return v
}

// parseRelease extracts major and minor from a uname release string.
func parseRelease(s string) (int, int) {
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 2 {
		return 0, 0
	}
	major, _ := strconv.Atoi(parts[0])
	minorDigits := parts[1]
	for i, ch := range minorDigits {
		if ch < '0' || ch > '9' {
			minorDigits = minorDigits[:i]
			break
		}
	}
	minor, _ := strconv.Atoi(minorDigits)
	return major, minor
}
