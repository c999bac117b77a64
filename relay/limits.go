package relay

import (
	"net/netip"
	"sync"
	"time"

	"github.com/ringrelay/ringrelay/reactor"
)

// Limits for a network the operator does not control: ID spraying and
// crowds from one source address. The memory budget is budget.go's. Each
// hooks into the one path (route.go, server.go) at a single call; the
// state lives here, in the loop's limits and the Group's shared, not in
// the peer record, so an idle connection pays nothing for them.
//
// ID spraying. A connection that sends more than MaxUnknownDest frames to
// unknown IDs within one UnknownDestWindow is closed (ClosedUnknownDest).
// A frame to one of the last sprayRecent unknown IDs the connection sent
// to is not counted again: a client streaming to a peer that just left
// (it has no way to learn of the departure but from the peer's side) sends
// it many frames, while a scanner gains nothing from an ID it already
// tried, so what is counted is, near enough, the distinct IDs probed.
// Windows are fixed (the clock divided by the window), so a scanner gets
// at most 2 x MaxUnknownDest probes across a window boundary before it is
// closed. Where a frame is found unknown decides where it is counted:
//
//   - for an ID this loop owns, at once, in forward;
//   - for an ID another loop owns, on that loop (fromLoop), which sends
//     the sender's loop an unknown record naming the ID when the queue
//     back has room (it is advice: never waited for, so a scanner cannot
//     make control records pile up). The sender's loop remembers, in a
//     small table indexed by the ID's low bits, which connection last sent
//     to each ID it put on another loop's queue, and counts the record
//     against that connection. A scanner aims at fresh IDs, whose entries
//     another frame overwrites only when it maps to the same entry before
//     the record comes back (a pass or two), so nearly every probe is
//     counted; a lost one only means a few more probes;
//   - for an ID of another node: not counted. The bridge carries records
//     at most once and says nothing of their sender, so the other node
//     cannot name it back; such probes go at the rate of the outbox (and,
//     a sender's loop pausing it when full) and show as
//     dropped{reason="unknown_destination"} on the node that owns the ID.
//
// A connection's count is kept in a map by slot, entered only on its first
// unknown frame in a window and cleared at the next window, so the common
// case (no unknown frames) costs nothing.
//
// Connections per source address. The Group's ipTable counts the open
// connections and the new ones per second of each address (IPv6 grouped
// by ConnsPerIPPrefix6), behind a mutex taken only when a connection
// opens or closes, never on the data path. opened asks it, on whichever
// loop the connection was placed on, so the limit holds across loops.

// sprayCount is one connection's unknown-ID frames in the current window,
// and the last unknown IDs it sent to.
type sprayCount struct {
	serial uint64
	n      int
	recent [sprayRecent]uint32
}

// sprayRecent is how many of a connection's last unknown IDs a repeat is
// not counted for: a few peers that left at once.
const sprayRecent = 4

// sentTo records which connection last put a frame for an ID on another
// loop's queue.
type sentTo struct {
	dest   uint32
	slot   int32
	serial uint64
}

// sentToSize is the number of sentTo entries (a power of two): 16 KiB per
// loop, only with several loops and the spray limit on.
const sentToSize = 1024

// limits is one loop's state for the limits of this file and budget.go.
type limits struct {
	spray       map[int]*sprayCount // by slot, this window's unknown-ID frames
	sprayWindow int64               // the window spray counts in
	sent        []sentTo            // several loops only: see sentTo
	ipOf        map[int]netip.Addr  // by slot, the key a connection holds in ipTable
	mem         memState            // budget.go
}

func (l *limits) init(cfg *Config, loops int) {
	l.spray = make(map[int]*sprayCount)
	if cfg.MaxUnknownDest > 0 && loops > 1 {
		l.sent = make([]sentTo, sentToSize)
	}
	if cfg.MaxConnsPerIP > 0 || cfg.MaxNewConnsPerIP > 0 {
		l.ipOf = make(map[int]netip.Addr)
	}
}

// unknownDest counts a frame from src (nil: a sender that left) for dest
// that reached no connection, and closes src once it is over the limit.
func (s *Server) unknownDest(src *peer, dest uint32) {
	if src == nil || s.cfg.MaxUnknownDest == 0 || src.id == 0 {
		return
	}
	w := int64(s.clock) / int64(s.cfg.UnknownDestWindow)
	if w != s.lim.sprayWindow {
		s.lim.sprayWindow = w
		clear(s.lim.spray)
	}
	slot := src.conn.Slot()
	c, ok := s.lim.spray[slot]
	if !ok || c.serial != src.serial {
		c = &sprayCount{serial: src.serial}
		s.lim.spray[slot] = c
	}
	for _, r := range c.recent {
		if r == dest {
			return // a repeat: not a probe
		}
	}
	c.recent[c.n%sprayRecent] = dest
	c.n++
	if c.n > s.cfg.MaxUnknownDest {
		delete(s.lim.spray, slot)
		s.kick(src, ClosedUnknownDest, "over max-unknown-dest frames to unknown IDs")
	}
}

// sentElsewhere remembers that src put a frame for dest on another loop's
// queue, for an unknown record that may come back.
func (s *Server) sentElsewhere(src *peer, dest uint32) {
	s.lim.sent[dest&(sentToSize-1)] = sentTo{dest: dest, slot: int32(src.conn.Slot()), serial: src.serial}
}

// unknownElsewhere tells loop h, which sent a frame for dest here, that
// dest is unknown, if the queue back has room: advice, never waited for.
func (s *Server) unknownElsewhere(h int, dest uint32) {
	if h < s.n && s.cfg.MaxUnknownDest > 0 && len(s.ctl.wait[h]) == 0 {
		s.putControl(h, ctlRecord{ctlUnknown, dest})
	}
}

// unknownBack handles another loop's word that dest, which a connection
// of this loop sent to, is unknown there.
func (s *Server) unknownBack(dest uint32) {
	if s.lim.sent == nil {
		return
	}
	e := &s.lim.sent[dest&(sentToSize-1)]
	if e.dest != dest || e.serial == 0 {
		return
	}
	p := s.peers.at(int(e.slot))
	serial := e.serial
	*e = sentTo{}
	if p.serial == serial && p.conn != nil {
		s.unknownDest(p, dest)
	}
}

// admit applies the per-address limits to c, just opened, and reports
// whether it may stay. A connection admitted holds its address's count
// until closed releases it.
func (s *Server) admit(c *reactor.Conn) bool {
	if s.lim.ipOf == nil {
		return true
	}
	addr, err := c.PeerAddr()
	if err != nil {
		// Not an IP peer, or gone already: nothing to count it under.
		return true
	}
	key := ipKey(addr, s.cfg.ConnsPerIPPrefix6)
	if !s.sh.ips.acquire(key, s.now, s.cfg.MaxConnsPerIP, s.cfg.MaxNewConnsPerIP) {
		s.counts.closed[ClosedConnsPerIP]++
		s.log.Debug("connection over max-conns-per-ip closed", "addr", key, "max_conns_per_ip", s.cfg.MaxConnsPerIP, "max_new_conns_per_ip", s.cfg.MaxNewConnsPerIP)
		return false
	}
	s.lim.ipOf[c.Slot()] = key
	return true
}

// releaseAddr releases what the connection in slot held in the shared
// per-address table.
func (s *Server) releaseAddr(slot int) {
	if s.lim.ipOf == nil {
		return
	}
	if key, ok := s.lim.ipOf[slot]; ok {
		delete(s.lim.ipOf, slot)
		s.sh.ips.release(key, s.now)
	}
}

// ipKey is what the per-address limits count addr under: an IPv4 address
// whole, an IPv6 address by its first prefix6 bits (a host is commonly
// given a whole /64).
func ipKey(addr netip.Addr, prefix6 int) netip.Addr {
	if addr.Is4() {
		return addr
	}
	p, err := addr.WithZone("").Prefix(prefix6)
	if err != nil {
		return addr
	}
	return p.Addr()
}

// ipTable counts connections by source address, for all loops.
type ipTable struct {
	mu    sync.Mutex
	addrs map[netip.Addr]*ipCount
	swept int64 // second of the last sweep
}

type ipCount struct {
	open int   // open connections
	sec  int64 // the second fresh counts
	new  int   // connections opened in second sec
}

// acquire counts a new connection from key and reports whether it is
// within maxOpen and maxNew per second (0: no limit); a refused one is
// not counted as open.
func (t *ipTable) acquire(key netip.Addr, now time.Time, maxOpen, maxNew int) bool {
	sec := now.Unix()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.addrs == nil {
		t.addrs = make(map[netip.Addr]*ipCount)
	}
	if sec != t.swept {
		// Once a second, forget the addresses with nothing open and no
		// connection this second, so a stream of distinct addresses
		// leaves no trail.
		t.swept = sec
		for k, c := range t.addrs {
			if c.open == 0 && c.sec != sec {
				delete(t.addrs, k)
			}
		}
	}
	c := t.addrs[key]
	if c == nil {
		c = new(ipCount)
		t.addrs[key] = c
	}
	if c.sec != sec {
		c.sec, c.new = sec, 0
	}
	c.new++ // a refused attempt counts towards the rate too
	if (maxNew > 0 && c.new > maxNew) || (maxOpen > 0 && c.open >= maxOpen) {
		return false
	}
	c.open++
	return true
}

func (t *ipTable) release(key netip.Addr, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.addrs[key]; c != nil {
		c.open--
		if c.open == 0 && c.sec != now.Unix() {
			delete(t.addrs, key)
		}
	}
}
