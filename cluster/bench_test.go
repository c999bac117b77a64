package cluster

import (
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/natstest"
)

// countSink counts what it is given and keeps nothing.
type countSink struct {
	staged int64
	frames atomic.Int64
}

func (c *countSink) Put(uint32, []byte) bool { c.staged++; return true }
func (c *countSink) Publish() bool {
	c.frames.Add(c.staged)
	c.staged = 0
	return true
}

// BenchmarkBridgeThroughput pushes 64-byte frames (63 bytes and the NUL)
// from one bridge through one embedded NATS server into another, and
// reports frames per second end to end. Indicative only: the machine is
// shared.
func BenchmarkBridgeThroughput(b *testing.B) {
	cl := natstest.Start(b, 1, natstest.Options{})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	out := &outbox{}
	sink := &countSink{}
	mk := func(node int, src Source, dst Sink) *Bridge {
		cfg := testConfig(node, cl.URL(0))
		cfg.Logger = quiet
		br, err := Start(cfg, Loops{
			Out: []Source{src}, In: []Sink{dst},
			Owner: func(uint32) int { return 0 }, Wake: func(int) {},
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { br.Close() })
		return br
	}
	sender := mk(0, out, &countSink{})
	mk(1, &outbox{}, sink)
	deadline := time.Now().Add(10 * time.Second)
	for !sender.Up(1) {
		if time.Now().After(deadline) {
			b.Fatal("node 1 never came up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	dest := ids(1, 1)[0]
	pl := make([]byte, 64)
	for i := range pl[:63] {
		pl[i] = 'a' + byte(i%26)
	}
	b.SetBytes(64)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		out.pushRaw(dest, pl)
		if i%512 == 511 {
			sender.Ring()
			for out.len() > 64<<10 {
				time.Sleep(50 * time.Microsecond)
			}
		}
	}
	sender.Ring()
	for sink.frames.Load() < int64(b.N) {
		if time.Since(start) > time.Minute {
			s := sender.Snapshot()
			b.Fatalf("received %d of %d; sender %+v", sink.frames.Load(), b.N, s.Peers)
		}
		time.Sleep(100 * time.Microsecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "frames/s")
	s := sender.Snapshot()
	if s.BatchesOut > 0 {
		b.ReportMetric(float64(s.BatchFramesOut)/float64(s.BatchesOut), "frames/batch")
	}
}
