package tlsrecord

import (
	"crypto/tls"
	"runtime"
	"testing"
	"unsafe"
)

var benchSizes = []struct {
	name   string
	frames int
	size   int
}{
	{"16x64B", 16, 64},
	{"64KiB", 1, 64 << 10},
}

// BenchmarkSeal seals one batch per op: 16 relay frames of 64 B queued
// back to back (one record), or 64 KiB (four records).
func BenchmarkSeal(b *testing.B) {
	for _, id := range allSuites {
		for _, sz := range benchSizes {
			b.Run(tls.CipherSuiteName(id)+"/"+sz.name, func(b *testing.B) {
				p := newPair(b, id)
				batch := randomBytes(sz.frames * sz.size)
				out := make([]byte, 0, SealedLen(len(batch)))
				b.SetBytes(int64(len(batch)))
				b.ReportAllocs()
				for b.Loop() {
					var err error
					if out, err = p.srv.Seal(out[:0], batch); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkSealPerFrame is the cost batching avoids: the same 16 x 64 B
// sealed one record per frame.
func BenchmarkSealPerFrame(b *testing.B) {
	p := newPair(b, tls.TLS_AES_128_GCM_SHA256)
	frame := randomBytes(64)
	out := make([]byte, 0, 16*SealedLen(64))
	b.SetBytes(16 * 64)
	b.ReportAllocs()
	for b.Loop() {
		out = out[:0]
		for range 16 {
			out, _ = p.srv.Seal(out, frame)
		}
	}
}

// BenchmarkOpen opens the same sealed batch per op (the receiver's
// sequence number is rewound, which only a test inside the package can do).
func BenchmarkOpen(b *testing.B) {
	for _, id := range allSuites {
		for _, sz := range benchSizes {
			b.Run(tls.CipherSuiteName(id)+"/"+sz.name, func(b *testing.B) {
				p := newPair(b, id)
				batch := randomBytes(sz.frames * sz.size)
				wire, _ := p.cli.Seal(nil, batch)
				plain := make([]byte, 0, len(wire)) // room for each record's inner plaintext
				b.SetBytes(int64(len(batch)))
				b.ReportAllocs()
				for b.Loop() {
					p.srv.in.seq = 0
					out, n, err := p.srv.Open(plain[:0], wire)
					if err != nil || n != len(wire) || len(out) != len(batch) {
						b.Fatal("open failed", err)
					}
				}
			})
		}
	}
}

// TestConnMemory measures what one Conn keeps alive: the struct plus its
// two AEADs, as the heap growth over many Conns. The budget for a whole
// idle TLS connection is 2 KiB, so the record layer must stay well
// under it.
func TestConnMemory(t *testing.T) {
	const n = 2000
	const budget = 2048
	for _, id := range allSuites {
		secret := make([]byte, 48)
		s, _ := suiteByID(id)
		conns := make([]*Conn, n)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range conns {
			c, err := NewServer(id, secret[:s.hashLen], secret[:s.hashLen])
			if err != nil {
				t.Fatal(err)
			}
			conns[i] = c
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perConn := float64(after.HeapAlloc-before.HeapAlloc) / n
		for _, c := range conns {
			c.Shrink()
		}
		var shrunk runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&shrunk)
		perShrunk := float64(shrunk.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(conns)
		t.Logf("%s: unsafe.Sizeof(Conn) = %d B; retained per Conn (struct + AEADs) = %.0f B; after Shrink = %.0f B",
			tls.CipherSuiteName(id), unsafe.Sizeof(Conn{}), perConn, perShrunk)
		if perConn > budget {
			t.Errorf("%s: %.0f B per Conn exceeds the 2 KiB budget for a whole idle TLS connection", tls.CipherSuiteName(id), perConn)
		}
		// A shrunk Conn is the struct and its allocation-size rounding.
		if perShrunk > 2*float64(unsafe.Sizeof(Conn{})) {
			t.Errorf("%s: %.0f B per Conn after Shrink, want about unsafe.Sizeof(Conn) = %d", tls.CipherSuiteName(id), perShrunk, unsafe.Sizeof(Conn{}))
		}
	}
}

// BenchmarkRebuild is what Shrink costs the next batch: rebuilding the
// write AEAD from the stored key, then sealing 16 x 64 B.
func BenchmarkRebuild(b *testing.B) {
	for _, id := range allSuites {
		b.Run(tls.CipherSuiteName(id), func(b *testing.B) {
			p := newPair(b, id)
			batch := randomBytes(16 * 64)
			out := make([]byte, 0, SealedLen(len(batch)))
			b.ReportAllocs()
			for b.Loop() {
				p.srv.Shrink()
				out, _ = p.srv.Seal(out[:0], batch)
			}
		})
	}
}
