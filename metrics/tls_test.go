package metrics

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringrelay/ringrelay/tlshandshake"
)

// TestTLSCollector serves a fixed Snapshot and checks every series a
// scrape shows for it.
func TestTLSCollector(t *testing.T) {
	bounds := tlshandshake.DurationBuckets()
	snap := tlshandshake.Snapshot{
		InProgress:     3,
		Peak:           5,
		DurationCounts: make([]uint64, len(bounds)+1),
		DurationSum:    1.5,
		CertNotAfter:   time.Unix(1_900_000_000, 0),
		ReloadsOK:      2,
		ReloadsFailed:  1,
	}
	snap.Handshakes[tlshandshake.OK] = 10
	snap.Handshakes[tlshandshake.NotTLS] = 4
	snap.Handshakes[tlshandshake.Timeout] = 1
	snap.DurationCounts[0] = 6           // <= first bound
	snap.DurationCounts[2] = 3           // <= third bound
	snap.DurationCounts[len(bounds)] = 1 // over every bound
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewTLSCollector(func() tlshandshake.Snapshot { return snap }))
	srv := httptest.NewServer(HandlerFor(reg))
	defer srv.Close()
	p := scrape(t, srv.URL, "")

	le := func(i int) string {
		return `ringrelay_tls_handshake_duration_seconds_bucket{le="` + fmtFloat(bounds[i]) + `"}`
	}
	want := map[string]float64{
		`ringrelay_tls_handshakes_total{result="ok"}`:              10,
		`ringrelay_tls_handshakes_total{result="not_tls"}`:         4,
		`ringrelay_tls_handshakes_total{result="timeout"}`:         1,
		`ringrelay_tls_handshakes_total{result="old_version"}`:     0,
		`ringrelay_tls_handshakes_total{result="no_client_cert"}`:  0,
		`ringrelay_tls_handshakes_total{result="bad_client_cert"}`: 0,
		`ringrelay_tls_handshakes_total{result="peer_closed"}`:     0,
		`ringrelay_tls_handshakes_total{result="other"}`:           0,
		le(0):               6,
		le(1):               6,
		le(2):               9,
		le(len(bounds) - 1): 9,
		`ringrelay_tls_handshake_duration_seconds_bucket{le="+Inf"}`: 10,
		"ringrelay_tls_handshake_duration_seconds_count":             10,
		"ringrelay_tls_handshake_duration_seconds_sum":               1.5,
		"ringrelay_tls_handshakes_in_progress":                       3,
		"ringrelay_tls_certificate_expiry_timestamp_seconds":         1_900_000_000,
		`ringrelay_tls_certificate_reloads_total{result="ok"}`:       2,
		`ringrelay_tls_certificate_reloads_total{result="failed"}`:   1,
	}
	p.expect(t, want, map[string]string{
		"ringrelay_tls_handshakes_total": "COUNTER", "ringrelay_tls_handshake_duration_seconds": "HISTOGRAM",
		"ringrelay_tls_handshakes_in_progress": "GAUGE", "ringrelay_tls_certificate_expiry_timestamp_seconds": "GAUGE",
		"ringrelay_tls_certificate_reloads_total": "COUNTER",
	})
}
