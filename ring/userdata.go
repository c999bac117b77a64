package ring

// UserData is the 64-bit tag carried by every submission and returned in
// its completion. Layout: op (8 bits) | generation (24 bits) | slot (32 bits).
// It never holds a Go pointer, so a completion can never reach freed memory:
// the owner looks the slot up and compares generations.
type UserData uint64

// GenBits is how many bits of a generation survive the round trip.
const GenBits = 24

const genMask = 1<<GenBits - 1

// Pack builds a UserData. gen is truncated to GenBits bits.
func Pack(op uint8, slot int32, gen uint32) UserData {
	return UserData(uint64(op)<<56 | uint64(gen&genMask)<<32 | uint64(uint32(slot)))
}

// Op returns the operation code the owner packed.
func (u UserData) Op() uint8 { return uint8(u >> 56) }

// Slot returns the connection slot.
func (u UserData) Slot() int32 { return int32(uint32(u)) }

// Gen returns the generation (GenBits bits).
func (u UserData) Gen() uint32 { return uint32(u>>32) & genMask }
