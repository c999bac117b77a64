package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/rawpeer"
	"github.com/ringrelay/ringrelay/internal/servertest"
	"github.com/ringrelay/ringrelay/metrics"
	"github.com/ringrelay/ringrelay/relay"
)

// opsConnz fetches http://addr/connz?query.
func opsConnz(t testing.TB, addr, query string) metrics.ConnzPage {
	t.Helper()
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Get("http://" + addr + "/connz?" + query)
	if err != nil {
		t.Fatalf("GET /connz?%s: %v", query, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /connz?%s: %s", query, resp.Status)
	}
	var p metrics.ConnzPage
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatalf("GET /connz?%s: %v", query, err)
	}
	return p
}

// The ringrelay process serves /connz beside /metrics, with several
// loops, on both backends.
func TestOpsConnz(t *testing.T) {
	for _, backend := range []string{"uring", "epoll"} {
		t.Run(backend, func(t *testing.T) {
			opsSkipWithoutUring(t, backend)
			p := servertest.Start(t, servertest.Options{Args: []string{"-backend=" + backend, "-loops=2", opsMetricsArg}})
			maddr := opsMetricsAddr(t, p)
			a, b := rawpeer.Dial(t, p.Addr, rawpeer.Bufs{}), rawpeer.Dial(t, p.Addr, rawpeer.Bufs{})
			const frames = 7
			for range frames {
				if err := a.Send(b.ID, []byte("hello")); err != nil {
					t.Fatal(err)
				}
			}
			for range frames {
				if _, err := b.Recv(30 * time.Second); err != nil {
					t.Fatal(err)
				}
			}
			opsWaitMetric(t, maddr, "the metrics page", opsPatience, func(opsMetrics) bool { return true })
			page := opsConnz(t, maddr, "sort=frames_out")
			if page.Total != 2 || len(page.Connections) != 2 {
				t.Fatalf("/connz: %d connections (%d listed), want 2", page.Total, len(page.Connections))
			}
			rb, ra := page.Connections[0], page.Connections[1]
			if rb.CID != b.ID || rb.FramesOut != frames || ra.CID != a.ID || ra.FramesIn != frames || ra.BytesIn != frames*10 {
				t.Errorf("/connz: %+v, %+v; want %d with %d frames out, then %d with %d frames (%d bytes) in",
					rb, ra, b.ID, frames, a.ID, frames, frames*10)
			}
			if ra.TLSVersion != "" || ra.TLSCipher != "" || rb.TLSVersion != "" {
				t.Errorf("/connz: plaintext connections with TLS fields: %+v, %+v", ra, rb)
			}
			if s := opsConnz(t, maddr, "summary=true").Summary; s.FramesIn != frames || s.FramesOut != frames || len(s.PerLoop) != 2 {
				t.Errorf("/connz summary: %+v", s)
			}
		})
	}
}

// BenchmarkOpsConnzPage fetches /connz with 10,000 connections (the whole
// list, as JSON) from a ringrelay process while four pairs play ping-pong,
// and reports the loops' slowest pass with and without the page: the
// page must not stall the loops. Pass times come from the process's
// ringrelay_loop_pass_seconds histogram, so a figure is the upper bound
// of the slowest bucket that gained a pass in that phase; longest-pass is
// the process's exact longest pass at the end (since start: accepting
// the 10,000 connections counts too).
//
//	go test -run '^$' -bench OpsConnzPage -benchtime 20x ./cmd/ringrelay/
func BenchmarkOpsConnzPage(b *testing.B) {
	for _, backend := range []string{"uring", "epoll"} {
		for _, loops := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/loops=%d", backend, loops), func(b *testing.B) { benchOpsConnzPage(b, backend, loops) })
		}
	}
}

func benchOpsConnzPage(b *testing.B, backend string, loops int) {
	const (
		idle  = 10000
		pairs = 4
		quiet = 3 * time.Second
	)
	if _, err := servertest.RaiseFileLimit(); err != nil {
		b.Logf("%v", err)
	}
	p := servertest.Start(b, servertest.Options{Args: []string{"-backend=" + backend, "-loops=" + strconv.Itoa(loops),
		"-max-conns=20000", opsMetricsArg}})
	maddr := opsMetricsAddr(b, p)
	for range idle {
		rawpeer.Dial(b, p.Addr, rawpeer.Bufs{})
	}
	var trips atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range pairs {
		x, y := rawpeer.Dial(b, p.Addr, rawpeer.Bufs{}), rawpeer.Dial(b, p.Addr, rawpeer.Bufs{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if x.Send(y.ID, []byte("ping")) != nil {
					return
				}
				if _, err := y.Recv(10 * time.Second); err != nil {
					return
				}
				if y.Send(x.ID, []byte("pong")) != nil {
					return
				}
				if _, err := x.Recv(10 * time.Second); err != nil {
					return
				}
				trips.Add(1)
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()

	// Three phases: quiet (no page), summary (the loops describe every
	// connection but the page is a few lines: the loops' share alone) and
	// full pages (the loops' share plus encoding 10,000 entries as JSON
	// in the same process, and decoding them here, on the same cores).
	h0, t0 := opsPassHist(b, maddr), trips.Load()
	time.Sleep(quiet)
	h1, t1 := opsPassHist(b, maddr), trips.Load()
	start := time.Now()
	for range b.N {
		if page := opsConnz(b, maddr, "summary=true"); page.Total != idle+2*pairs {
			b.Fatalf("/connz summary: %d connections, want %d", page.Total, idle+2*pairs)
		}
	}
	elSum := time.Since(start)
	h2, t2 := opsPassHist(b, maddr), trips.Load()
	start = time.Now()
	b.ResetTimer()
	hc := &http.Client{Timeout: 30 * time.Second}
	want := fmt.Sprintf(`"count": %d,`, idle+2*pairs)
	for range b.N {
		// Read, not decoded: the decoding would compete with the relay
		// for the same two cores. The page's count says it is whole.
		resp, err := hc.Get("http://" + maddr + "/connz?limit=100000")
		if err != nil {
			b.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Contains(body, []byte(want)) {
			b.Fatalf("/connz: %d bytes, %v; want %s", len(body), err, want)
		}
		b.SetBytes(int64(len(body)))
	}
	hc.CloseIdleConnections()
	b.StopTimer()
	el := time.Since(start)
	h3, t3 := opsPassHist(b, maddr), trips.Load()
	b.ReportMetric(opsSlowest(h0, h1).Seconds()*1e6, "max-pass-quiet-µs")
	b.ReportMetric(opsSlowest(h1, h2).Seconds()*1e6, "max-pass-summary-µs")
	b.ReportMetric(opsSlowest(h2, h3).Seconds()*1e6, "max-pass-pages-µs")
	b.ReportMetric(opsOver(h0, h1, time.Millisecond)/quiet.Seconds(), "passes>1ms/s-quiet")
	b.ReportMetric(opsOver(h1, h2, time.Millisecond)/elSum.Seconds(), "passes>1ms/s-summary")
	b.ReportMetric(opsOver(h2, h3, time.Millisecond)/el.Seconds(), "passes>1ms/s-pages")
	b.ReportMetric(float64(t1-t0)/quiet.Seconds(), "trips/s-quiet")
	b.ReportMetric(float64(t2-t1)/elSum.Seconds(), "trips/s-summary")
	b.ReportMetric(float64(t3-t2)/el.Seconds(), "trips/s-pages")
	b.ReportMetric(float64(elSum.Microseconds())/float64(b.N), "µs/summary")
	m := opsScrape(b, maddr)
	longest := 0.0
	for k := range loops {
		key := "ringrelay_loop_pass_longest_seconds"
		if loops > 1 {
			key += `{loop="` + strconv.Itoa(k) + `"}`
		}
		longest = max(longest, m.get(b, key))
	}
	b.ReportMetric(longest*1e6, "longest-pass-since-start-µs")
}

// opsPassHist reads the pass-time buckets (cumulative, summed over the
// loops) from the metrics page.
func opsPassHist(t testing.TB, maddr string) (h [len(relay.PassBounds) + 1]float64) {
	m := opsScrape(t, maddr)
	for i, bound := range relay.PassBounds {
		h[i] = m.get(t, `ringrelay_loop_pass_seconds_bucket{le="`+strconv.FormatFloat(bound.Seconds(), 'g', -1, 64)+`"}`)
	}
	h[len(relay.PassBounds)] = m.get(t, `ringrelay_loop_pass_seconds_bucket{le="+Inf"}`)
	return h
}

// opsOver is how many passes took longer than d between two cumulative
// histograms; d must be one of relay.PassBounds.
func opsOver(a, b [len(relay.PassBounds) + 1]float64, d time.Duration) float64 {
	i := 0
	for relay.PassBounds[i] != d {
		i++
	}
	last := len(relay.PassBounds)
	return (b[last] - b[i]) - (a[last] - a[i])
}

// opsSlowest is the upper bound of the slowest bucket that gained a pass
// between two cumulative histograms (a second for +Inf).
func opsSlowest(a, b [len(relay.PassBounds) + 1]float64) time.Duration {
	for i := len(b) - 1; i >= 0; i-- {
		below := func(h [len(relay.PassBounds) + 1]float64) float64 {
			if i == 0 {
				return 0
			}
			return h[i-1]
		}
		if b[i]-below(b) > a[i]-below(a) {
			if i == len(relay.PassBounds) {
				return time.Second
			}
			return relay.PassBounds[i]
		}
	}
	return 0
}

// A TLS connection shows its version and cipher suite on /connz; a
// plaintext page leaves them out.
func TestOpsConnzTLS(t *testing.T) {
	for _, backend := range opsBackends {
		t.Run(backend, func(t *testing.T) {
			opsSkipWithoutUring(t, backend)
			f := newTLSFiles(t)
			p := servertest.Start(t, servertest.Options{Args: []string{
				"-backend=" + backend, "-loops=2", opsMetricsArg,
				"-tls-cert=" + f.certFile, "-tls-key=" + f.keyFile,
			}})
			maddr := opsMetricsAddr(t, p)
			c, err := dialTLS(t, p.Addr, f.clientConfig(false))
			if err != nil {
				t.Fatalf("%v\nlog:\n%s", err, p.Logs())
			}
			suite := tls.CipherSuiteName(c.NetConn().(*tls.Conn).ConnectionState().CipherSuite)
			opsWaitMetric(t, maddr, "the metrics page", opsPatience, func(opsMetrics) bool { return true })
			var page metrics.ConnzPage
			servertest.WaitFor(t, "the TLS connection listed", 30*time.Second, func() bool {
				page = opsConnz(t, maddr, fmt.Sprintf("cid=%d", c.ID()))
				return page.Count == 1
			})
			got := page.Connections[0]
			if got.TLSVersion != "TLS 1.3" || got.TLSCipher != suite || got.ClientSubject != "" {
				t.Errorf("/connz: TLS %q %q %q, want TLS 1.3, %s and no client subject", got.TLSVersion, got.TLSCipher, got.ClientSubject, suite)
			}
			if page.Summary.TLS != 1 {
				t.Errorf("/connz summary: %d TLS connections, want 1", page.Summary.TLS)
			}
		})
	}
}
