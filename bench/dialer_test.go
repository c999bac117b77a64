package bench

import (
	"context"
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"
)

// TestDialerSplitsOverNodes: with two addresses, connections take them in
// turn, so with the adjacent pairing (2i, 2i+1) every pair crosses nodes.
func TestDialerSplitsOverNodes(t *testing.T) {
	var addrs []string
	for node := range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
		go func() {
			// Each node hands out IDs whose top byte is the node index.
			for seq := uint32(1); ; seq++ {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				var id [4]byte
				binary.BigEndian.PutUint32(id[:], uint32(node)<<24|seq)
				c.Write(id[:])
				defer c.Close()
			}
		}()
	}
	d, err := newDialer(strings.Join(addrs, ","))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const pairs = 5
	peers, err := d.dialMany(ctx, 2*pairs)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(peers)
	for i, p := range peers {
		if want := uint32(i % 2); p.id>>24 != want {
			t.Errorf("connection %d went to node %d, want %d", i, p.id>>24, want)
		}
	}
	if _, err := newDialer(" , "); err == nil {
		t.Errorf("an empty list was accepted")
	}
}
