package relay

import "iter"

// peerPage is how many peer records one page of the table holds.
const peerPage = 128

// peers is the table of peer records, indexed by reactor slot. It grows in
// fixed pages rather than as one slice: a slice that doubles copies every
// record on each growth and leaves the old arrays behind as garbage, which
// with ten thousand connections opening at once is several times the
// records' own size in resident memory until the collector and the
// scavenger catch up. Pages never move, so a *peer stays valid while the
// table grows.
type peers struct {
	pages []*[peerPage]peer
}

// at returns the record of slot, which must have been grown to.
func (t *peers) at(slot int) *peer {
	return &t.pages[slot/peerPage][slot%peerPage]
}

// grow makes room for slot and returns its record.
func (t *peers) grow(slot int) *peer {
	for slot/peerPage >= len(t.pages) {
		t.pages = append(t.pages, new([peerPage]peer))
	}
	return t.at(slot)
}

// all yields every record, open or not, in slot order.
func (t *peers) all() iter.Seq[*peer] {
	return func(yield func(*peer) bool) {
		for _, pg := range t.pages {
			for i := range pg {
				if !yield(&pg[i]) {
					return
				}
			}
		}
	}
}
