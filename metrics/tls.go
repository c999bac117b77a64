package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringrelay/ringrelay/tlshandshake"
)

// TLSCollector exports the TLS handshake pool's counters
// (tlshandshake.Snapshot): handshakes by result, the duration of the
// successful ones, those in progress, the certificate's expiry (operators
// alert on it) and certificate reloads by result. It reads one Snapshot
// per Collect and keeps nothing; register it when TLS is on. Connections
// open over TLS are the loops' business, not the handshake pool's.
type TLSCollector struct {
	snapshot func() tlshandshake.Snapshot

	handshakes, duration, inProgress, expiry, reloads *prometheus.Desc
}

// NewTLSCollector returns a collector over snapshot, usually a running
// Pool's Snapshot method.
func NewTLSCollector(snapshot func() tlshandshake.Snapshot) *TLSCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("ringrelay_tls_"+name, help, labels, nil)
	}
	return &TLSCollector{
		snapshot:   snapshot,
		handshakes: d("handshakes_total", "TLS handshakes finished, by result (ok, or why the connection was refused).", "result"),
		duration:   d("handshake_duration_seconds", "Duration of successful TLS handshakes, from a worker taking the socket to the client's Finished."),
		inProgress: d("handshakes_in_progress", "TLS handshakes running now (bounded by the handshake limit)."),
		expiry:     d("certificate_expiry_timestamp_seconds", "When the certificate new handshakes present expires, in Unix seconds."),
		reloads:    d("certificate_reloads_total", "Certificate reloads (SIGHUP), by result: ok, or failed (the old certificate stays).", "result"),
	}
}

// Describe implements prometheus.Collector.
func (c *TLSCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.handshakes, c.duration, c.inProgress, c.expiry, c.reloads} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *TLSCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.snapshot()
	for r := range tlshandshake.NumResults {
		ch <- prometheus.MustNewConstMetric(c.handshakes, prometheus.CounterValue, float64(s.Handshakes[r]), r.String())
	}
	bounds := tlshandshake.DurationBuckets()
	buckets := make(map[float64]uint64, len(bounds))
	var cum uint64
	for i, b := range bounds {
		cum += s.DurationCounts[i]
		buckets[b] = cum
	}
	cum += s.DurationCounts[len(bounds)] // over every bound: only in the count (+Inf)
	ch <- prometheus.MustNewConstHistogram(c.duration, cum, s.DurationSum, buckets)
	ch <- prometheus.MustNewConstMetric(c.inProgress, prometheus.GaugeValue, float64(s.InProgress))
	ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, float64(s.CertNotAfter.Unix()))
	ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(s.ReloadsOK), "ok")
	ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(s.ReloadsFailed), "failed")
}
