package metrics

import (
	"bufio"
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/ringrelay/ringrelay/reactor"
	"github.com/ringrelay/ringrelay/relay"
)

// scrape serves the handler once and parses the text format into
// "name{labels}" -> value, checking that every sample has HELP and TYPE.
func scrape(t *testing.T, m *relay.Metrics, st *reactor.Stats) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	Handler(m, st, "uring").ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("content type %q", ct)
	}
	typed := map[string]string{}
	out := map[string]float64{}
	sc := bufio.NewScanner(io.Reader(rec.Body))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			f := strings.Fields(rest)
			typed[f[0]] = f[1]
			continue
		}
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		key, val, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("malformed sample %q", line)
		}
		name, _, _ := strings.Cut(key, "{")
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if typed[name] == "" && typed[base] == "" {
			t.Fatalf("sample %q has no # TYPE line before it", line)
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		out[key] = v
	}
	return out
}

func TestExposition(t *testing.T) {
	m := new(relay.Metrics)
	st := new(reactor.Stats)
	m.FramesRelayed.Store(7)
	m.BytesRelayed.Store(700)
	m.Closed[relay.ClosedSlow].Store(2)
	m.Dropped[relay.DropUnknownDest].Store(3)
	st.Open.Store(5)
	st.Accepted.Store(9)
	// Waits that returned 1, 3, 3 and 1000 completions.
	st.BatchSizes[0].Store(1)
	st.BatchSizes[2].Store(2)
	st.BatchSizes[len(reactor.BatchBounds)].Store(1)
	st.Completions.Store(1007)

	got := scrape(t, m, st)
	want := map[string]float64{
		`ringrelay_backend_info{backend="uring"}`:                      1,
		`ringrelay_connections_open`:                                   5,
		`ringrelay_connections_accepted_total`:                         9,
		`ringrelay_frames_relayed_total`:                               7,
		`ringrelay_bytes_relayed_total`:                                700,
		`ringrelay_connections_closed_total{reason="slow_consumer"}`:   2,
		`ringrelay_connections_closed_total{reason="peer"}`:            0,
		`ringrelay_frames_dropped_total{reason="unknown_destination"}`: 3,
		`ringrelay_loop_completions_per_wait_bucket{le="1"}`:           1,
		`ringrelay_loop_completions_per_wait_bucket{le="2"}`:           1,
		`ringrelay_loop_completions_per_wait_bucket{le="4"}`:           3,
		`ringrelay_loop_completions_per_wait_bucket{le="512"}`:         3,
		`ringrelay_loop_completions_per_wait_bucket{le="+Inf"}`:        4,
		`ringrelay_loop_completions_per_wait_count`:                    4,
		`ringrelay_loop_completions_per_wait_sum`:                      1007,
		`ringrelay_frames_dropped_total{reason="slow_consumer"}`:       0,
		`ringrelay_recv_buffer_exhausted_total`:                        0,
	}
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("missing %s", k)
			continue
		}
		if g != v {
			t.Errorf("%s = %v, want %v", k, g, v)
		}
	}
	// Every close and drop reason is exported, even at zero.
	for _, r := range relay.CloseReasons() {
		if _, ok := got[`ringrelay_connections_closed_total{reason="`+r.String()+`"}`]; !ok {
			t.Errorf("close reason %s not exported", r)
		}
	}
	for _, r := range relay.DropReasons() {
		if _, ok := got[`ringrelay_frames_dropped_total{reason="`+r.String()+`"}`]; !ok {
			t.Errorf("drop reason %s not exported", r)
		}
	}
}
