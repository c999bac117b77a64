package metrics

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/rawpeer"
	"github.com/ringrelay/ringrelay/internal/servertest"
	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
)

const connzSlack = 30 * time.Second

// startRelay runs a relay of loops loops on a free loopback port until
// the test ends.
func startRelay(t *testing.T, backend reactor.Backend, loops int) *relay.Group {
	t.Helper()
	lc := reactor.DefaultConfig()
	lc.Backend = backend
	lc.Buffers = 256
	g, err := relay.StartGroup(relay.GroupConfig{Loops: loops, Listen: "127.0.0.1:0", Reactor: lc, Relay: relay.DefaultConfig()})
	if err != nil {
		t.Fatalf("start %s relay with %d loops: %v", backend, loops, err)
	}
	t.Cleanup(func() {
		g.Shutdown()
		if err := g.Wait(); err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	return g
}

// getConnz fetches url and decodes the page, or returns the status and
// body of a refusal.
func getConnz(t *testing.T, url string) (ConnzPage, int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var p ConnzPage
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return p, resp.StatusCode, string(b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: Content-Type %q", url, ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatalf("GET %s: decode: %v", url, err)
	}
	return p, resp.StatusCode, ""
}

// /connz over HTTP on a live relay: sorting, paging, one connection, the
// summary and refused parameters.
func TestConnzPage(t *testing.T) {
	for _, backend := range []reactor.Backend{reactor.Uring, reactor.Epoll} {
		for _, loops := range []int{1, 4} {
			t.Run(fmt.Sprintf("%s/loops=%d", backend, loops), func(t *testing.T) { testConnzPage(t, backend, loops) })
		}
	}
}

func testConnzPage(t *testing.T, backend reactor.Backend, loops int) {
	const (
		receivers = 8
		payload   = 10
	)
	g := startRelay(t, backend, loops)
	addr := g.Addr().String()
	s := rawpeer.Dial(t, addr, rawpeer.Bufs{})
	rs := make([]*rawpeer.Peer, receivers)
	for i := range rs {
		rs[i] = rawpeer.Dial(t, addr, rawpeer.Bufs{})
	}
	// Receiver i is sent i+1 frames, so that every order is strict.
	frames := 0
	for i, r := range rs {
		for range i + 1 {
			if err := s.Send(r.ID, []byte(strings.Repeat("z", payload))); err != nil {
				t.Fatalf("send: %v", err)
			}
			frames++
		}
	}
	for i, r := range rs {
		for range i + 1 {
			if _, err := r.Recv(connzSlack); err != nil {
				t.Fatalf("receiver %d: %v", r.ID, err)
			}
		}
	}
	srv := httptest.NewServer(Connz(g, loops))
	defer srv.Close()
	base := srv.URL + "/connz"
	servertest.WaitFor(t, "every connection listed", connzSlack, func() bool {
		p, _, _ := getConnz(t, base)
		return p.Total == receivers+1
	})

	// Paging through the list by frames out, three at a time, visits
	// every connection once, largest first, the sender (no frames out)
	// last.
	var seen []ConnzConn
	for off := 0; off < receivers+3; off += 3 {
		p, code, body := getConnz(t, fmt.Sprintf("%s?sort=frames_out&limit=3&offset=%d", base, off))
		if code != http.StatusOK {
			t.Fatalf("offset %d: %d %s", off, code, body)
		}
		if want := min(3, max(receivers+1-off, 0)); p.Count != want || len(p.Connections) != want || p.Total != receivers+1 {
			t.Fatalf("offset %d: count %d (%d listed) of %d, want %d of %d", off, p.Count, len(p.Connections), p.Total, want, receivers+1)
		}
		seen = append(seen, p.Connections...)
	}
	if len(seen) != receivers+1 {
		t.Fatalf("paging listed %d connections, want %d", len(seen), receivers+1)
	}
	for i, c := range seen[:receivers] {
		r := rs[receivers-1-i]
		if c.CID != r.ID || c.FramesOut != uint64(receivers-i) || c.BytesOut != 4+uint64(receivers-i)*(payload+1) {
			t.Errorf("place %d: cid %d with %d frames (%d bytes) out, want %d with %d (%d)",
				i, c.CID, c.FramesOut, c.BytesOut, r.ID, receivers-i, 4+(receivers-i)*(payload+1))
		}
		if c.IP != "127.0.0.1" || c.Port == 0 {
			t.Errorf("place %d: address %s:%d, want 127.0.0.1 and a port", i, c.IP, c.Port)
		}
	}
	if last := seen[receivers]; last.CID != s.ID || last.FramesIn != uint64(frames) || last.BytesIn != uint64(frames*(payload+5)) {
		t.Errorf("last place: %+v, want the sender %d with %d frames in", last, s.ID, frames)
	}

	// Other orders: the sender read the most bytes and is the oldest.
	for _, sort := range []string{"bytes_in", "frames_in", "age"} {
		p, _, _ := getConnz(t, base+"?limit=1&sort="+sort)
		if len(p.Connections) != 1 || p.Connections[0].CID != s.ID {
			t.Errorf("sort=%s: first %+v, want the sender %d", sort, p.Connections, s.ID)
		}
	}
	p, _, _ := getConnz(t, base+"?sort=cid")
	for i := 1; i < len(p.Connections); i++ {
		if p.Connections[i-1].CID >= p.Connections[i].CID {
			t.Errorf("sort=cid: %d before %d", p.Connections[i-1].CID, p.Connections[i].CID)
		}
	}

	// One connection, by cid or id.
	for _, key := range []string{"cid", "id"} {
		p, code, body := getConnz(t, fmt.Sprintf("%s?%s=%d", base, key, rs[2].ID))
		if code != http.StatusOK || len(p.Connections) != 1 || p.Connections[0].CID != rs[2].ID || p.Connections[0].FramesOut != 3 {
			t.Errorf("%s=%d: %d %s %+v, want that connection with 3 frames out", key, rs[2].ID, code, body, p.Connections)
		}
	}

	// The summary: totals, no list.
	p, _, _ = getConnz(t, base+"?summary=true")
	sum := p.Summary
	if len(p.Connections) != 0 || sum.Connections != receivers+1 || sum.FramesIn != uint64(frames) ||
		sum.FramesOut != uint64(frames) || sum.BytesIn != uint64(frames*(payload+5)) ||
		sum.BytesOut != uint64(4*(receivers+1)+frames*(payload+1)) || sum.Paused != 0 || sum.Queued != 0 {
		t.Errorf("summary: %+v with %d connections listed; want %d connections, %d frames in and out, nothing listed",
			sum, len(p.Connections), receivers+1, frames)
	}
	if loops > 1 {
		n := 0
		for _, c := range sum.PerLoop {
			n += c
		}
		if len(sum.PerLoop) != loops || n != receivers+1 {
			t.Errorf("summary per loop: %v, want %d loops summing to %d", sum.PerLoop, loops, receivers+1)
		}
	}

	// A connection that left is not found; bad parameters are refused.
	gone := rs[0].ID
	rs[0].NC.Close()
	servertest.WaitFor(t, "the closed connection gone", connzSlack, func() bool {
		_, code, _ := getConnz(t, fmt.Sprintf("%s?cid=%d", base, gone))
		return code == http.StatusNotFound
	})
	for _, q := range []string{"sort=nope", "limit=0", "limit=x", "offset=-1", "cid=0", "cid=abc", "summary=maybe"} {
		if _, code, body := getConnz(t, base+"?"+q); code != http.StatusBadRequest || !strings.Contains(body, "connz:") {
			t.Errorf("?%s: %d %q, want 400 saying what is wrong", q, code, body)
		}
	}
}
