package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// An announcement is one NATS message on NAME.nodes, 16 bytes:
//
//	offset 0  "RRA"       magic
//	offset 3  version     1
//	offset 4  node        uint16, big-endian
//	offset 6  state       1 starting, 2 serving, 3 leaving
//	offset 7  flags       bit 0: ask (serving nodes answer at once)
//	offset 8  instance    uint64, random per process, never 0
//
// A node announces "starting" with ask set when it connects, listens for
// StartupWait, and refuses to start if any other instance announces its
// node index meanwhile (serving nodes answer an ask at once, so a node
// already serving is heard well within the window). Then it announces
// "serving" every AnnounceEvery, with ask set again after a reconnect so
// that it learns who is up without waiting a whole interval. "leaving" is
// sent by Close so that peers stop sending at once.
const announceSize = 16

type nodeState uint8

const (
	stateStarting nodeState = 1
	stateServing  nodeState = 2
	stateLeaving  nodeState = 3
)

var announceMagic = [3]byte{'R', 'R', 'A'}

type announcement struct {
	node     int
	state    nodeState
	ask      bool
	instance uint64
}

func (a announcement) encode() []byte {
	b := make([]byte, 0, announceSize)
	b = append(b, announceMagic[0], announceMagic[1], announceMagic[2], 1)
	b = binary.BigEndian.AppendUint16(b, uint16(a.node))
	var flags byte
	if a.ask {
		flags = 1
	}
	b = append(b, byte(a.state), flags)
	return binary.BigEndian.AppendUint64(b, a.instance)
}

var errAnnouncement = errors.New("not an announcement")

func decodeAnnouncement(b []byte, nodes int) (announcement, error) {
	if len(b) != announceSize || !bytes.Equal(b[:3], announceMagic[:]) || b[3] != 1 {
		return announcement{}, fmt.Errorf("%w: %d bytes", errAnnouncement, len(b))
	}
	a := announcement{
		node:     int(binary.BigEndian.Uint16(b[4:])),
		state:    nodeState(b[6]),
		ask:      b[7] == 1,
		instance: binary.BigEndian.Uint64(b[8:]),
	}
	switch {
	case a.node >= nodes:
		return announcement{}, fmt.Errorf("%w: node %d of %d", errAnnouncement, a.node, nodes)
	case a.state < stateStarting || a.state > stateLeaving:
		return announcement{}, fmt.Errorf("%w: state %d", errAnnouncement, a.state)
	case b[7] > 1:
		return announcement{}, fmt.Errorf("%w: flags %#x", errAnnouncement, b[7])
	case a.instance == 0:
		return announcement{}, fmt.Errorf("%w: instance 0", errAnnouncement)
	}
	return a, nil
}
