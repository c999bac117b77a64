// Package metrics serves ringrelay's counters in the Prometheus text
// exposition format (version 0.0.4).
//
// It is written by hand rather than with prometheus/client_golang: the
// relay exports a dozen counters and one histogram, all of which already
// live as atomics in relay.Metrics and reactor.Stats, so a registry, its
// descriptors and its dependency tree (protobuf, several x/ packages) would
// add far more code than the forty lines that print them. The handler runs
// on net/http's goroutines and only reads atomics; it never touches loop
// state.
package metrics

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"

	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
)

// Handler returns an http.Handler that writes the current metrics.
func Handler(m *relay.Metrics, st *reactor.Stats, backend string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		b := bufio.NewWriter(w)
		Write(b, m, st, backend)
		b.Flush()
	})
}

type writer struct{ w *bufio.Writer }

func (x writer) head(name, typ, help string) {
	fmt.Fprintf(x.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func (x writer) val(name, labels string, v uint64) {
	if labels != "" {
		fmt.Fprintf(x.w, "%s{%s} %d\n", name, labels, v)
		return
	}
	fmt.Fprintf(x.w, "%s %d\n", name, v)
}

func (x writer) one(name, typ, help string, v uint64) {
	x.head(name, typ, help)
	x.val(name, "", v)
}

// Write prints every metric to w.
func Write(w *bufio.Writer, m *relay.Metrics, st *reactor.Stats, backend string) {
	x := writer{w}
	x.head("ringrelay_backend_info", "gauge", "I/O backend in use (value is always 1).")
	x.val("ringrelay_backend_info", `backend="`+backend+`"`, 1)
	x.one("ringrelay_connections_open", "gauge", "Connections currently open.", uint64(max(st.Open.Load(), 0)))
	x.one("ringrelay_connections_accepted_total", "counter", "Connections accepted.", st.Accepted.Load())

	x.head("ringrelay_connections_closed_total", "counter", "Connections closed, by reason.")
	for _, r := range relay.CloseReasons() {
		x.val("ringrelay_connections_closed_total", `reason="`+r.String()+`"`, m.Closed[r].Load())
	}
	x.one("ringrelay_frames_relayed_total", "counter", "Frames forwarded to a destination.", m.FramesRelayed.Load())
	x.one("ringrelay_bytes_relayed_total", "counter", "Bytes forwarded to destinations (payload and NUL).", m.BytesRelayed.Load())
	x.head("ringrelay_frames_dropped_total", "counter", "Frames not delivered, by reason.")
	for _, r := range relay.DropReasons() {
		x.val("ringrelay_frames_dropped_total", `reason="`+r.String()+`"`, m.Dropped[r].Load())
	}
	x.one("ringrelay_backpressure_pauses_total", "counter", "Times a sender's reads were paused for a full destination.", m.BackpressurePauses.Load())
	x.one("ringrelay_recv_buffer_exhausted_total", "counter", "Receives that found every buffer lent out (ENOBUFS, io_uring only).", st.NoBuffers.Load())
	x.one("ringrelay_accept_fd_exhausted_total", "counter", "Accepts that failed for lack of descriptors (EMFILE/ENFILE).", st.AcceptFails.Load())
	x.one("ringrelay_loop_iterations_total", "counter", "Waits for I/O made by the event loop.", st.Iterations.Load())

	name := "ringrelay_loop_completions_per_wait"
	x.head(name, "histogram", "Completions (io_uring) or ready descriptors (epoll) handled per wait.")
	var cum uint64
	for i, bound := range reactor.BatchBounds {
		cum += st.BatchSizes[i].Load()
		x.val(name+"_bucket", `le="`+strconv.Itoa(bound)+`"`, cum)
	}
	cum += st.BatchSizes[len(reactor.BatchBounds)].Load()
	x.val(name+"_bucket", `le="+Inf"`, cum)
	x.val(name+"_sum", "", st.Completions.Load())
	x.val(name+"_count", "", cum)
}
