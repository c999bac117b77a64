package metrics

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringrelay/ringrelay/cluster"
)

// ClusterCollector exports a cluster bridge's counters (cluster.Snapshot):
// the bus connection, the batches published and received, and per peer
// node whether it is up, the frames and bytes that went to it and came
// from it, and the frames dropped on their way, by reason. It reads one
// Snapshot per Collect and keeps nothing; register it when -cluster is set.
type ClusterCollector struct {
	snapshot func() cluster.Snapshot

	busUp, serving, disconnects                  *prometheus.Desc
	batchesOut, batchBytesOut, batchFramesOut    *prometheus.Desc
	batchMax, batchesIn, rejected, slowConsumer  *prometheus.Desc
	badAnnouncements, control                    *prometheus.Desc
	peerUp, framesOut, bytesOut, framesIn, bytes *prometheus.Desc
	dropped                                      *prometheus.Desc
}

// NewClusterCollector returns a collector over snapshot, which is usually
// a running Bridge's Snapshot method.
func NewClusterCollector(snapshot func() cluster.Snapshot) *ClusterCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("ringrelay_cluster_"+name, help, labels, nil)
	}
	return &ClusterCollector{
		snapshot:         snapshot,
		busUp:            d("bus_connected", "1 while the connection to NATS is up."),
		serving:          d("serving", "1 while this node serves; 0 once another process was found serving the same -node."),
		disconnects:      d("bus_disconnects_total", "Times the NATS connection was lost."),
		batchesOut:       d("batches_published_total", "Batches published to other nodes."),
		batchBytesOut:    d("batch_bytes_published_total", "Bytes of the batches published, headers included."),
		batchFramesOut:   d("batch_frames_published_total", "Frames in the batches published."),
		batchMax:         d("batch_max_bytes", "Largest batch published, in bytes."),
		batchesIn:        d("batches_received_total", "Batches received from other nodes and decoded whole."),
		rejected:         d("batches_rejected_total", "Batches received and dropped whole, by reason.", "reason"),
		slowConsumer:     d("slow_consumer_batches_total", "Batches the NATS client dropped over the subscription's pending limits."),
		badAnnouncements: d("bad_announcements_total", "Node announcements that did not decode."),
		control:          d("control_records_total", "Backpressure pause and resume records: sent to the other nodes (out), handed to this node's loops (in, once per loop), dropped (bus down, inbox full), and in malformed messages (rejected).", "outcome"),
		peerUp:           d("node_up", "1 while the peer node is up as far as this node knows.", "node"),
		framesOut:        d("frames_out_total", "Frames published to the peer node.", "node"),
		bytesOut:         d("bytes_out_total", "Payload bytes (NUL included) published to the peer node.", "node"),
		framesIn:         d("frames_in_total", "Frames received from the peer node and handed to a loop.", "node"),
		bytes:            d("bytes_in_total", "Payload bytes (NUL included) received from the peer node.", "node"),
		dropped:          d("frames_dropped_total", "Frames to or from the peer node dropped on their way, by reason.", "node", "reason"),
	}
}

// Describe implements prometheus.Collector.
func (c *ClusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.busUp, c.serving, c.disconnects, c.batchesOut, c.batchBytesOut, c.batchFramesOut,
		c.batchMax, c.batchesIn, c.rejected, c.slowConsumer, c.badAnnouncements, c.control,
		c.peerUp, c.framesOut, c.bytesOut, c.framesIn, c.bytes, c.dropped,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *ClusterCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.snapshot()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.busUp, boolValue(s.BusConnected))
	gauge(c.serving, boolValue(s.Serving))
	counter(c.disconnects, s.Disconnects)
	counter(c.batchesOut, s.BatchesOut)
	counter(c.batchBytesOut, s.BatchBytesOut)
	counter(c.batchFramesOut, s.BatchFramesOut)
	gauge(c.batchMax, float64(s.BatchMaxBytes))
	counter(c.batchesIn, s.BatchesIn)
	for r := range cluster.NumRejects {
		counter(c.rejected, s.Rejected[r], r.String())
	}
	counter(c.slowConsumer, s.SlowConsumer)
	counter(c.badAnnouncements, s.BadAnnouncements)
	counter(c.control, s.ControlOut, "out")
	counter(c.control, s.ControlIn, "in")
	counter(c.control, s.ControlDropped, "dropped")
	counter(c.control, s.ControlRejected, "rejected")
	for _, p := range s.Peers {
		if p.Node == s.Node {
			continue // frames a wiring error sent to itself: counted under drops below
		}
		node := strconv.Itoa(p.Node)
		gauge(c.peerUp, boolValue(p.Up), node)
		counter(c.framesOut, p.FramesOut, node)
		counter(c.bytesOut, p.BytesOut, node)
		counter(c.framesIn, p.FramesIn, node)
		counter(c.bytes, p.BytesIn, node)
	}
	for _, p := range s.Peers {
		node := strconv.Itoa(p.Node)
		for d := range cluster.NumDrops {
			counter(c.dropped, p.Drops[d], node, d.String())
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// HandlerFor serves reg (NewRegistry's, with more collectors registered,
// such as a ClusterCollector) the way Handler serves its own.
func HandlerFor(reg *prometheus.Registry) http.Handler { return handlerFor(reg) }
