package bench

import (
	"context"
	"sync"
)

// stream is N senders sending to one receiver as fast as the server lets
// them: the flood workload with one sender, the fanin workload with many.
// The receiver checks every sender's frames for integrity and order, and
// its count is what the point reports.
type stream struct {
	senders int
	codec   *Codec
	label   string

	peers []*peer // the senders, then the receiver last
	wg    sync.WaitGroup
}

func (w *stream) open(ctx context.Context, d *dialer) error {
	peers, err := d.dialMany(ctx, w.senders+1)
	w.peers = peers
	return err
}

func (w *stream) conns() int { return len(w.peers) }

func (w *stream) start(m *meter) {
	recv := w.peers[w.senders]
	w.wg.Go(func() { drain(m, recv, w.codec, NewOrder(0, w.senders), w.label+" receiver") })
	for _, s := range w.peers[:w.senders] {
		w.wg.Go(func() { blast(m, s, recv.id, w.codec, w.label+" sender") })
	}
}

func (w *stream) finish(*meter) {
	closeAll(w.peers)
	w.wg.Wait()
}
