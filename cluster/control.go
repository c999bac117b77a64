package cluster

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/ringrelay/ringrelay/shard"
)

// Control records: what the relay's loops tell the loops of every other
// node besides frames (the pauses and resumes of backpressure across
// nodes; see relay/control.go and relay/deliver.go). The bridge does not
// read them: a loop puts one into its outbox as a record for ID 0, the
// bridge gathers the records of a pass into one message on NAME.ctl, which
// every node subscribes to, and each receiving bridge puts every record,
// as a record for ID 0, into every loop's inbox. At most once, like
// frames: a record that finds an inbox full is dropped and counted (the
// relay's pauses are leases, so a lost record costs a late pause or a late
// resume, never a stuck sender).
//
// A control message:
//
//	offset 0  "RRC"          magic, 3 bytes
//	offset 3  version        1 byte (controlVersion)
//	offset 4  source node    uint16, big-endian
//	offset 6  records        each [length uint8, at least 1][record]
const (
	controlHeader  = 6
	controlVersion = 1
	// MaxControlRecord is the largest control record the bridge carries.
	MaxControlRecord = 255
)

var controlMagic = [3]byte{'R', 'R', 'C'}

// controlSubject is where every node's control messages go.
func (c Config) controlSubject() string { return c.Name + ".ctl" }

// addControl appends one of this pass's control records to the message
// that the pass publishes at its end.
func (b *Bridge) addControl(rec []byte) {
	if len(rec) == 0 || len(rec) > MaxControlRecord {
		b.stats.controlDropped.Add(1)
		return
	}
	if len(b.ctlOut) == 0 {
		b.ctlOut = append(b.ctlOut, controlMagic[0], controlMagic[1], controlMagic[2], controlVersion)
		b.ctlOut = binary.BigEndian.AppendUint16(b.ctlOut, uint16(b.cfg.Node))
	}
	b.ctlOut = append(b.ctlOut, byte(len(rec)))
	b.ctlOut = append(b.ctlOut, rec...)
	b.ctlRecords++
}

// publishControl sends the control records this pass gathered.
func (b *Bridge) publishControl() {
	if b.ctlRecords == 0 {
		return
	}
	n := b.ctlRecords
	data := b.ctlOut
	b.ctlOut, b.ctlRecords = b.ctlOut[:0], 0
	if !b.passBusUp || b.passFailed {
		b.stats.controlDropped.Add(uint64(n))
		return
	}
	if err := b.nc.Publish(b.cfg.controlSubject(), data); err != nil {
		b.stats.controlDropped.Add(uint64(n))
		return
	}
	b.stats.controlOut.Add(uint64(n))
}

// decodeControl checks a control message whole (header, a source node
// that is another node of the scheme, every record whole) and returns its
// records. Any node may pause or resume this node's senders, so the
// source is checked, not kept.
func decodeControl(m []byte, s shard.Scheme) (recs []byte, err error) {
	if len(m) < controlHeader || !bytes.Equal(m[:3], controlMagic[:]) || m[3] != controlVersion {
		return nil, fmt.Errorf("control message: bad header")
	}
	if src := int(binary.BigEndian.Uint16(m[4:])); src >= s.Nodes() || src == s.Self {
		return nil, fmt.Errorf("control message from node %d", src)
	}
	recs = m[controlHeader:]
	for r := recs; len(r) > 0; {
		n := int(r[0])
		if n == 0 || 1+n > len(r) {
			return nil, fmt.Errorf("control message: record cut short")
		}
		r = r[1+n:]
	}
	return recs, nil
}

// onControl runs on the client's goroutine for NAME.ctl: every record goes
// to every loop's inbox. It is a producer of the Sinks, so it holds inMu.
func (b *Bridge) onControl(m *nats.Msg) {
	recs, err := decodeControl(m.Data, b.scheme)
	if err != nil {
		b.stats.controlRejected.Add(1)
		return
	}
	b.inMu.Lock()
	defer b.inMu.Unlock()
	if b.inClosed || b.stopped.Load() {
		return
	}
	for r := recs; len(r) > 0; {
		n := int(r[0])
		rec := r[1 : 1+n]
		r = r[1+n:]
		for k, in := range b.loops.In {
			if !in.Put(0, rec) {
				b.stats.controlDropped.Add(1)
				continue
			}
			b.stats.controlIn.Add(1)
			if !b.inTouched[k] {
				b.inTouched[k] = true
				b.inList = append(b.inList, k)
			}
		}
	}
	b.publishTouched()
}
