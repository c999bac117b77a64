package relay

import (
	"encoding/binary"

	"github.com/ringrelay/ringrelay/shard"
)

// Control records: what loops, and the loops of other nodes, tell each
// other besides frames. A control record travels on the same hops as
// frames, as a record for destination ID 0 (shard.ControlDest), which no
// connection ever has and which a frame addressed to 0 never reaches (it
// is dropped on the sender's loop). Its payload is one op byte and one
// little-endian uint32:
//
//   - ctlPause d: destination d is over -max-queue under backpressure;
//     pause the connections that send to it (hold.go). From another node
//     it is a lease (deliver.go).
//   - ctlResume d: d drained below half its limit, or left.
//   - ctlAdopt fd: the placing loop (0) gives this loop an accepted socket
//     (between loops of one process only).
//   - ctlUnknown d: a frame this loop sent for d found no connection there
//     (between loops only; advice for the spray limit, limits.go, sent
//     only when the queue has room and never waited for).
//
// Between loops a control record that finds its queue full waits, in
// order, and goes out at a later pass: it is never dropped. Between nodes
// the bridge carries it at most once; the leases cover a lost one.

const (
	ctlPause byte = iota + 1
	ctlResume
	ctlAdopt
	ctlUnknown
)

// ctlLen is the size of a control record's payload: op and argument.
const ctlLen = 5

type ctlRecord struct {
	op  byte
	arg uint32
}

// controls are the records that wait for room, by hop.
type controls struct {
	wait [][]ctlRecord
	any  int
}

func (c *controls) init(hops int) { c.wait = make([][]ctlRecord, hops) }

// sendControl queues a control record for hop h, behind any that wait.
func (s *Server) sendControl(h int, op byte, arg uint32) {
	r := ctlRecord{op, arg}
	if len(s.ctl.wait[h]) == 0 && s.putControl(h, r) {
		return
	}
	s.ctl.wait[h] = append(s.ctl.wait[h], r)
	s.ctl.any++
}

func (s *Server) putControl(h int, r ctlRecord) bool {
	var b [ctlLen]byte
	b[0] = r.op
	binary.LittleEndian.PutUint32(b[1:], r.arg)
	return s.put(h, shard.ControlDest, b[:])
}

// retryControl sends the control records that waited for room.
func (s *Server) retryControl() {
	for h, rs := range s.ctl.wait {
		i := 0
		for i < len(rs) && s.putControl(h, rs[i]) {
			i++
		}
		s.ctl.any -= i
		s.ctl.wait[h] = append(rs[:0], rs[i:]...)
	}
}

// control handles a control record that came from hop h.
func (s *Server) control(h int, rec []byte) {
	if len(rec) != ctlLen {
		return
	}
	arg := binary.LittleEndian.Uint32(rec[1:])
	switch rec[0] {
	case ctlPause:
		s.paused(h, arg)
	case ctlResume:
		s.resumed(arg)
	case ctlAdopt:
		if h < s.n {
			s.loop.Adopt(int(arg))
		}
	case ctlUnknown:
		if h < s.n {
			s.unknownBack(arg)
		}
	}
}
