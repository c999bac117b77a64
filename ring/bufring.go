package ring

import (
	"fmt"
	"unsafe"

	"github.com/pawelgaczynski/giouring"
	"golang.org/x/sys/unix"
)

// BufferRing is a provided buffer ring: count buffers of size bytes in one
// anonymous mapping, registered with the kernel under a group id. A
// multishot recv picks a buffer only when data arrives, so idle connections
// hold no receive memory. The owner returns each buffer with Recycle once
// its bytes are consumed, and makes returns visible with Publish.
type BufferRing struct {
	ring    *Ring
	br      *giouring.BufAndRing
	mem     []byte
	size    int
	count   int
	group   uint16
	mask    int
	pending int // recycled since the last Publish
}

// NewBufferRing allocates, registers and fills a buffer ring. count must be
// a power of two no larger than 32768.
func (r *Ring) NewBufferRing(group uint16, count, size int) (*BufferRing, error) {
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
	b := &BufferRing{ring: r, br: br, mem: mem, size: size, count: count, group: group, mask: giouring.BufRingMask(uint32(count))}
	for id := 0; id < count; id++ {
		b.Recycle(uint16(id))
	}
	b.Publish()
	return b, nil
}

// Bytes returns the first n bytes of buffer id.
func (b *BufferRing) Bytes(id uint16, n int) []byte {
	off := int(id) * b.size
	return b.mem[off : off+n : off+b.size]
}

// Recycle gives buffer id back to the kernel (visible after Publish).
func (b *BufferRing) Recycle(id uint16) {
	addr := uintptr(unsafe.Pointer(&b.mem[int(id)*b.size]))
	b.br.BufRingAdd(addr, uint32(b.size), id, b.mask, b.pending)
	b.pending++
}

// Publish makes every buffer recycled since the last call available to the
// kernel in one store.
func (b *BufferRing) Publish() {
	if b.pending > 0 {
		b.br.BufRingAdvance(b.pending)
		b.pending = 0
	}
}

// Close unregisters the ring and releases its memory. The ring's owner
// must make sure no receive still uses it.
func (b *BufferRing) Close() {
	_ = b.ring.r.FreeBufRing(int(b.group))
	// giouring maps the ring entries itself and never unmaps them.
	_, _, _ = unix.Syscall(unix.SYS_MUNMAP, uintptr(unsafe.Pointer(b.br)), uintptr(b.count)*unsafe.Sizeof(giouring.BufAndRing{}), 0)
	_ = unix.Munmap(b.mem)
}
