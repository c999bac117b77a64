package relay_test

import (
	"bytes"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/frame"
)

// BenchmarkRelay measures the whole path in one process: a client writes
// 64-byte frames in batches, the relay (on each backend) parses and routes
// them, a second client reads them back. It reports relayed frames per
// second and heap allocations per relayed frame. The clients allocate
// nothing per frame, so allocs/frame is the server's.
//
//	go test -run '^$' -bench BenchmarkRelay -benchtime 2000000x ./relay/
func BenchmarkRelay(b *testing.B) {
	for _, backend := range backends {
		b.Run(string(backend), func(b *testing.B) {
			ts := startServer(b, backend, nil)
			src, dst := ts.dial(b), ts.dial(b)
			payload := bytes.Repeat([]byte("x"), 63) // 63 + NUL = 64 bytes delivered
			one := frame.Append(nil, dst.ID(), payload)
			const perWrite = 256
			batch := bytes.Repeat(one, perWrite)

			total := int64(b.N) * 64
			got := make(chan error, 1)
			go func() {
				buf := make([]byte, 256<<10)
				var n int64
				dst.SetReadDeadline(time.Now().Add(5 * time.Minute))
				for n < total {
					k, err := dst.NetConn().Read(buf)
					if err != nil {
						got <- err
						return
					}
					n += int64(k)
				}
				got <- nil
			}()

			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			mallocs := ms.Mallocs
			b.ResetTimer()
			start := time.Now()
			for left := b.N; left > 0; {
				k := min(left, perWrite)
				if _, err := src.NetConn().Write(batch[:k*len(one)]); err != nil {
					b.Fatal(err)
				}
				left -= k
			}
			if err := <-got; err != nil && err != io.EOF {
				b.Fatal(err)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "frames/s")
			b.ReportMetric(float64(ms.Mallocs-mallocs)/float64(b.N), "allocs/frame")
			b.SetBytes(64)
		})
	}
}
