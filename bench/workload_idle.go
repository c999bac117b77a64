package bench

import (
	"context"
	"time"
)

// idle opens many connections and holds them without traffic, so the
// server's memory per connection can be read off its RSS. At the end each
// connection sends one frame to itself and must get it back: that proves the
// server kept every connection open and registered for the whole window.
type idle struct {
	count int
	peers []*peer
}

func (w *idle) open(ctx context.Context, d *dialer) error {
	peers, err := d.dialMany(ctx, w.count)
	w.peers = peers
	return err
}

func (w *idle) conns() int   { return len(w.peers) }
func (w *idle) threads() int { return 0 }

func (w *idle) start(*meter) {}

func (w *idle) finish(m *meter) {
	defer closeAll(w.peers)
	codec, err := NewCodec(MinPayload)
	if err != nil {
		m.fail("idle: %v", err)
		return
	}
	// Send all the probes first: each is tiny, so no write blocks, and the
	// server answers them all while we start reading.
	var out []byte
	for _, p := range w.peers {
		out = appendFrame(out[:0], p.id, codec, p.index, 0)
		if err := p.write(out); err != nil {
			m.fail("idle connection %d: probe write: %v", p.index, err)
			return
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	echo := make([]byte, codec.Size()+1)
	for _, p := range w.peers {
		_ = p.conn.SetReadDeadline(deadline)
		if err := p.readFull(echo); err != nil {
			m.fail("idle connection %d: probe not echoed (did the server close it?): %v", p.index, err)
			return
		}
		sender, _, err := codec.Decode(echo[:codec.Size()])
		if err == nil && (echo[codec.Size()] != 0 || sender != p.index) {
			err = ErrSender
		}
		if err != nil {
			m.fail("idle connection %d: probe came back wrong: %v", p.index, err)
			return
		}
	}
}
