package metrics

import (
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringrelay/ringrelay/cluster"
)

// TestClusterCollector serves a fixed Snapshot and checks every series a
// scrape shows for it, by name and labels.
func TestClusterCollector(t *testing.T) {
	snap := cluster.Snapshot{
		Node: 1, BusConnected: true, Serving: true, Disconnects: 2,
		BatchesOut: 10, BatchBytesOut: 5000, BatchFramesOut: 40, BatchMaxBytes: 900,
		BatchesIn: 7, SlowConsumer: 3, BadAnnouncements: 1,
		Peers: []cluster.PeerSnapshot{
			{Node: 0, Up: true, FramesOut: 30, BytesOut: 3000, FramesIn: 20, BytesIn: 2000},
			{Node: 1}, // this node: only ever shows drops (wiring errors)
			{Node: 2, Up: false, FramesOut: 10, BytesOut: 1000},
		},
	}
	snap.Rejected[cluster.RejectTruncated] = 4
	snap.Peers[0].Drops[cluster.DropSinkFull] = 5
	snap.Peers[1].Drops[cluster.DropLocal] = 1
	snap.Peers[2].Drops[cluster.DropNodeDown] = 6
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewClusterCollector(func() cluster.Snapshot { return snap }))
	srv := httptest.NewServer(HandlerFor(reg))
	defer srv.Close()
	p := scrape(t, srv.URL, "")

	want := map[string]float64{
		"ringrelay_cluster_bus_connected":                                     1,
		"ringrelay_cluster_serving":                                           1,
		"ringrelay_cluster_bus_disconnects_total":                             2,
		"ringrelay_cluster_batches_published_total":                           10,
		"ringrelay_cluster_batch_bytes_published_total":                       5000,
		"ringrelay_cluster_batch_frames_published_total":                      40,
		"ringrelay_cluster_batch_max_bytes":                                   900,
		"ringrelay_cluster_batches_received_total":                            7,
		`ringrelay_cluster_batches_rejected_total{reason="truncated"}`:        4,
		`ringrelay_cluster_batches_rejected_total{reason="wrong_node"}`:       0,
		"ringrelay_cluster_slow_consumer_batches_total":                       3,
		"ringrelay_cluster_bad_announcements_total":                           1,
		`ringrelay_cluster_node_up{node="0"}`:                                 1,
		`ringrelay_cluster_node_up{node="2"}`:                                 0,
		`ringrelay_cluster_frames_out_total{node="0"}`:                        30,
		`ringrelay_cluster_bytes_out_total{node="0"}`:                         3000,
		`ringrelay_cluster_frames_in_total{node="0"}`:                         20,
		`ringrelay_cluster_bytes_in_total{node="0"}`:                          2000,
		`ringrelay_cluster_frames_out_total{node="2"}`:                        10,
		`ringrelay_cluster_frames_dropped_total{node="0",reason="sink_full"}`: 5,
		`ringrelay_cluster_frames_dropped_total{node="1",reason="local"}`:     1,
		`ringrelay_cluster_frames_dropped_total{node="2",reason="node_down"}`: 6,
		`ringrelay_cluster_frames_dropped_total{node="2",reason="bus_down"}`:  0,
	}
	if _, ok := p.value[`ringrelay_cluster_node_up{node="1"}`]; ok {
		t.Errorf("the node lists itself as a peer")
	}
	p.expect(t, want, map[string]string{
		"ringrelay_cluster_bus_connected": "GAUGE", "ringrelay_cluster_frames_out_total": "COUNTER",
		"ringrelay_cluster_frames_dropped_total": "COUNTER", "ringrelay_cluster_batch_max_bytes": "GAUGE",
	})
}
