package bench

import (
	"context"
	"fmt"

	"github.com/ringrelay/ringrelay/internal/frame"
)

// traffic is one running instance of a workload: its connections and the
// goroutines that move frames over them.
type traffic interface {
	// open dials every connection and learns its ID; no frames flow yet.
	open(ctx context.Context, d *dialer) error
	// start launches the goroutines, which report into m until finish.
	start(m *meter)
	// finish runs the workload's closing checks, then closes every
	// connection and waits for its goroutines. m.stopping is already set.
	finish(m *meter)
	// conns is the number of connections open.
	conns() int
}

func newTraffic(p Point) (traffic, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var codec *Codec
	if p.Workload != "idle" {
		var err error
		if codec, err = NewCodec(p.Size); err != nil {
			return nil, err
		}
	}
	switch p.Workload {
	case "pingpong":
		return &pingpong{pairs: p.Pairs, window: p.Window, codec: codec}, nil
	case "flood":
		return &stream{senders: 1, codec: codec, label: "flood"}, nil
	case "fanin":
		return &stream{senders: p.Senders, codec: codec, label: "fanin"}, nil
	case "idle":
		return &idle{count: p.Conns}, nil
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

// blast sends frames from p to dest as fast as the connection takes them,
// numbering them from 0, several frames per write.
func blast(m *meter, p *peer, dest uint32, c *Codec, what string) {
	perWrite := max(1, writeBatch/(c.Size()+frameOverhead))
	out := make([]byte, 0, perWrite*(c.Size()+frameOverhead))
	var seq uint64
	for {
		out = out[:0]
		for range perWrite {
			out = appendFrame(out, dest, c, p.index, seq)
			seq++
		}
		if _, err := p.conn.Write(out); err != nil {
			m.ioError(what+" write", err)
			return
		}
	}
}

// drain reads frames at p until the connection closes, verifying each one
// against c and order and counting it.
func drain(m *meter, p *peer, c *Codec, order *Order, what string) {
	in := frame.NewSplitter(readChunk, frameLimit)
	for {
		err := in.Fill(p.conn)
		n, bytes := 0, 0
		for f, ok := in.Next(); ok; f, ok = in.Next() {
			sender, seq, derr := c.Decode(f)
			if derr == nil {
				derr = order.Check(sender, seq)
			}
			if derr != nil {
				m.delivered(n, bytes)
				m.fail("%s: %v", what, derr)
				return
			}
			n++
			bytes += len(f)
		}
		m.delivered(n, bytes)
		if err != nil {
			m.ioError(what+" read", err)
			return
		}
	}
}
