package bench

import (
	"context"
	"sync"
)

// connect measures how fast the server takes new connections: parallel
// dialers each connect, wait for the ID (over TLS: after a full
// handshake) and close, again and again. Each connection that got its ID
// counts as one frame, so the point's frames/s are connections per
// second and its server CPU µs/frame the server's CPU per connection
// (per handshake, over TLS).
type connect struct {
	parallel int
	d        *dialer
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

func (w *connect) open(ctx context.Context, d *dialer) error {
	w.d = d
	w.ctx, w.cancel = context.WithCancel(ctx)
	return nil
}

func (w *connect) conns() int   { return w.parallel }
func (w *connect) threads() int { return 0 }

func (w *connect) start(m *meter) {
	for i := range w.parallel {
		w.wg.Go(func() {
			for n := i; w.ctx.Err() == nil; n += w.parallel {
				p, err := w.d.dial(w.ctx, n)
				if err != nil {
					if w.ctx.Err() == nil && !m.stopping.Load() {
						m.fail("connect: %v", err)
					}
					return
				}
				p.conn.Close()
				m.delivered(1, 0)
			}
		})
	}
}

func (w *connect) finish(*meter) {
	w.cancel()
	w.wg.Wait()
}
