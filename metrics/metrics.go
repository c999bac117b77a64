package metrics

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
)

// Loop is what one event loop publishes: the relay's counters and the
// reactor's. The Collector only loads them.
type Loop struct {
	Relay   *relay.Metrics
	Reactor *reactor.Stats
}

// Handler serves the registry NewRegistry builds, in the format the
// scraper asks for. A collector that fails (say /proc cannot be opened
// while descriptors run out) leaves out its own series only; the failure
// is counted in promhttp_metric_handler_errors_total.
func Handler(backend string, loops ...Loop) http.Handler {
	return handlerFor(NewRegistry(backend, loops...))
}

func handlerFor(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      reg,
	})
}

// NewRegistry returns a registry holding the relay's Collector and the
// standard Go runtime and process collectors. Callers may register more.
func NewRegistry(backend string, loops ...Loop) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		NewCollector(backend, loops),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// scope says how a family covers several loops.
type scope int

const (
	total   scope = iota // one series per label set, summed over the loops
	perLoop              // one series per loop, labelled loop="k" when there are several
)

// family is one counter or gauge family of the relay. It has at most one
// label of its own (besides loop); values lists that label's values and
// read returns one loop's value for values[i] (i is 0 when there is no
// label).
type family struct {
	name, help string
	kind       prometheus.ValueType
	scope      scope
	label      string
	values     []string
	read       func(l Loop, i int) float64
}

// families lists the relay's series except backend info and the
// completions-per-wait histogram, which the Collector builds itself.
var families = []family{
	{name: "ringrelay_connections_open", kind: prometheus.GaugeValue, scope: perLoop,
		help: "Connections currently open.",
		read: func(l Loop, _ int) float64 { return float64(max(l.Reactor.Open.Load(), 0)) }},
	{name: "ringrelay_connections_accepted_total", kind: prometheus.CounterValue, scope: total,
		help: "Connections accepted.",
		read: func(l Loop, _ int) float64 { return float64(l.Reactor.Accepted.Load()) }},
	{name: "ringrelay_connections_closed_total", kind: prometheus.CounterValue, scope: total,
		help:  "Connections closed, by reason.",
		label: "reason", values: names(relay.CloseReasons()),
		read: func(l Loop, i int) float64 { return float64(l.Relay.Closed[i].Load()) }},
	{name: "ringrelay_frames_relayed_total", kind: prometheus.CounterValue, scope: total,
		help: "Frames forwarded to a destination.",
		read: func(l Loop, _ int) float64 { return float64(l.Relay.FramesRelayed.Load()) }},
	{name: "ringrelay_bytes_relayed_total", kind: prometheus.CounterValue, scope: total,
		help: "Bytes forwarded to destinations (payload and NUL).",
		read: func(l Loop, _ int) float64 { return float64(l.Relay.BytesRelayed.Load()) }},
	{name: "ringrelay_frames_dropped_total", kind: prometheus.CounterValue, scope: total,
		help:  "Frames not delivered, by reason.",
		label: "reason", values: names(relay.DropReasons()),
		read: func(l Loop, i int) float64 { return float64(l.Relay.Dropped[i].Load()) }},
	{name: "ringrelay_backpressure_pauses_total", kind: prometheus.CounterValue, scope: perLoop,
		help: "Times a sender's reads were paused for a full destination.",
		read: func(l Loop, _ int) float64 { return float64(l.Relay.BackpressurePauses.Load()) }},
	{name: "ringrelay_pause_leases_lapsed_total", kind: prometheus.CounterValue, scope: total,
		help: "Pauses asked by another node that lapsed without a resume: the resume was lost, or that node is gone (cluster only).",
		read: func(l Loop, _ int) float64 { return float64(l.Relay.PauseLeasesLapsed.Load()) }},
	{name: "ringrelay_client_buffer_bytes", kind: prometheus.GaugeValue, scope: total,
		help: "Bytes held in client buffers (partial frames, queued output) at the loops' last count for -max-memory; 0 with it off.",
		read: func(l Loop, _ int) float64 { return float64(l.Relay.ClientBuffered.Load()) }},
	{name: "ringrelay_loop_frames_received_total", kind: prometheus.CounterValue, scope: perLoop,
		help: "Complete frames read from the loop's connections, wherever they go.",
		read: func(l Loop, _ int) float64 { return float64(l.Relay.FramesReceived.Load()) }},
	{name: "ringrelay_loop_frames_sent_total", kind: prometheus.CounterValue, scope: perLoop,
		help: "Frames queued to the loop's connections, wherever they came from.",
		read: func(l Loop, _ int) float64 { return float64(l.Relay.FramesRelayed.Load()) }},
	{name: "ringrelay_cross_loop_frames_total", kind: prometheus.CounterValue, scope: perLoop,
		help:  "Frames handed to another loop (out) and taken from other loops (in); 0 with one loop.",
		label: "direction", values: []string{"out", "in"},
		read: func(l Loop, i int) float64 {
			if i == 0 {
				return float64(l.Relay.CrossOut.Load())
			}
			return float64(l.Relay.CrossIn.Load())
		}},
	{name: "ringrelay_doorbells_total", kind: prometheus.CounterValue, scope: perLoop,
		help:  "Doorbells the loop rang to wake a sleeping loop, by route: an io_uring MSG_RING message, or the target's eventfd.",
		label: "route", values: []string{"msg_ring", "eventfd"},
		read: func(l Loop, i int) float64 {
			if i == 0 {
				return float64(l.Reactor.RingsMsgRing.Load())
			}
			return float64(l.Reactor.RingsEventfd.Load())
		}},
	{name: "ringrelay_recv_buffer_exhausted_total", kind: prometheus.CounterValue, scope: total,
		help: "Receives that found every buffer lent out (ENOBUFS, io_uring only).",
		read: func(l Loop, _ int) float64 { return float64(l.Reactor.NoBuffers.Load()) }},
	{name: "ringrelay_accept_fd_exhausted_total", kind: prometheus.CounterValue, scope: total,
		help: "Accepts that failed for lack of descriptors or kernel memory (EMFILE, ENFILE, ENOBUFS, ENOMEM).",
		read: func(l Loop, _ int) float64 { return float64(l.Reactor.AcceptFails.Load()) }},
}

const (
	batchName  = "ringrelay_loop_completions_per_wait"
	batchHelp  = "Completions (io_uring) or ready descriptors (epoll) handled per wait."
	batchScope = perLoop

	passName    = "ringrelay_loop_pass_seconds"
	passHelp    = "How long the loop's passes take, from a wait's return to the next wait: a long one delays every connection of the loop."
	longestName = "ringrelay_loop_pass_longest_seconds"
	longestHelp = "The loop's longest pass since it started."
)

func names[R interface{ String() string }](rs []R) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}

// group is the loops one series sums, and the loop label value that
// goes with it (none for a total, or when there is only one loop).
type group struct {
	loops []Loop
	loop  []string
}

// Collector is a prometheus.Collector over the atomics of one or more
// event loops. It loads them at each Collect and keeps nothing.
type Collector struct {
	groups [2][]group // by scope
	info   *prometheus.Desc
	descs  []*prometheus.Desc // parallel to families
	batch  *prometheus.Desc
	pass   *prometheus.Desc
	// longest is the longest pass of each loop since it started.
	longest *prometheus.Desc
}

// NewCollector returns a Collector over loops, which must not be empty;
// backend names the I/O backend for ringrelay_backend_info.
func NewCollector(backend string, loops []Loop) *Collector {
	if len(loops) == 0 {
		panic("metrics: NewCollector needs at least one loop")
	}
	c := &Collector{
		info: prometheus.NewDesc("ringrelay_backend_info", "I/O backend in use (value is always 1).",
			nil, prometheus.Labels{"backend": backend}),
	}
	c.groups[total] = []group{{loops: loops}}
	c.groups[perLoop] = c.groups[total]
	if len(loops) > 1 {
		c.groups[perLoop] = make([]group, len(loops))
		for k := range loops {
			c.groups[perLoop][k] = group{loops: loops[k : k+1], loop: []string{strconv.Itoa(k)}}
		}
	}
	for _, f := range families {
		c.descs = append(c.descs, prometheus.NewDesc(f.name, f.help, c.labels(f.scope, f.label), nil))
	}
	c.batch = prometheus.NewDesc(batchName, batchHelp, c.labels(batchScope, ""), nil)
	c.pass = prometheus.NewDesc(passName, passHelp, c.labels(perLoop, ""), nil)
	c.longest = prometheus.NewDesc(longestName, longestHelp, c.labels(perLoop, ""), nil)
	return c
}

// labels returns the variable label names of a family in scope s whose
// own label is own (or ""): loop first when the scope splits by loop.
func (c *Collector) labels(s scope, own string) []string {
	var out []string
	if len(c.groups[s][0].loop) > 0 {
		out = append(out, "loop")
	}
	if own != "" {
		out = append(out, own)
	}
	return out
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.info
	for _, d := range c.descs {
		ch <- d
	}
	ch <- c.batch
	ch <- c.pass
	ch <- c.longest
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1)
	for k, f := range families {
		for _, g := range c.groups[f.scope] {
			for i := range max(len(f.values), 1) {
				var v float64
				for _, l := range g.loops {
					v += f.read(l, i)
				}
				lv := g.loop
				if f.label != "" {
					lv = append(lv[:len(lv):len(lv)], f.values[i])
				}
				ch <- prometheus.MustNewConstMetric(c.descs[k], f.kind, v, lv...)
			}
		}
	}
	for _, g := range c.groups[batchScope] {
		ch <- batchHistogram(c.batch, g)
	}
	for _, g := range c.groups[perLoop] {
		ch <- passHistogram(c.pass, g)
		var longest int64
		for _, l := range g.loops {
			longest = max(longest, l.Relay.Passes.Longest.Load())
		}
		ch <- prometheus.MustNewConstMetric(c.longest, prometheus.GaugeValue, float64(longest)/1e9, g.loop...)
	}
}

// batchHistogram turns the loops' BatchSizes buckets (each counting the
// waits that fell in it alone) into a cumulative histogram. Its count is
// its +Inf bucket, so the two always agree; the sum is the completions
// handled.
func batchHistogram(d *prometheus.Desc, g group) prometheus.Metric {
	var own [len(reactor.BatchBounds) + 1]uint64
	var sum uint64
	for _, l := range g.loops {
		for i := range own {
			own[i] += l.Reactor.BatchSizes[i].Load()
		}
		sum += l.Reactor.Completions.Load()
	}
	buckets := make(map[float64]uint64, len(reactor.BatchBounds))
	var cum uint64
	for i, bound := range reactor.BatchBounds {
		cum += own[i]
		buckets[float64(bound)] = cum
	}
	cum += own[len(reactor.BatchBounds)]
	return prometheus.MustNewConstHistogram(d, cum, float64(sum), buckets, g.loop...)
}

// passHistogram turns the loops' pass-time buckets into a cumulative
// histogram in seconds, the way batchHistogram does.
func passHistogram(d *prometheus.Desc, g group) prometheus.Metric {
	var own [len(relay.PassBounds) + 1]uint64
	var sum uint64
	for _, l := range g.loops {
		for i := range own {
			own[i] += l.Relay.Passes.Buckets[i].Load()
		}
		sum += l.Relay.Passes.Sum.Load()
	}
	buckets := make(map[float64]uint64, len(relay.PassBounds))
	var cum uint64
	for i, bound := range relay.PassBounds {
		cum += own[i]
		buckets[bound.Seconds()] = cum
	}
	cum += own[len(relay.PassBounds)]
	return prometheus.MustNewConstHistogram(d, cum, float64(sum)/1e9, buckets, g.loop...)
}
