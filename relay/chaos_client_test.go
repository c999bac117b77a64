package relay_test

// The chaos engine's clients: what each client slot does (send, dribble,
// stall, reset, half-close, close, reconnect) and how its frames are built
// and entered in the oracle before they are written.

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"time"

	"github.com/ringrelay/ringrelay/internal/frame"
	"github.com/ringrelay/ringrelay/internal/payload"
	"github.com/ringrelay/ringrelay/relay/client"
)

// worker plays one client slot until the stop.
func (ch *chaos) worker(slot int) {
	rng := rand.New(rand.NewPCG(ch.seed, uint64(slot)+1))
	stable := slot < chaosStable
	var cur *chaosInc
	var buf []byte
	for ordinal := 0; !ch.stop.Load(); {
		if cur == nil {
			if cur = ch.dial(slot, ordinal); cur == nil {
				return
			}
			ordinal++
		}
		r := rng.IntN(1000)
		if stable && r >= 920 {
			r = 0 // stable slots never end their connection
		}
		switch {
		case r < 880:
			buf = ch.sendBatch(cur, rng, buf)
		case r < 900:
			time.Sleep(time.Duration(rng.IntN(5000)) * time.Microsecond)
		case r < 920:
			ch.drip(cur, rng)
		case r < 935:
			ch.reset(cur, rng)
			ch.forget(cur)
			cur = nil
		case r < 950:
			ch.halfClose(cur)
			ch.forget(cur)
			cur = nil
		case r < 960:
			ch.plainClose(cur)
			ch.forget(cur)
			cur = nil
		default:
			buf = ch.sendBatch(cur, rng, buf)
		}
	}
	if cur != nil {
		ch.mu.Lock()
		ch.final = append(ch.final, cur)
		ch.mu.Unlock()
	}
}

func (ch *chaos) dial(slot, ordinal int) *chaosInc {
	ctx, cancel := context.WithTimeout(context.Background(), progressSlack)
	defer cancel()
	addr := ch.ts.addr
	if len(ch.addrs) > 0 {
		addr = ch.addrs[slot%len(ch.addrs)]
	}
	var c *client.Conn
	var err error
	if ch.ts.tlsCfg != nil {
		c, err = client.DialTLS(ctx, addr, ch.ts.tlsCfg)
	} else {
		c, err = client.Dial(ctx, addr)
	}
	if err != nil {
		ch.fail("slot %d: dial: %v", slot, err)
		return nil
	}
	inc := &chaosInc{slot: slot, id: c.ID(), c: c, next: 1, readDone: make(chan struct{}), lastSeq: make(map[int32]uint32)}
	ch.mu.Lock()
	inc.n = int32(len(ch.incs) + 1)
	ch.incs = append(ch.incs, inc)
	ch.live = append(ch.live, inc)
	ch.byID[inc.id] = inc
	ch.mu.Unlock()
	rrng := rand.New(rand.NewPCG(ch.seed^0x7265616465720000, uint64(slot)<<20|uint64(ordinal)))
	go ch.reader(inc, rrng)
	return inc
}

// retire takes inc off the list of destinations and remembers it as a
// stale one, before its connection is closed.
func (ch *chaos) retire(inc *chaosInc, how int32) {
	inc.end.Store(how)
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if i := slices.Index(ch.live, inc); i >= 0 {
		ch.live[i] = ch.live[len(ch.live)-1]
		ch.live = ch.live[:len(ch.live)-1]
	}
	ch.recent = append(ch.recent, inc)
	if len(ch.recent) > 32 {
		ch.recent = ch.recent[1:]
	}
}

// forget drops an ended incarnation's connection; its oracle records stay.
func (ch *chaos) forget(inc *chaosInc) {
	ch.mu.Lock()
	inc.c = nil
	ch.mu.Unlock()
}

// reset ends inc with an RST, sometimes in the middle of a frame.
func (ch *chaos) reset(inc *chaosInc, rng *rand.Rand) {
	ch.retire(inc, chaosReset)
	ch.resets.Add(1)
	if rng.IntN(2) == 0 {
		dest, destInc := ch.pickDest(rng, inc)
		fr, _ := ch.record(inc, dest, destInc, ch.frameSize(rng), true)
		cut := 1 + rng.IntN(len(fr)-1) // never the NUL
		inc.c.SetWriteDeadline(time.Now().Add(time.Second))
		inc.c.NetConn().Write(fr[:cut]) // may block on backpressure: the deadline ends it
		ch.truncs.Add(1)
	}
	rawTCP(inc.c).SetLinger(0)
	inc.c.Close()
	<-inc.readDone
}

// halfClose ends inc the orderly way mid-run: the server must relay what
// it sent, write out what it queued for it, and close.
func (ch *chaos) halfClose(inc *chaosInc) {
	ch.retire(inc, chaosHalf)
	ch.halfs.Add(1)
	if err := closeWrite(inc.c); err != nil {
		ch.fail("incarnation %d: CloseWrite: %v", inc.n, err)
	}
	select {
	case <-inc.readDone:
	case <-time.After(progressSlack):
		ch.fail("incarnation %d (id %08x) half-closed, the server did not close it within %v", inc.n, inc.id, progressSlack)
		inc.end.Store(chaosReset)
		inc.c.Close()
		<-inc.readDone
	}
	inc.c.Close()
}

func (ch *chaos) plainClose(inc *chaosInc) {
	ch.retire(inc, chaosClose)
	ch.closes.Add(1)
	inc.c.Close()
	<-inc.readDone
}

// pickDest chooses a destination: mostly live clients, some to itself,
// some to IDs no one holds (0 and IDs with NUL bytes among them), some
// to incarnations that just went away.
func (ch *chaos) pickDest(rng *rand.Rand, me *chaosInc) (uint32, int32) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	r := rng.IntN(100)
	switch {
	case r < 70 && len(ch.live) > 0:
		d := ch.live[rng.IntN(len(ch.live))]
		return d.id, d.n
	case r < 80:
		return me.id, me.n
	case r < 90 && len(ch.recent) > 0:
		d := ch.recent[rng.IntN(len(ch.recent))]
		return d.id, d.n
	}
	for {
		var id uint32
		switch rng.IntN(3) {
		case 0:
			id = 0
		case 1:
			id = rng.Uint32() & 0x00ff00ff
		default:
			id = rng.Uint32()
		}
		if _, known := ch.byID[id]; !known {
			return id, 0
		}
	}
}

// frameSize draws a payload size: mostly small, some medium, some up to
// MaxFrame, a few exactly MaxFrame.
func (ch *chaos) frameSize(rng *rand.Rand) int {
	switch r := rng.IntN(100); {
	case r < 60:
		return payload.MinSize + rng.IntN(200)
	case r < 85:
		return payload.MinSize + rng.IntN(4096)
	case r < 98:
		return payload.MinSize + rng.IntN(chaosMaxFrame-payload.MinSize+1)
	default:
		return chaosMaxFrame
	}
}

// record builds the next frame of inc, header to NUL, and enters it in the
// oracle before a byte of it is written. The payload comes from the shared
// codec: it carries the sender's incarnation, the sequence number and the
// size, and a receiver can check every byte of it. Where it was addressed
// is in the oracle's record.
func (ch *chaos) record(inc *chaosInc, dest uint32, destInc int32, size int, truncated bool) ([]byte, uint32) {
	seq := inc.next
	inc.next++
	fr := make([]byte, 0, frame.HeaderLen+size+1)
	fr = binary.BigEndian.AppendUint32(fr, dest)
	fr = ch.codec.Append(fr, uint32(inc.n), uint64(seq), size)
	fr = append(fr, frame.End)
	inc.mu.Lock()
	inc.sent = append(inc.sent, chaosRec{dest: dest, destInc: destInc, size: int32(size), truncated: truncated})
	inc.mu.Unlock()
	return fr, seq
}

// sendBatch writes one to six frames in one buffer, cut at random points.
func (ch *chaos) sendBatch(inc *chaosInc, rng *rand.Rand, buf []byte) []byte {
	buf = buf[:0]
	first := inc.next
	for k := 1 + rng.IntN(6); k > 0 && len(buf) < chaosMaxBatch; k-- {
		dest, destInc := ch.pickDest(rng, inc)
		fr, _ := ch.record(inc, dest, destInc, ch.frameSize(rng), false)
		buf = append(buf, fr...)
	}
	if err := ch.writeCut(inc, rng, buf); err != nil {
		if inc.end.Load() == chaosOpen {
			ch.fail("incarnation %d (id %08x): write: %v", inc.n, inc.id, err)
		}
		return buf
	}
	inc.mu.Lock()
	for seq := first; seq < inc.next; seq++ {
		inc.sent[seq-1].written = true
	}
	inc.mu.Unlock()
	return buf
}

// writeCut writes buf in pieces: sometimes whole, otherwise at up to four
// random cut points, one of them often inside the first header.
func (ch *chaos) writeCut(inc *chaosInc, rng *rand.Rand, buf []byte) error {
	inc.c.SetWriteDeadline(time.Now().Add(progressSlack))
	var cuts []int
	if rng.IntN(5) != 0 {
		for range 1 + rng.IntN(4) {
			cuts = append(cuts, 1+rng.IntN(len(buf)-1))
		}
		if rng.IntN(3) == 0 {
			cuts = append(cuts, 1+rng.IntN(3))
		}
		slices.Sort(cuts)
		cuts = slices.Compact(cuts)
	}
	cuts = append(cuts, len(buf))
	at := 0
	for _, c := range cuts {
		if _, err := inc.c.NetConn().Write(buf[at:c]); err != nil {
			return err
		}
		at = c
		if rng.IntN(4) == 0 {
			time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond)
		}
	}
	return nil
}

// drip writes one small frame a byte at a time.
func (ch *chaos) drip(inc *chaosInc, rng *rand.Rand) {
	dest, destInc := ch.pickDest(rng, inc)
	fr, seq := ch.record(inc, dest, destInc, payload.MinSize+rng.IntN(16), false)
	inc.c.SetWriteDeadline(time.Now().Add(progressSlack))
	for i := range fr {
		if _, err := inc.c.NetConn().Write(fr[i : i+1]); err != nil {
			ch.fail("incarnation %d: dribbled write: %v", inc.n, err)
			return
		}
		time.Sleep(50 * time.Microsecond)
	}
	inc.mu.Lock()
	inc.sent[seq-1].written = true
	inc.mu.Unlock()
}

// reader receives for inc until its connection ends, checking each frame
// and now and then stalling, which backs the relay up onto the senders.
func (ch *chaos) reader(inc *chaosInc, rng *rand.Rand) {
	defer close(inc.readDone)
	for {
		p, err := inc.c.Recv()
		if err != nil {
			switch e := inc.end.Load(); {
			case e == chaosOpen:
				ch.fail("incarnation %d (id %08x) never closed, yet its connection ended: %v", inc.n, inc.id, err)
			case (e == chaosHalf || e == chaosFinal) && err != io.EOF:
				ch.fail("incarnation %d (id %08x) half-closed: want a clean EOF from the server, got %v", inc.n, inc.id, err)
			}
			return
		}
		ch.check(inc, p)
		if rng.IntN(300) == 0 {
			ch.stalls.Add(1)
			time.Sleep(time.Duration(20+rng.IntN(280)) * time.Millisecond)
		}
	}
}

// rawTCP is the TCP socket under c, plaintext or TLS.
func rawTCP(c *client.Conn) *net.TCPConn {
	if tc, ok := c.NetConn().(*tls.Conn); ok {
		return tc.NetConn().(*net.TCPConn)
	}
	return c.NetConn().(*net.TCPConn)
}

// closeWrite ends c's sending side: a TCP half-close, or over TLS a
// close_notify, which the relay takes the same way.
func closeWrite(c *client.Conn) error {
	if tc, ok := c.NetConn().(*tls.Conn); ok {
		return tc.CloseWrite()
	}
	return c.NetConn().(*net.TCPConn).CloseWrite()
}
