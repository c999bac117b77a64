package tlshandshake

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// chunkedConn hands out a byte stream in pieces of the sizes it is given
// (cycling), as a socket might.
type chunkedConn struct {
	net.Conn
	data   []byte
	chunks []int
	i      int
}

func (c *chunkedConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.data), max(1, c.chunks[c.i%len(c.chunks)]))
	c.i++
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// FuzzRecordBoundedRead: whatever the record sizes, the socket's chunking
// and the reader's buffer sizes, handshakeConn returns the stream intact
// and no Read crosses the end of a record.
func FuzzRecordBoundedRead(f *testing.F) {
	f.Add([]byte{3, 0, 200, 1}, []byte{7, 1, 64}, []byte{5, 100, 1})
	f.Add([]byte{255, 255}, []byte{255}, []byte{2})
	f.Fuzz(func(t *testing.T, sizes, chunks, bufs []byte) {
		if len(sizes) == 0 || len(chunks) == 0 || len(bufs) == 0 {
			return
		}
		var stream []byte
		var ends []int // offsets where records end
		for i, s := range sizes {
			typ := byte(23)
			if i == 0 {
				typ = recordTypeHandshake
			}
			stream = append(stream, typ, 3, 3, 0, s)
			for j := range int(s) {
				stream = append(stream, byte(i+j))
			}
			ends = append(ends, len(stream))
		}
		cs := make([]int, len(chunks))
		for i, c := range chunks {
			cs[i] = int(c)
		}
		hc := newHandshakeConn(&chunkedConn{data: stream, chunks: cs})
		var got []byte
		for i := 0; ; i++ {
			buf := make([]byte, max(1, int(bufs[i%len(bufs)])*8))
			n, err := hc.Read(buf)
			from, to := len(got), len(got)+n
			for _, e := range ends {
				if from < e && to > e {
					t.Fatalf("a read of [%d,%d) crosses the record end at %d", from, to, e)
				}
			}
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got, stream) {
			t.Fatalf("read %d bytes, differing from the %d-byte stream", len(got), len(stream))
		}
		if hc.notTLS {
			t.Fatal("a handshake record was taken for not TLS")
		}
	})
}
