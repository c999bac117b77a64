package metrics

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
)

// page is one scrape, decoded: every sample keyed as the text format
// writes it, name{label="value",...} with labels sorted by name, and the
// type of each family.
type page struct {
	contentType string
	value       map[string]float64
	typ         map[string]dto.MetricType
}

// expect checks that the page has each sample of want at its value, and
// each family of types with that type (COUNTER, GAUGE, HISTOGRAM...).
func (p page) expect(t *testing.T, want map[string]float64, types map[string]string) {
	t.Helper()
	for key, v := range want {
		got, ok := p.value[key]
		switch {
		case !ok:
			t.Errorf("no sample %s", key)
		case got != v:
			t.Errorf("%s = %v, want %v", key, got, v)
		}
	}
	for name, typ := range types {
		if got := p.typ[name].String(); got != typ {
			t.Errorf("%s has type %s, want %s", name, got, typ)
		}
	}
}

// scrape GETs url over HTTP with the given Accept header ("" sends none)
// and decodes the answer in whatever format the server chose.
func scrape(t *testing.T, url, accept string) page {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	p := page{contentType: resp.Header.Get("Content-Type"), value: map[string]float64{}, typ: map[string]dto.MetricType{}}
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	for {
		var mf dto.MetricFamily
		err := dec.Decode(&mf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decode %s: %v", p.contentType, err)
		}
		name := mf.GetName()
		if _, dup := p.typ[name]; dup {
			t.Fatalf("family %s appears twice", name)
		}
		p.typ[name] = mf.GetType()
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				p.add(t, name, labels, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				p.add(t, name, labels, m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				p.add(t, name, labels, m.GetUntyped().GetValue())
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				for _, q := range s.GetQuantile() {
					p.add(t, name, with(labels, "quantile", fmtFloat(q.GetQuantile())), q.GetValue())
				}
				p.add(t, name+"_sum", labels, s.GetSampleSum())
				p.add(t, name+"_count", labels, float64(s.GetSampleCount()))
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					p.add(t, name+"_bucket", with(labels, "le", fmtFloat(b.GetUpperBound())), float64(b.GetCumulativeCount()))
				}
				p.add(t, name+"_sum", labels, h.GetSampleSum())
				p.add(t, name+"_count", labels, float64(h.GetSampleCount()))
			default:
				t.Fatalf("family %s has unexpected type %v", name, mf.GetType())
			}
		}
	}
	return p
}

func with(labels map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for n, x := range labels {
		out[n] = x
	}
	return out
}

func fmtFloat(f float64) string {
	if math.IsInf(f, +1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func (p page) add(t *testing.T, name string, labels map[string]string, v float64) {
	t.Helper()
	key := name
	if len(labels) > 0 {
		var parts []string
		for n, x := range labels {
			parts = append(parts, fmt.Sprintf("%s=%q", n, x))
		}
		sort.Strings(parts)
		key += "{" + strings.Join(parts, ",") + "}"
	}
	if _, dup := p.value[key]; dup {
		t.Fatalf("sample %s appears twice", key)
	}
	p.value[key] = v
}

// check compares the samples named in want with the page.
func (p page) check(t *testing.T, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		g, ok := p.value[k]
		if !ok {
			t.Errorf("%s: no sample %s", p.contentType, k)
			continue
		}
		if g != v {
			t.Errorf("%s: %s = %v, want %v", p.contentType, k, g, v)
		}
	}
}

// serve starts a real HTTP server for Handler over loops and returns its
// /metrics URL.
func serve(t *testing.T, backend string, loops ...Loop) string {
	t.Helper()
	srv := httptest.NewServer(Handler(backend, loops...))
	t.Cleanup(srv.Close)
	return srv.URL + "/metrics"
}

// fill gives every atomic of one loop a distinct value, so that a series
// reading the wrong atomic shows. Its waits returned 1, 3, 3 and 1000
// completions.
func fill(base uint64) Loop {
	l := Loop{Relay: new(relay.Metrics), Reactor: new(reactor.Stats)}
	l.Relay.FramesRelayed.Store(base + 7)
	l.Relay.BytesRelayed.Store(base + 700)
	l.Relay.BackpressurePauses.Store(base + 11)
	l.Relay.FramesReceived.Store(base + 21)
	l.Relay.CrossOut.Store(base + 23)
	l.Relay.CrossIn.Store(base + 25)
	l.Reactor.RingsMsgRing.Store(base + 27)
	l.Reactor.RingsEventfd.Store(base + 29)
	for i := range l.Relay.Closed {
		l.Relay.Closed[i].Store(base + 100 + uint64(i))
	}
	for i := range l.Relay.Dropped {
		l.Relay.Dropped[i].Store(base + 200 + uint64(i))
	}
	l.Reactor.Open.Store(int64(base) + 5)
	l.Reactor.Accepted.Store(base + 9)
	l.Reactor.Closed.Store(base + 4)
	l.Reactor.NoBuffers.Store(base + 13)
	l.Reactor.AcceptFails.Store(base + 17)
	l.Reactor.Iterations.Store(base + 999) // not exported: the histogram's count replaces it
	l.Reactor.BatchSizes[0].Store(1)
	l.Reactor.BatchSizes[2].Store(2)
	l.Reactor.BatchSizes[len(reactor.BatchBounds)].Store(1)
	l.Reactor.Completions.Store(1007)
	l.Relay.Passes.Buckets[0].Store(base + 3)                     // <= 10 µs
	l.Relay.Passes.Buckets[len(relay.PassBounds)].Store(base + 1) // over 100 ms
	l.Relay.Passes.Sum.Store((base + 250) * 1e6)                  // ns
	l.Relay.Passes.Longest.Store(int64(base+200) * 1e6)
	return l
}

const protobuf = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"

func TestOneLoop(t *testing.T) {
	url := serve(t, "uring", fill(0))
	want := map[string]float64{
		`ringrelay_backend_info{backend="uring"}`:                      1,
		`ringrelay_connections_open`:                                   5,
		`ringrelay_connections_accepted_total`:                         9,
		`ringrelay_frames_relayed_total`:                               7,
		`ringrelay_bytes_relayed_total`:                                700,
		`ringrelay_backpressure_pauses_total`:                          11,
		`ringrelay_recv_buffer_exhausted_total`:                        13,
		`ringrelay_accept_fd_exhausted_total`:                          17,
		`ringrelay_connections_closed_total{reason="peer"}`:            100,
		`ringrelay_connections_closed_total{reason="slow_consumer"}`:   103,
		`ringrelay_connections_closed_total{reason="shutdown"}`:        107,
		`ringrelay_frames_dropped_total{reason="unknown_destination"}`: 200,
		`ringrelay_frames_dropped_total{reason="oversize"}`:            202,
		`ringrelay_loop_completions_per_wait_bucket{le="1"}`:           1,
		`ringrelay_loop_completions_per_wait_bucket{le="2"}`:           1,
		`ringrelay_loop_completions_per_wait_bucket{le="4"}`:           3,
		`ringrelay_loop_completions_per_wait_bucket{le="512"}`:         3,
		`ringrelay_loop_completions_per_wait_count`:                    4,
		`ringrelay_loop_completions_per_wait_sum`:                      1007,
	}
	types := map[string]dto.MetricType{
		"ringrelay_backend_info":                dto.MetricType_GAUGE,
		"ringrelay_connections_open":            dto.MetricType_GAUGE,
		"ringrelay_connections_accepted_total":  dto.MetricType_COUNTER,
		"ringrelay_connections_closed_total":    dto.MetricType_COUNTER,
		"ringrelay_frames_relayed_total":        dto.MetricType_COUNTER,
		"ringrelay_bytes_relayed_total":         dto.MetricType_COUNTER,
		"ringrelay_frames_dropped_total":        dto.MetricType_COUNTER,
		"ringrelay_backpressure_pauses_total":   dto.MetricType_COUNTER,
		"ringrelay_recv_buffer_exhausted_total": dto.MetricType_COUNTER,
		"ringrelay_accept_fd_exhausted_total":   dto.MetricType_COUNTER,
		"ringrelay_loop_completions_per_wait":   dto.MetricType_HISTOGRAM,
	}

	// The text format, as a scraper that sends no Accept header gets it,
	// and the protobuf format, as Prometheus asks for it.
	text := scrape(t, url, "")
	if !strings.HasPrefix(text.contentType, "text/plain; version=0.0.4") {
		t.Errorf("no Accept header: Content-Type %q, want the text format", text.contentType)
	}
	proto := scrape(t, url, protobuf)
	if !strings.HasPrefix(proto.contentType, "application/vnd.google.protobuf") {
		t.Errorf("Accept protobuf: Content-Type %q", proto.contentType)
	}
	// The text format writes the +Inf bucket; protobuf leaves it to the count.
	text.check(t, map[string]float64{`ringrelay_loop_completions_per_wait_bucket{le="+Inf"}`: 4})

	for _, p := range []page{text, proto} {
		p.check(t, want)
		for name, typ := range types {
			if p.typ[name] != typ {
				t.Errorf("%s: %s has type %v, want %v", p.contentType, name, p.typ[name], typ)
			}
		}
		// Every close and drop reason is exported, even at zero.
		for _, r := range relay.CloseReasons() {
			if _, ok := p.value[`ringrelay_connections_closed_total{reason="`+r.String()+`"}`]; !ok {
				t.Errorf("%s: close reason %s not exported", p.contentType, r)
			}
		}
		for _, r := range relay.DropReasons() {
			if _, ok := p.value[`ringrelay_frames_dropped_total{reason="`+r.String()+`"}`]; !ok {
				t.Errorf("%s: drop reason %s not exported", p.contentType, r)
			}
		}
		if _, ok := p.typ["ringrelay_loop_iterations_total"]; ok {
			t.Errorf("%s: ringrelay_loop_iterations_total is still exported", p.contentType)
		}
		// One loop: no series carries a loop label.
		for k := range p.value {
			if strings.Contains(k, `loop="`) {
				t.Errorf("%s: %s has a loop label with a single loop", p.contentType, k)
			}
		}
		// The standard collectors: this process has memory, descriptors
		// (the test server's listener) and goroutines.
		for _, k := range []string{"process_resident_memory_bytes", "process_open_fds", "process_max_fds",
			"process_start_time_seconds", "go_goroutines", "go_threads", "go_memstats_heap_alloc_bytes"} {
			if p.value[k] <= 0 {
				t.Errorf("%s: %s = %v, want a positive value", p.contentType, k, p.value[k])
			}
		}
		// These may still be zero this early in a test binary's life.
		for _, f := range []string{"process_cpu_seconds_total", "go_gc_duration_seconds"} {
			if _, ok := p.typ[f]; !ok {
				t.Errorf("%s: no %s", p.contentType, f)
			}
		}
	}
}

// A change in an atomic shows at the next scrape: nothing is cached.
func TestScrapeReadsAtomicsEachTime(t *testing.T) {
	l := fill(0)
	url := serve(t, "epoll", l)
	scrape(t, url, "").check(t, map[string]float64{`ringrelay_frames_relayed_total`: 7, `ringrelay_backend_info{backend="epoll"}`: 1})
	l.Relay.FramesRelayed.Add(5)
	l.Reactor.Open.Store(-1) // shown as 0: a gauge of open connections is never negative
	l.Reactor.BatchSizes[1].Add(3)
	l.Reactor.Completions.Add(6)
	scrape(t, url, "").check(t, map[string]float64{
		`ringrelay_frames_relayed_total`:                     12,
		`ringrelay_connections_open`:                         0,
		`ringrelay_loop_completions_per_wait_bucket{le="1"}`: 1,
		`ringrelay_loop_completions_per_wait_bucket{le="2"}`: 4,
		`ringrelay_loop_completions_per_wait_bucket{le="4"}`: 6,
		`ringrelay_loop_completions_per_wait_count`:          7,
		`ringrelay_loop_completions_per_wait_sum`:            1013,
	})
}

func TestSeveralLoops(t *testing.T) {
	a, b := fill(0), fill(1000)
	b.Reactor.BatchSizes[len(reactor.BatchBounds)].Store(0) // b never had a wait over 512
	b.Reactor.Completions.Store(7)
	p := scrape(t, serve(t, "uring", a, b), "")
	p.check(t, map[string]float64{
		// Per-loop series, one per loop.
		`ringrelay_connections_open{loop="0"}`:                           5,
		`ringrelay_connections_open{loop="1"}`:                           1005,
		`ringrelay_backpressure_pauses_total{loop="0"}`:                  11,
		`ringrelay_backpressure_pauses_total{loop="1"}`:                  1011,
		`ringrelay_loop_completions_per_wait_bucket{le="4",loop="0"}`:    3,
		`ringrelay_loop_completions_per_wait_bucket{le="+Inf",loop="0"}`: 4,
		`ringrelay_loop_completions_per_wait_bucket{le="+Inf",loop="1"}`: 3,
		`ringrelay_loop_completions_per_wait_count{loop="0"}`:            4,
		`ringrelay_loop_completions_per_wait_count{loop="1"}`:            3,
		`ringrelay_loop_completions_per_wait_sum{loop="1"}`:              7,
		`ringrelay_loop_pass_seconds_bucket{le="1e-05",loop="0"}`:        3,
		`ringrelay_loop_pass_seconds_bucket{le="0.1",loop="1"}`:          1003,
		`ringrelay_loop_pass_seconds_count{loop="1"}`:                    2004,
		`ringrelay_loop_pass_seconds_sum{loop="0"}`:                      0.25,
		`ringrelay_loop_pass_longest_seconds{loop="0"}`:                  0.2,
		`ringrelay_loop_pass_longest_seconds{loop="1"}`:                  1.2,
		`ringrelay_loop_frames_received_total{loop="0"}`:                 21,
		`ringrelay_loop_frames_sent_total{loop="1"}`:                     1007,
		`ringrelay_cross_loop_frames_total{direction="out",loop="0"}`:    23,
		`ringrelay_cross_loop_frames_total{direction="in",loop="1"}`:     1025,
		`ringrelay_doorbells_total{loop="0",route="msg_ring"}`:           27,
		`ringrelay_doorbells_total{loop="1",route="eventfd"}`:            1029,
		// Totals, summed over the loops, with today's labels.
		`ringrelay_backend_info{backend="uring"}`:           1,
		`ringrelay_connections_accepted_total`:              1009 + 9,
		`ringrelay_frames_relayed_total`:                    1007 + 7,
		`ringrelay_bytes_relayed_total`:                     1700 + 700,
		`ringrelay_connections_closed_total{reason="peer"}`: 1100 + 100,
		`ringrelay_frames_dropped_total{reason="oversize"}`: 1202 + 202,
		`ringrelay_recv_buffer_exhausted_total`:             1013 + 13,
		`ringrelay_accept_fd_exhausted_total`:               1017 + 17,
	})
	// A per-loop family holds no unlabelled sum beside its loops (sum()
	// would count each loop twice), and totals carry no loop label.
	perLoop := []string{"ringrelay_connections_open", "ringrelay_backpressure_pauses_total", "ringrelay_loop_completions_per_wait_", "ringrelay_loop_pass_",
		"ringrelay_loop_frames_", "ringrelay_cross_loop_frames_total", "ringrelay_doorbells_total"}
	for k := range p.value {
		split := false
		for _, f := range perLoop {
			split = split || strings.HasPrefix(k, f)
		}
		if has := strings.Contains(k, `loop="`); has != split && strings.HasPrefix(k, "ringrelay_") {
			t.Errorf("%s: loop label present = %v, want %v", k, has, split)
		}
	}
}

// failing is a collector whose scrape always fails, as the process
// collector's does when /proc cannot be opened.
type failing struct{ d *prometheus.Desc }

func (f failing) Describe(ch chan<- *prometheus.Desc) { ch <- f.d }
func (f failing) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(f.d, errors.New("cannot read"))
}

// One failing collector costs its own series, not the page.
func TestFailingCollectorLeavesTheRest(t *testing.T) {
	reg := NewRegistry("epoll", fill(0))
	reg.MustRegister(failing{prometheus.NewDesc("broken", "Always fails.", nil, nil)})
	srv := httptest.NewServer(handlerFor(reg))
	defer srv.Close()
	scrape(t, srv.URL, "")
	// The error is counted after the page it spoiled: the second scrape
	// shows the first one's.
	p := scrape(t, srv.URL, "")
	p.check(t, map[string]float64{
		`ringrelay_frames_relayed_total`:                          7,
		`promhttp_metric_handler_errors_total{cause="gathering"}`: 1,
	})
	if _, ok := p.value["process_open_fds"]; !ok {
		t.Error("process series missing")
	}
}

// The pedantic registry checks that what Collect sends matches what
// Describe declared, for one loop and for several.
func TestDescribeMatchesCollect(t *testing.T) {
	for _, n := range []int{1, 3} {
		loops := make([]Loop, n)
		for i := range loops {
			loops[i] = fill(uint64(i))
		}
		reg := prometheus.NewPedanticRegistry()
		if err := reg.Register(NewCollector("epoll", loops)); err != nil {
			t.Fatalf("%d loops: register: %v", n, err)
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatalf("%d loops: gather: %v", n, err)
		}
		if len(mfs) != len(families)+4 {
			t.Errorf("%d loops: %d families, want %d", n, len(mfs), len(families)+4)
		}
	}
}
