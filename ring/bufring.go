package ring

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BufferRing is a provided buffer ring: count buffers of size bytes in one
// anonymous mapping, registered with the kernel under a group id. A
// multishot recv picks buffers only when data arrives, so idle connections
// hold no receive memory.
//
// The kernel takes buffers from the ring strictly in ring order, and the
// owner gives them back in the order completions reported them (Take, then
// GiveBack), so ring position p always holds buffer p mod count, and
// buffers that follow each other in the ring follow each other in memory.
// That is what makes recv bundles cheap: a recv that filled k buffers
// starting at id filled one run of k*size bytes (two runs when it wraps
// past the last buffer), handed out as it lies, with no gather and no copy.
type BufferRing struct {
	ring   *Ring
	ents   []bufEntry // the ring's entries, in memory giouring mapped
	mem    []byte
	size   int
	count  int
	group  uint16
	mask   int
	bundle uint32 // > 0: recvs bundle up to this many bytes (IORING_RECVSEND_BUNDLE)
	wide   uint32 // what a wide recv may bundle (Ring.Recv); >= bundle
	taken  uint32 // buffers the kernel filled, as completions reported them
	given  uint32 // buffers given back since the ring was filled
}

// NewBufferRing allocates, registers and fills a buffer ring. count must be
// a power of two no larger than 32768. bundle asks for recv bundles; they
// are used when the kernel has them (see Ring.Bundles).
func (r *Ring) NewBufferRing(group uint16, count, size int, bundle bool) (*BufferRing, error) {
	if count <= 0 || count > 1<<15 || count&(count-1) != 0 {
		return nil, fmt.Errorf("buffer ring: %d buffers: must be a power of two between 1 and 32768", count)
	}
	if size <= 0 {
		return nil, fmt.Errorf("buffer ring: buffer size %d must be positive", size)
	}
	mem, err := unix.Mmap(-1, 0, count*size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("buffer ring: mmap %d bytes: %w", count*size, err)
	}
	br, err := r.r.SetupBufRing(uint32(count), int(group), 0)
	if err != nil {
		unix.Munmap(mem)
		return nil, fmt.Errorf("buffer ring: register: %w", err)
	}
	b := &BufferRing{ring: r, mem: mem, size: size, count: count, group: group, mask: count - 1}
	b.ents = unsafe.Slice((*bufEntry)(unsafe.Pointer(br)), count)
	if bundle && r.Bundles() {
		b.bundle = uint32(bundleBytes(count, size))
		b.wide = uint32(wideBundleBytes(count, size))
	}
	for id := range count {
		b.add(uint16(id), id)
	}
	b.advance(count)
	return b, nil
}

// bufEntry is struct io_uring_buf, one entry of the ring. The first
// entry's last field is the ring's tail, which only the owner writes.
type bufEntry struct {
	addr uint64
	len  uint32
	bid  uint16
	tail uint16
}

var _ [16 - unsafe.Sizeof(bufEntry{})]struct{}

// bundleBytes bounds what one recv of a bundle may take: 64 KiB (or one
// buffer, when buffers are larger), and never more than a quarter of the
// ring, so that one busy connection cannot take every buffer at once.
func bundleBytes(count, size int) int {
	return max(size, min(64<<10, count*size/4))
}

// wideBundleBytes bounds what one recv of a wide bundle may take: a
// quarter of the ring (1 MiB by default; at least one buffer).
//
// The bound is also the kernel's cue to stop reading the socket until the
// next wait (recent kernels treat a multishot recv's length as its cap per
// wake-up), so at 64 KiB a single stream drains 64 KiB per wait. With bbr
// on loopback its sender then falls into TCP pacing, and a flood of 64 KiB
// frames costs 1.5-2x the CPU per frame (bench/RESULTS.md, "Flood and TCP
// pacing"). The wide bound lets a stream drain as a C relay reading 32 x
// 32 KiB per wait does, at the price of more read-ahead per paused sender:
// the reactor asks for it only while it has few connections.
func wideBundleBytes(count, size int) int {
	return max(size, count*size/4)
}

// Bundling reports whether recvs on this ring take several buffers at once.
func (b *BufferRing) Bundling() bool { return b.bundle > 0 }

// add puts buffer id at offset off past the ring's tail, unpublished.
// (giouring's BufRingAdd computes the entry's byte offset in 16 bits, so
// it writes every entry from the 4096th on over the first ones.)
func (b *BufferRing) add(id uint16, off int) {
	e := &b.ents[(int(b.ents[0].tail)+off)&b.mask]
	e.addr = uint64(uintptr(unsafe.Pointer(&b.mem[int(id)*b.size])))
	e.len = uint32(b.size)
	e.bid = id
}

// advance publishes k added entries: one release store of the tail. The
// tail shares a 32-bit word with the first entry's id, which is stored
// back unchanged.
func (b *BufferRing) advance(k int) {
	e := &b.ents[0]
	word := uint32(e.bid) | uint32(e.tail+uint16(k))<<16
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&e.bid)), word)
}

// Take accounts for a completion that reported buffer id holding n bytes
// (n >= 0; a bundle spans the buffers after id as well) and returns those
// bytes: one slice, and a second one when they wrap from the last buffer to
// the first. The bytes stay valid until GiveBack. Every completion that
// carries a buffer must be taken, in the order completions arrive, even
// when its bytes are not wanted.
func (b *BufferRing) Take(id uint16, n int) (first, second []byte, err error) {
	if want := uint16(b.taken & uint32(b.mask)); id != want {
		return nil, nil, fmt.Errorf("buffer ring out of step: a completion holds buffer %d, the ring's next is %d", id, want)
	}
	k := 1
	if n > b.size {
		if b.bundle == 0 {
			return nil, nil, fmt.Errorf("buffer ring: %d bytes in one %d-byte buffer", n, b.size)
		}
		k = (n + b.size - 1) / b.size
	}
	b.taken += uint32(k)
	if int(b.taken-b.given) > b.count {
		return nil, nil, fmt.Errorf("buffer ring: completions hold %d buffers of %d", b.taken-b.given, b.count)
	}
	off := int(id) * b.size
	if end := off + n; end > len(b.mem) {
		return b.mem[off:], b.mem[:end-len(b.mem)], nil
	}
	return b.mem[off : off+n], nil, nil
}

// GiveBack returns every buffer taken so far to the kernel, in one store.
func (b *BufferRing) GiveBack() {
	k := int(b.taken - b.given)
	if k == 0 {
		return
	}
	for i := range k {
		b.add(uint16((b.given+uint32(i))&uint32(b.mask)), i)
	}
	b.given = b.taken
	b.advance(k)
}

// Close unregisters the ring and releases its memory. The ring's owner
// must make sure no receive still uses it.
func (b *BufferRing) Close() {
	_ = b.ring.r.FreeBufRing(int(b.group))
	// giouring maps the ring entries itself and never unmaps them.
	_, _, _ = unix.Syscall(unix.SYS_MUNMAP, uintptr(unsafe.Pointer(&b.ents[0])), uintptr(b.count)*unsafe.Sizeof(bufEntry{}), 0)
	_ = unix.Munmap(b.mem)
}
