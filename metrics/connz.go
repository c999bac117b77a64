package metrics

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/ringrelay/ringrelay/relay"
)

// ConnzSource lists the open connections: relay.Group does.
type ConnzSource interface {
	// Connz returns every open connection (id 0) or the one with id,
	// without addresses.
	Connz(ctx context.Context, id uint32) ([]relay.ConnInfo, error)
	// ConnzAddrs fills in the addresses of connections Connz returned.
	ConnzAddrs(ctx context.Context, conns []relay.ConnInfo) error
}

// Connz defaults and bounds.
const (
	connzLimit    = 1024   // connections per page when limit is not given
	connzMaxLimit = 100000 // the largest page one may ask for
	// connzWait bounds the wait for the loops' answers: a loop answers at
	// its next pass, which is at once unless it is stuck.
	connzWait = 5 * time.Second
)

// connzSorts are the orders /connz knows: cid ascending, the others
// largest (or oldest) first.
var connzSorts = map[string]func(a, b *relay.ConnInfo) int{
	"cid":        func(a, b *relay.ConnInfo) int { return cmp.Compare(a.ID, b.ID) },
	"bytes_out":  func(a, b *relay.ConnInfo) int { return cmp.Compare(b.BytesOut, a.BytesOut) },
	"bytes_in":   func(a, b *relay.ConnInfo) int { return cmp.Compare(b.BytesIn, a.BytesIn) },
	"frames_out": func(a, b *relay.ConnInfo) int { return cmp.Compare(b.FramesOut, a.FramesOut) },
	"frames_in":  func(a, b *relay.ConnInfo) int { return cmp.Compare(b.FramesIn, a.FramesIn) },
	"queued":     func(a, b *relay.ConnInfo) int { return cmp.Compare(b.Queued, a.Queued) },
	"age":        func(a, b *relay.ConnInfo) int { return cmp.Compare(b.Age, a.Age) },
}

// ConnzPage is the JSON document /connz serves.
type ConnzPage struct {
	Now     time.Time    `json:"now"`
	Total   int          `json:"total"` // open connections, all pages together (1 or 0 with cid)
	Summary ConnzSummary `json:"summary"`
	// The page: absent with summary=true (a zero field is left out).
	Sort        string      `json:"sort,omitempty"`
	Offset      int         `json:"offset,omitempty"`
	Limit       int         `json:"limit,omitempty"`
	Count       int         `json:"count,omitempty"` // connections on this page
	Connections []ConnzConn `json:"connections,omitempty"`
}

// ConnzSummary sums every open connection.
type ConnzSummary struct {
	Connections int      `json:"connections"`
	PerLoop     []int    `json:"connections_per_loop,omitempty"`
	FramesIn    uint64   `json:"frames_in"`
	BytesIn     uint64   `json:"bytes_in"`
	FramesOut   uint64   `json:"frames_out"`
	BytesOut    uint64   `json:"bytes_out"`
	Queued      int      `json:"queued"`
	Paused      int      `json:"paused"`
	TLS         int      `json:"tls"`
	OldestAge   Duration `json:"oldest_age"`
}

// ConnzConn is one connection on the page.
type ConnzConn struct {
	CID       uint32   `json:"cid"`
	Loop      int      `json:"loop"`
	IP        string   `json:"ip,omitempty"`
	Port      uint16   `json:"port,omitempty"`
	Age       Duration `json:"age"`
	FramesIn  uint64   `json:"frames_in"`
	BytesIn   uint64   `json:"bytes_in"`
	FramesOut uint64   `json:"frames_out"`
	BytesOut  uint64   `json:"bytes_out"`
	Queued    int      `json:"queued"`
	Paused    bool     `json:"paused"`
	PausedOn  []string `json:"paused_on,omitempty"`
	PausedFor uint32   `json:"paused_for,omitempty"`
	// TLS, omitted for plaintext.
	TLSVersion    string `json:"tls_version,omitempty"`
	TLSCipher     string `json:"tls_cipher_suite,omitempty"`
	ClientSubject string `json:"tls_client_subject,omitempty"`
}

// Duration is written as Go writes durations ("1m2.5s") and read back
// the same way.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) {
	return strconv.AppendQuote(nil, time.Duration(d).String()), nil
}

func (d *Duration) UnmarshalJSON(b []byte) error {
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return fmt.Errorf("duration %s: %w", b, err)
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// connzQuery is what a request asked for.
type connzQuery struct {
	sort          string
	limit, offset int
	cid           uint32
	summary       bool
}

func parseConnz(r *http.Request) (connzQuery, error) {
	q := connzQuery{sort: "cid", limit: connzLimit}
	v := r.URL.Query()
	if s := v.Get("sort"); s != "" {
		if connzSorts[s] == nil {
			return q, fmt.Errorf("sort=%q: want one of cid, bytes_out, bytes_in, frames_out, frames_in, queued, age", s)
		}
		q.sort = s
	}
	num := func(name string, lo, hi int) (int, bool, error) {
		s := v.Get(name)
		if s == "" {
			return 0, false, nil
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < lo || n > hi {
			return 0, false, fmt.Errorf("%s=%q: want a whole number from %d to %d", name, s, lo, hi)
		}
		return n, true, nil
	}
	var err error
	var ok bool
	var n int
	if n, ok, err = num("limit", 1, connzMaxLimit); err != nil {
		return q, err
	} else if ok {
		q.limit = n
	}
	if n, ok, err = num("offset", 0, 1<<31-1); err != nil {
		return q, err
	} else if ok {
		q.offset = n
	}
	for _, name := range []string{"cid", "id"} {
		if s := v.Get(name); s != "" {
			id, err := strconv.ParseUint(s, 10, 32)
			if err != nil || id == 0 {
				return q, fmt.Errorf("%s=%q: want a connection ID from 1 to %d", name, s, uint32(1<<32-1))
			}
			q.cid = uint32(id)
		}
	}
	if s := v.Get("summary"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return q, fmt.Errorf("summary=%q: want true or false", s)
		}
		q.summary = b
	}
	return q, nil
}

// Connz serves /connz: the open connections of src as JSON, asked of the
// loops at each request (relay.Group.Connz). Query parameters: sort,
// limit, offset, cid (or id) for one connection, summary=true for the
// totals without the list.
func Connz(src ConnzSource, loops int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := parseConnz(r)
		if err != nil {
			http.Error(w, "connz: "+err.Error(), http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), connzWait)
		defer cancel()
		conns, err := src.Connz(ctx, q.cid)
		if err != nil {
			http.Error(w, "connz: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if q.cid != 0 && len(conns) == 0 {
			http.Error(w, fmt.Sprintf("connz: no open connection with cid %d on this node", q.cid), http.StatusNotFound)
			return
		}
		page, list := buildConnz(conns, q, loops)
		// Addresses cost the loops a system call each: only the page's.
		if err := src.ConnzAddrs(ctx, list); err != nil {
			http.Error(w, "connz: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		for i := range list {
			page.Connections[i] = connzConn(&list[i])
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(page) // a client that left is not our error
	})
}

// buildConnz sums, sorts and cuts the page: the page as it will be
// served, and the connections on it, whose addresses are still to come.
func buildConnz(conns []relay.ConnInfo, q connzQuery, loops int) (ConnzPage, []relay.ConnInfo) {
	p := ConnzPage{Now: time.Now().UTC(), Total: len(conns)}
	sum := &p.Summary
	sum.Connections = len(conns)
	if loops > 1 {
		sum.PerLoop = make([]int, loops)
	}
	for i := range conns {
		c := &conns[i]
		if sum.PerLoop != nil && c.Loop < loops {
			sum.PerLoop[c.Loop]++
		}
		sum.FramesIn += c.FramesIn
		sum.BytesIn += c.BytesIn
		sum.FramesOut += c.FramesOut
		sum.BytesOut += c.BytesOut
		sum.Queued += c.Queued
		if c.Paused {
			sum.Paused++
		}
		if c.TLS.Version != 0 {
			sum.TLS++
		}
		sum.OldestAge = max(sum.OldestAge, Duration(c.Age))
	}
	if q.summary {
		return p, nil
	}
	p.Sort, p.Offset, p.Limit = q.sort, q.offset, q.limit
	by := connzSorts[q.sort]
	slices.SortFunc(conns, func(a, b relay.ConnInfo) int {
		if c := by(&a, &b); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID) // a stable order for paging
	})
	lo := min(q.offset, len(conns))
	hi := min(lo+q.limit, len(conns))
	p.Connections = make([]ConnzConn, hi-lo)
	p.Count = hi - lo
	return p, conns[lo:hi]
}

func connzConn(c *relay.ConnInfo) ConnzConn {
	out := ConnzConn{
		CID: c.ID, Loop: c.Loop, Age: Duration(c.Age),
		FramesIn: c.FramesIn, BytesIn: c.BytesIn, FramesOut: c.FramesOut, BytesOut: c.BytesOut,
		Queued: c.Queued, Paused: c.Paused, PausedOn: c.PausedOn.Names(), PausedFor: c.PausedFor,
	}
	if c.Remote.IsValid() {
		out.IP, out.Port = c.Remote.Addr().String(), c.Remote.Port()
	}
	if c.TLS.Version != 0 {
		out.TLSVersion = tls.VersionName(c.TLS.Version)
		out.TLSCipher = tls.CipherSuiteName(c.TLS.CipherSuite)
		out.ClientSubject = c.TLS.ClientSubject
	}
	return out
}
