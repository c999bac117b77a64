package bench

import (
	"context"
	"fmt"
	"runtime"
)

// traffic is one running instance of a workload: its connections and the
// workers that move frames over them.
type traffic interface {
	// open dials every connection and learns its ID; no frames flow yet.
	// On error it has closed whatever it opened.
	open(ctx context.Context, d *dialer) error
	// start sets the traffic going; it reports into m until finish.
	start(m *meter)
	// finish runs the workload's closing checks, then closes every
	// connection and waits for its workers. m.stopping is already set.
	finish(m *meter)
	// conns is the number of connections open.
	conns() int
	// threads is the number of threads moving traffic (0: none).
	threads() int
}

// newTraffic builds point p's workload. workers bounds the generator's
// threads (0: one per CPU the Go scheduler may use); when cpus is given,
// there is one worker per CPU listed, each pinned to its own.
func newTraffic(p Point, workers int, cpus []int) (traffic, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if len(cpus) > 0 {
		workers = len(cpus)
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var codec *Codec
	if p.Workload != "idle" && p.Workload != "connect" {
		var err error
		if codec, err = NewCodec(p.Size); err != nil {
			return nil, err
		}
	}
	et := engineTraffic{cpus: cpus}
	switch p.Workload {
	case "pingpong":
		return &pingpong{pairs: p.Pairs, window: p.Window, codec: codec, workers: min(workers, p.Pairs),
			pairing: pairUp(p.Pairs, p.Pairing, p.Seed), engineTraffic: et}, nil
	case "flood":
		return &stream{groups: floodGroups(pairUp(p.Pairs, p.Pairing, p.Seed)), codec: codec, label: "flood",
			workers: min(workers, 2*p.Pairs), engineTraffic: et}, nil
	case "fanin":
		return &stream{groups: []streamGroup{faninGroup(p.Senders)}, codec: codec, label: "fanin",
			workers: min(workers, p.Senders+1), engineTraffic: et}, nil
	case "idle":
		return &idle{count: p.Conns}, nil
	case "connect":
		return &connect{parallel: p.Conns}, nil
	}
	return nil, fmt.Errorf("unknown workload %q", p.Workload)
}

// Buffer sizes. Reads take up to readChunk bytes at once; a streaming sender
// packs frames into writes of about writeBatch bytes.
const (
	readChunk  = 64 << 10
	writeBatch = 64 << 10
	// frameLimit bounds how far a receiver buffers looking for a 0x00, so a
	// broken server cannot make the generator grow without bound.
	frameLimit = 4 << 20
)

// engineTraffic is the part of a workload that runs on an engine.
type engineTraffic struct {
	eng  *engine
	cpus []int // worker i is pinned to cpus[i]; empty: not pinned
}

// build detaches peers from the Go runtime, makes an engine of workers and
// hands it each connection through place, which returns the worker and the
// connection's state. On error everything is closed.
func (t *engineTraffic) build(peers []*peer, workers int, place func(i int, c *gconn) int) error {
	fds, err := detachAll(peers)
	if err != nil {
		return err
	}
	if t.eng, err = newEngine(workers, t.cpus); err != nil {
		closeFDs(fds)
		return err
	}
	for i, fd := range fds {
		c := &gconn{fd: fd}
		if rec := peers[i].rec; rec != nil {
			c.src.tls = newTLSReader(rec)
			c.tlsw = &tlsWriter{rec: rec}
		}
		if err := t.eng.add(place(i, c), c); err != nil {
			closeFDs(fds[i+1:])
			t.eng.stop()
			return err
		}
	}
	return nil
}

func (t *engineTraffic) start(m *meter) { t.eng.start(m) }
func (t *engineTraffic) finish(*meter)  { t.eng.stop() }
func (t *engineTraffic) threads() int   { return t.eng.threads() }

// quiet gives a role the parts it does not use.
type quiet struct{}

func (quiet) opening(*gconn, int64)                 {}
func (quiet) received(*worker, *gconn, int64) error { return nil }
func (quiet) refill(*gconn)                         {}
