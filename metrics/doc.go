// Package metrics serves ringrelay's counters to Prometheus through
// github.com/prometheus/client_golang.
//
// # What is served
//
// NewRegistry builds a prometheus.Registry holding three collectors: a
// Collector of the relay's own ringrelay_* series, the standard Go runtime
// collector (go_goroutines, go_memstats_*, go_gc_duration_seconds, ...) and
// the standard process collector (process_resident_memory_bytes,
// process_open_fds, process_cpu_seconds_total, ...). Handler serves that
// registry with promhttp, which picks the exposition format (text 0.0.4
// or protobuf) from the scraper's Accept header and gzips when asked to.
// OpenMetrics is left off: Prometheus would prefer it, and it writes le
// labels as "1.0" where the text format writes "1", which would start new
// series for every bucket.
//
// # Nothing on the loop's path
//
// The event loop keeps plain counters while it handles a batch and
// publishes them with atomic stores (relay.Metrics, reactor.Stats). The
// Collector holds pointers to those atomics and reads them only when a
// scrape calls Collect, on net/http's goroutines; it builds constant
// metrics from what it loaded and keeps nothing between scrapes. The loop
// never calls into this package, takes no lock for it and allocates
// nothing for it.
//
// Values loaded in one scrape are not a single snapshot: each atomic is
// read on its own while the loop may be publishing. Every family is still
// self-consistent where it matters: a histogram's count is its +Inf
// bucket, summed from the same loads as the other buckets.
//
// # Several loops
//
// A Collector is built over a slice of Loop, one per event loop, and
// every family is declared once in a table that says whether it is a
// total or a per-loop series:
//
//   - Totals (backend info, accepts, closes and drops by reason, frames
//     and bytes relayed, descriptor and buffer exhaustion) are always one
//     series per label set, named and labelled as in the README, summed
//     over the loops.
//   - Per-loop series (connections open, backpressure pauses, completions
//     per wait, pass times, frames received from and sent to the loop's
//     connections, frames crossing to and from other loops, doorbells
//     rung) carry a loop="k" label when there is more than one loop,
//     one series per loop; the family then holds no unlabelled sum, so
//     that sum() over it never counts a loop twice. With a single loop
//     they carry no loop label: they are named and labelled as they were
//     before there were several loops. Dashboards that aggregate with
//     sum() or sum without (loop) work unchanged at any loop count.
//
// # The connection list
//
// Connz serves /connz: unlike the counters, the list is asked of the
// loops at each request (relay.Group.Connz), which answer at their next
// pass; the handler sorts, pages and sums on its own goroutine, then asks
// for the addresses of the page's connections only.
package metrics
