package ring

import "testing"

func TestUserDataRoundTrip(t *testing.T) {
	cases := []struct {
		op   uint8
		slot int32
		gen  uint32
	}{
		{0, 0, 0},
		{1, 1, 1},
		{255, -1, genMask},
		{7, 1<<31 - 1, 12345},
		{3, -2, 1 << 23},
	}
	for _, c := range cases {
		u := Pack(c.op, c.slot, c.gen)
		if u.Op() != c.op || u.Slot() != c.slot || u.Gen() != c.gen {
			t.Errorf("Pack(%d,%d,%d) = %#x -> op %d slot %d gen %d", c.op, c.slot, c.gen, uint64(u), u.Op(), u.Slot(), u.Gen())
		}
	}
	// Generations wider than GenBits wrap instead of spilling into the op.
	u := Pack(9, 5, 1<<GenBits|4)
	if u.Op() != 9 || u.Gen() != 4 || u.Slot() != 5 {
		t.Errorf("wide generation spilled: op %d gen %d slot %d", u.Op(), u.Gen(), u.Slot())
	}
}
