package ring

import "github.com/pawelgaczynski/giouring"

// MsgRing queues an IORING_OP_MSG_RING data message (IORING_MSG_DATA) for
// the ring whose descriptor is target: when this ring's queue next reaches
// the kernel, target gets a completion whose user_data is data and whose
// res is res, with no system call of its own. The entry carries
// IOSQE_CQE_SKIP_SUCCESS, so this ring sees a completion (tagged ud) only
// when the message could not be posted (target is not a ring, or it is
// going away).
//
// It uses giouring's plain PrepareMsgRing, which leaves the command field
// (addr) zero, that is IORING_MSG_DATA. PrepareMsgRingFd is not used: it
// stores a pointer where the kernel expects the command number.
//
// A target set up with DEFER_TASKRUN gets the completion through its
// submitter thread's task work, so it is seen once that ring waits with a
// wait count of at least one, or enters the kernel to get events.
func (r *Ring) MsgRing(target int, res uint32, data, ud UserData) error {
	e, err := r.sqe()
	if err != nil {
		return err
	}
	e.PrepareMsgRing(target, res, uint64(data), 0)
	e.Flags |= giouring.SqeCQESkipSuccess
	e.UserData = uint64(ud)
	return nil
}
