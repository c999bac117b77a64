package cluster

import (
	"bytes"
	"testing"

	"github.com/ringrelay/ringrelay/shard"
)

// TestControlCodec: what addControl builds, decodeControl takes back whole;
// a header, a source or a record that is wrong is refused.
func TestControlCodec(t *testing.T) {
	b := &Bridge{cfg: Config{Node: 1}}
	recs := [][]byte{{1, 0xaa, 0xbb, 0xcc, 0xdd}, {2, 1, 2, 3, 4}}
	for _, r := range recs {
		b.addControl(r)
	}
	msg := bytes.Clone(b.ctlOut)
	receiver := shard.Scheme{Bits: 2, Self: 2}
	got, err := decodeControl(msg, receiver)
	if err != nil || !bytes.Equal(got, []byte{5, 1, 0xaa, 0xbb, 0xcc, 0xdd, 5, 2, 1, 2, 3, 4}) {
		t.Fatalf("decode: % x, %v", got, err)
	}
	bad := map[string][]byte{
		"short header":       msg[:4],
		"wrong magic":        append([]byte("RRB"), msg[3:]...),
		"own node as source": msg, // decoded by node 1 itself below
		"record cut short":   msg[:len(msg)-1],
		"zero-length record": append(bytes.Clone(msg[:controlHeader]), 0),
	}
	for name, m := range bad {
		s := receiver
		if name == "own node as source" {
			s.Self = 1
		}
		if _, err := decodeControl(m, s); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := decodeControl(msg, shard.Scheme{Bits: 0}); err == nil {
		t.Error("a source node outside node-bits was accepted")
	}
	b.addControl(make([]byte, MaxControlRecord+1))
	if b.stats.controlDropped.Load() != 1 {
		t.Errorf("a record over %d bytes was not dropped and counted", MaxControlRecord)
	}
}
