package shard

// Doorbell wakes one loop from any goroutine. Ring must not block and must
// be safe to call concurrently; extra rings are harmless (the loop wakes,
// finds nothing, and sleeps again), lost ones are not.
type Doorbell interface {
	Ring()
}

// Ringer is how one loop wakes another: the source loop supplies it for
// its own Port. On io_uring it queues an IORING_OP_MSG_RING to loop dst's
// ring (with IOSQE_CQE_SKIP_SUCCESS), which goes to the kernel with the
// source's next submit; on epoll it is dst's eventfd. Ring is called on the
// source loop's goroutine only.
type Ringer interface {
	Ring(dst int)
}
