package main

// Operations tests: the real binary in a child process (internal/servertest),
// driven over loopback and watched from outside: signals and exit codes,
// descriptor exhaustion under a lowered RLIMIT_NOFILE, the /metrics page,
// resident memory under a flood. Every helper here is prefixed with ops:
// main_test.go shares the package.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"github.com/ringrelay/ringrelay/internal/rawpeer"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ringrelay/ringrelay/internal/servertest"
)

// opsBackends are the engines the child-process cases run on.
var opsBackends = []string{"uring", "epoll"}

// opsSkipWithoutUring skips a uring case on a host where io_uring cannot
// be set up (an old kernel, a seccomp profile that denies it).
func opsSkipWithoutUring(t *testing.T, backend string) {
	t.Helper()
	if backend != "uring" {
		return
	}
	var params [120]byte // struct io_uring_params, zeroed
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 8, uintptr(unsafe.Pointer(&params[0])), 0)
	if errno != 0 {
		t.Skipf("io_uring is not usable here: io_uring_setup: %v", errno)
	}
	unix.Close(int(fd))
}

// Payloads name their sender and place: "s007 q00000042 " and filler that
// depends on both.
const opsHeadLen = len("s000 q00000000 ")

func opsPayload(buf []byte, sender, seq, size int) []byte {
	buf = fmt.Appendf(buf[:0], "s%03d q%08d ", sender, seq)
	if n := size - len(buf); n > 0 {
		buf = append(buf, opsFiller(sender, seq, len(buf), n)...)
	}
	return buf
}

// opsAlphabet repeats a to z, long enough to slice any filler from.
var opsAlphabet = bytes.Repeat([]byte("abcdefghijklmnopqrstuvwxyz"), 1<<20/26+2)

// opsFiller is the n filler bytes of a payload from offset off: byte i is
// 'a'+(sender+seq+i)%26, so a byte moved, lost or duplicated shows.
func opsFiller(sender, seq, off, n int) []byte {
	k := (sender + seq + off) % 26
	return opsAlphabet[k : k+n]
}

// opsOrder checks that every sender's frames arrive complete and in order,
// without gaps.
type opsOrder struct {
	next  []int
	total int
}

func (o *opsOrder) take(p []byte) error {
	if len(p) < opsHeadLen || p[0] != 's' || p[5] != 'q' {
		return fmt.Errorf("malformed payload %.40q", p)
	}
	sender, err1 := strconv.Atoi(string(p[1:4]))
	seq, err2 := strconv.Atoi(string(p[6:14]))
	if err := errors.Join(err1, err2); err != nil || sender >= len(o.next) {
		return fmt.Errorf("malformed payload %.40q", p)
	}
	if want := opsFiller(sender, seq, opsHeadLen, len(p)-opsHeadLen); !bytes.Equal(p[opsHeadLen:], want) {
		i := opsHeadLen
		for p[i] == want[i-opsHeadLen] {
			i++
		}
		return fmt.Errorf("sender %d frame %d: corrupt at byte %d", sender, seq, i)
	}
	if seq != o.next[sender] {
		return fmt.Errorf("sender %d: frame %d arrived, expected %d", sender, seq, o.next[sender])
	}
	o.next[sender]++
	o.total++
	return nil
}

// opsPatience bounds a whole drain or read to the end: generous, since a
// loaded machine can leave a reader or the server unscheduled for seconds.
const opsPatience = 60 * time.Second

// opsDrain reads payloads into o until want() of them have arrived; want
// returns -1 while the total is not known. It fails if that takes longer
// than opsPatience.
func opsDrain(p *rawpeer.Peer, o *opsOrder, want func() int) error {
	start := time.Now()
	last := start
	for {
		if w := want(); w >= 0 && o.total >= w {
			return nil
		}
		b, err := p.Recv(50 * time.Millisecond)
		switch {
		case err == nil:
			if err := o.take(b); err != nil {
				return err
			}
			last = time.Now()
		case os.IsTimeout(err) && time.Since(start) < opsPatience:
		default:
			return fmt.Errorf("after %d frames in %v, the last %v ago: %w", o.total, time.Since(start).Round(time.Millisecond), time.Since(last).Round(time.Millisecond), err)
		}
	}
}

// opsReadToEnd reads payloads into o until the stream ends and returns
// how it ended. It fails if the end does not come within opsPatience.
func opsReadToEnd(p *rawpeer.Peer, o *opsOrder) (end error, err error) {
	deadline := time.Now().Add(opsPatience)
	for {
		b, err := p.Recv(time.Until(deadline))
		if os.IsTimeout(err) {
			return nil, fmt.Errorf("after %d frames: no end within %v: %w", o.total, opsPatience, err)
		}
		if err != nil {
			return err, nil
		}
		if err := o.take(b); err != nil {
			return nil, err
		}
	}
}

// opsFlood has senders write numbered frames to dest until stop is called.
type opsFlood struct {
	stop atomic.Bool
	wg   sync.WaitGroup
	sent []atomic.Int64
}

func opsStartFlood(senders []*rawpeer.Peer, dest uint32, size int) *opsFlood {
	f := &opsFlood{sent: make([]atomic.Int64, len(senders))}
	for i, s := range senders {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			var payload []byte
			for seq := 0; !f.stop.Load(); seq++ {
				payload = opsPayload(payload, i, seq, size)
				if s.Send(dest, payload) != nil {
					return
				}
				f.sent[i].Add(1)
			}
		}()
	}
	return f
}

// finish stops the senders and waits for them (a sender blocked in Write
// returns once the relay reads again, or its socket is closed).
func (f *opsFlood) finish(t testing.TB, within time.Duration) (total int) {
	t.Helper()
	f.stop.Store(true)
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(within):
		t.Fatalf("senders still blocked %v after the flood was stopped", within)
	}
	for i := range f.sent {
		total += int(f.sent[i].Load())
	}
	return total
}

// opsMetricsArg asks the server to serve metrics on any free loopback
// port; opsMetricsAddr reads from its log which one it bound. (A port
// picked here and handed over could be taken before the server binds it.)
const opsMetricsArg = "-metrics-addr=127.0.0.1:0"

var opsServingMetrics = regexp.MustCompile(`msg="serving metrics" addr=(\S+)`)

func opsMetricsAddr(t testing.TB, p *servertest.Proc) string {
	t.Helper()
	var addr string
	servertest.WaitFor(t, "the server to say where it serves metrics", opsPatience, func() bool {
		if m := opsServingMetrics.FindStringSubmatch(p.Logs()); m != nil {
			addr = m[1]
		}
		return addr != "" || p.Exited()
	})
	if addr == "" {
		t.Fatalf("the server exited without serving metrics:\n%s", p.Logs())
	}
	return addr
}

// opsSample is one line of the Prometheus text format.
var opsSample = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? ([-+0-9.eE]+|NaN|[+-]Inf)$`)

// opsMetrics is a scraped page: samples keyed by name and labels as
// written ("ringrelay_frames_dropped_total{reason=\"oversize\"}"), and the
// TYPE of each family.
type opsMetrics struct {
	value map[string]float64
	typ   map[string]string
	// loops sums per-loop samples (loop="k") under their key without the
	// loop label, so that a test reads a total at any loop count.
	loops map[string]float64
}

// opsLoopLabel is a loop label and the comma that joins it to the next.
var opsLoopLabel = regexp.MustCompile(`loop="\d+",?`)

// opsScrape fetches and parses http://addr/metrics. It checks the format
// as it goes: every sample belongs to a family with a TYPE line, no
// sample appears twice, every value parses.
func opsScrape(t testing.TB, addr string) opsMetrics {
	t.Helper()
	m, err := opsTryScrape(t, addr)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	return m
}

// opsTryScrape is opsScrape for a page that may not be up yet: the
// metrics listener opens a moment after the relay's.
func opsTryScrape(t testing.TB, addr string) (opsMetrics, error) {
	t.Helper()
	// No keep-alive: an idle connection's goroutines would outlive the test.
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Get("http://" + addr + "/metrics")
	if err != nil {
		return opsMetrics{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("scrape: Content-Type %q", ct)
	}
	m := opsMetrics{value: map[string]float64{}, typ: map[string]string{}, loops: map[string]float64{}}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			parts := strings.Fields(f)
			if len(parts) != 2 {
				t.Fatalf("bad TYPE line %q", line)
			}
			m.typ[parts[0]] = parts[1]
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		g := opsSample.FindStringSubmatch(line)
		if g == nil {
			t.Fatalf("not a sample line: %q", line)
		}
		family := g[1]
		if _, ok := m.typ[family]; !ok {
			family = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(family, "_bucket"), "_sum"), "_count")
		}
		if _, ok := m.typ[family]; !ok {
			t.Fatalf("sample %q has no TYPE line before it", line)
		}
		v, err := strconv.ParseFloat(g[3], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		key := g[1] + g[2]
		if _, dup := m.value[key]; dup {
			t.Fatalf("sample %s appears twice", key)
		}
		m.value[key] = v
		if labels := opsLoopLabel.ReplaceAllString(g[2], ""); labels != g[2] {
			labels = strings.Replace(labels, ",}", "}", 1)
			if labels == "{}" {
				labels = ""
			}
			m.loops[g[1]+labels] += v
		}
	}
	if err := sc.Err(); err != nil {
		return opsMetrics{}, err
	}
	return m, nil
}

// get returns a sample's value, failing the test if it is missing.
func (m opsMetrics) get(t testing.TB, key string) float64 {
	t.Helper()
	v, ok := m.value[key]
	if !ok {
		v, ok = m.loops[key]
	}
	if !ok {
		t.Fatalf("no sample %s on the metrics page", key)
	}
	return v
}

// opsWaitMetric scrapes until cond holds for the page.
func opsWaitMetric(t testing.TB, addr, what string, within time.Duration, cond func(opsMetrics) bool) opsMetrics {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		m, err := opsTryScrape(t, addr)
		if err == nil && cond(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s (last scrape: %v)", within, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const (
	opsRelayed = "ringrelay_frames_relayed_total"
	opsPauses  = "ringrelay_backpressure_pauses_total"
	opsBytes   = "ringrelay_bytes_relayed_total"
)

// opsFillQueue has one sender flood a receiver that does not read until
// backpressure holds the sender with at least half of maxQueue (the
// server's -max-queue) queued in the relay itself for the receiver. The
// sender stays held until that queue falls below half, and it can only
// fall into the kernel's buffers toward a receiver that never reads them.
//
// What the relay holds is counted, not guessed from a quiet spell: the
// bytes it took for the receiver (ringrelay_bytes_relayed_total) less what
// sits in the kernel, in its socket's send queue and in the receiver's
// receive queue (/proc/net/tcp).
func opsFillQueue(t testing.TB, p *servertest.Proc, metricsAddr string, maxQueue int) (recv *rawpeer.Peer, flood *opsFlood) {
	t.Helper()
	recv = rawpeer.Dial(t, p.Addr, rawpeer.Bufs{Rcv: 64 << 10})
	sender := rawpeer.Dial(t, p.Addr, rawpeer.Bufs{})
	flood = opsStartFlood([]*rawpeer.Peer{sender}, recv.ID, 1000)
	local, remote := recv.NC.LocalAddr().String(), recv.NC.RemoteAddr().String()
	held := -1
	// 30 s: a failure when hit, not a measurement. The ops tests run in
	// parallel, and three of them flood at once on a machine that may
	// have a CPU kept busy; 10 s was hit once in such a run.
	opsWaitMetric(t, metricsAddr, fmt.Sprintf("the relay to hold %d bytes for a receiver that does not read", maxQueue/2), opsPatience, func(m opsMetrics) bool {
		if m.get(t, opsPauses) == 0 {
			return false
		}
		serverTx, _, err1 := servertest.TCPQueues(remote, local)
		_, recvRx, err2 := servertest.TCPQueues(local, remote)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("kernel queues toward the receiver: %v", err)
		}
		held = int(m.get(t, opsBytes)) - serverTx - recvRx
		return held >= maxQueue/2
	})
	t.Logf("the relay holds %d bytes for the receiver, the sender is held", held)
	return recv, flood
}

// opsAwaitDrain waits for the log to say the drain began.
func opsAwaitDrain(t testing.TB, p *servertest.Proc) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.Logs(), "shutting down") {
		if time.Now().After(deadline) || p.Exited() {
			t.Fatalf("no sign of a drain in the log:\n%s", p.Logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOpsShutdownDeliversQueuedOutput(t *testing.T) {
	t.Parallel() // its servers are processes of their own; it mostly waits on them
	for _, backend := range opsBackends {
		t.Run(backend, func(t *testing.T) {
			opsSkipWithoutUring(t, backend)
			p := servertest.Start(t, servertest.Options{Args: []string{"-backend=" + backend, "-max-queue=1MiB", "-max-frame=64KiB", opsMetricsArg}})
			maddr := opsMetricsAddr(t, p)
			recv, flood := opsFillQueue(t, p, maddr, 1<<20)

			p.Signal(t, syscall.SIGTERM)
			// Once draining, the relay reads no more: its count of relayed
			// frames is final. The drain cannot end before the receiver
			// reads, so the page is still up.
			opsAwaitDrain(t, p)
			last := -1.0
			m := opsWaitMetric(t, maddr, "the relayed count to settle", opsPatience, func(m opsMetrics) bool {
				n := m.get(t, opsRelayed)
				settled := n == last
				last = n
				if !settled {
					time.Sleep(50 * time.Millisecond)
				}
				return settled
			})
			queued := int(m.get(t, opsRelayed))
			// Everything the relay took arrives, whole and in order, and
			// then the stream ends; the server exits 0.
			o := &opsOrder{next: make([]int, 1)}
			end, err := opsReadToEnd(recv, o)
			if err != nil {
				t.Fatalf("receiver during shutdown: %v\nlog:\n%s", err, p.Logs())
			}
			if !errors.Is(end, io.EOF) {
				t.Errorf("stream ended with %v, want EOF", end)
			}
			if o.total != queued {
				t.Errorf("received %d frames, the relay had taken %d", o.total, queued)
			}
			if code := p.Wait(t, 10*time.Second); code != 0 {
				t.Fatalf("exit code %d, want 0\nlog:\n%s", code, p.Logs())
			}
			flood.finish(t, 5*time.Second)
			if !strings.Contains(p.Logs(), "shut down cleanly") {
				t.Errorf("no clean shutdown line in the log:\n%s", p.Logs())
			}
			t.Logf("%s: %d queued frames (%d bytes) delivered after SIGTERM, then EOF, exit 0", backend, queued, queued*1001)
		})
	}
}

func TestOpsShutdownTimeout(t *testing.T) {
	t.Parallel() // its servers are processes of their own; it mostly waits on them
	p := servertest.Start(t, servertest.Options{Args: []string{"-max-queue=1MiB", "-max-frame=64KiB", "-shutdown-timeout=300ms", opsMetricsArg}})
	maddr := opsMetricsAddr(t, p)
	_, flood := opsFillQueue(t, p, maddr, 1<<20)
	sent := time.Now()
	p.Signal(t, syscall.SIGTERM)
	// The receiver never reads: the server gives up on its queue after
	// -shutdown-timeout. 10s is a liveness bound.
	if code := p.Wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0\nlog:\n%s", code, p.Logs())
	}
	took := time.Since(sent)
	flood.finish(t, 5*time.Second)
	if !strings.Contains(p.Logs(), "shut down cleanly") {
		t.Errorf("no clean shutdown line in the log:\n%s", p.Logs())
	}
	// The queue was not simply dropped: the server waited for it.
	if took < 300*time.Millisecond {
		t.Errorf("exited %v after SIGTERM, before -shutdown-timeout ran out", took)
	}
	t.Logf("exited 0, %v after SIGTERM, with a receiver that never read", took.Round(time.Millisecond))
}

func TestOpsSecondSignalExitsAtOnce(t *testing.T) {
	t.Parallel() // its servers are processes of their own; it mostly waits on them
	p := servertest.Start(t, servertest.Options{Args: []string{"-max-queue=1MiB", "-max-frame=64KiB", "-shutdown-timeout=60s", opsMetricsArg}})
	maddr := opsMetricsAddr(t, p)
	_, flood := opsFillQueue(t, p, maddr, 1<<20)
	p.Signal(t, syscall.SIGTERM)
	opsAwaitDrain(t, p)
	if p.Exited() {
		t.Fatalf("exited before the second signal\nlog:\n%s", p.Logs())
	}
	sent := time.Now()
	p.Signal(t, syscall.SIGTERM)
	// The drain would last a minute; 10s is a liveness bound.
	code := p.Wait(t, 10*time.Second)
	took := time.Since(sent)
	flood.finish(t, 5*time.Second)
	if code == 0 {
		t.Errorf("exit code 0 after a second signal, want non-zero")
	}
	if !strings.Contains(p.Logs(), "second signal") {
		t.Errorf("no second-signal line in the log:\n%s", p.Logs())
	}
	t.Logf("second SIGTERM during a drain: exit code %d, %v after it", code, took.Round(time.Millisecond))
}

func TestOpsDescriptorExhaustion(t *testing.T) {
	t.Parallel() // its servers are processes of their own; it mostly waits on them
	for _, backend := range opsBackends {
		t.Run(backend, func(t *testing.T) { opsDescriptorExhaustion(t, backend) })
	}
}

// opsWarnTime matches the timestamp of an accept warning in the log.
var opsWarnTime = regexp.MustCompile(`(?m)^time=(\S+) level=WARN msg="accept failed`)

func opsDescriptorExhaustion(t *testing.T, backend string) {
	opsSkipWithoutUring(t, backend)
	args := []string{"-backend=" + backend}
	var p *servertest.Proc
	var limit uint64
	setLimit := func(n uint64) {
		t.Helper()
		// Soft and hard alike: Go raises a child's soft limit to its hard
		// limit at start-up.
		if err := unix.Prlimit(p.Pid(), unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: n, Max: n}, nil); err != nil {
			t.Fatalf("prlimit: %v", err)
		}
		limit = n
	}
	if backend == "uring" {
		// io_uring reads RLIMIT_NOFILE when an accept is prepared, so a
		// multishot accept armed before the limit is lowered keeps
		// accepting past it: the server starts under its limit. (A
		// prlimit right after the start lost that race to the server's
		// first accept once on a loaded machine.)
		limit = 32
		p = servertest.Launch(t, servertest.Options{Args: args, FileLimit: limit})
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(p.Logs(), "msg=listening") {
			if p.Exited() || time.Now().After(deadline) {
				t.Fatalf("server did not start under a limit of %d descriptors\nlog:\n%s", limit, p.Logs())
			}
			time.Sleep(10 * time.Millisecond)
		}
	} else {
		p = servertest.Start(t, servertest.Options{Args: args})
	}
	a, b := rawpeer.Dial(t, p.Addr, rawpeer.Bufs{}), rawpeer.Dial(t, p.Addr, rawpeer.Bufs{})
	open := len(p.FDs(t))
	if backend != "uring" {
		setLimit(uint64(open + 5))
	}

	// Open connections until one gets no ID: accepts are failing. The
	// limit bounds descriptor numbers, not their count, so a hole left by
	// an earlier close may take one more than the arithmetic says.
	var extra []*rawpeer.Peer
	var waiting []net.Conn
	var exhaustedAt time.Time
	for i := 0; len(waiting) < 3; i++ {
		if i > int(limit) {
			t.Fatalf("%d connections accepted under a limit of %d descriptors (%d open): the limit does not bind", i, limit, open)
		}
		dialed := time.Now()
		nc := rawpeer.Connect(t, p.Addr, rawpeer.Bufs{})
		if len(waiting) > 0 {
			waiting = append(waiting, nc) // queued behind the first
			continue
		}
		c, err := rawpeer.ReadID(nc, 500*time.Millisecond)
		switch {
		case err == nil:
			extra = append(extra, c)
		case os.IsTimeout(err):
			exhaustedAt = dialed
			waiting = append(waiting, nc)
		default:
			t.Fatalf("connection %d: %v", i, err)
		}
	}

	// Out of descriptors for a while: the open connections keep relaying,
	// the server does not spin, and it warns at most once a second.
	cpu0, t0 := p.CPUTime(t), time.Now()
	for i := 0; time.Since(t0) < 1500*time.Millisecond; i++ {
		msg := opsPayload(nil, 0, i, 100)
		if err := a.Send(b.ID, msg); err != nil {
			t.Fatal(err)
		}
		got, err := b.Recv(5 * time.Second)
		if err != nil || string(got) != string(msg) {
			t.Fatalf("relaying between open connections while out of descriptors: %.40q, %v", got, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cpu, spent := p.CPUTime(t)-cpu0, time.Since(t0)
	logs := p.Logs()
	var warned []time.Time
	for _, m := range opsWarnTime.FindAllStringSubmatch(logs, -1) {
		at, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			t.Fatalf("warning timestamp %q: %v", m[1], err)
		}
		warned = append(warned, at)
	}
	t.Logf("%s: %d connections accepted up to the limit of %d descriptors; out of descriptors for %v: %v of CPU in %v, %d accept warnings",
		backend, len(extra), limit, time.Since(exhaustedAt).Round(time.Millisecond), cpu, spent.Round(time.Millisecond), len(warned))
	// The server process's CPU time against the time it was out of
	// descriptors: a server retrying accept in a loop takes a whole core
	// (half of one even with the other CPU of a two-core machine busy),
	// while relaying these few frames takes 1 to 3% of one. A third of a
	// core is far from both, so a loaded machine does not fail this and a
	// spinning server still does.
	if cpu > spent/3 {
		t.Errorf("server used %v of CPU in %v out of descriptors (over a third of a core): it spins", cpu, spent.Round(time.Millisecond))
	}
	if len(warned) == 0 {
		t.Errorf("no accept warning in the log:\n%s", logs)
	}
	// Timestamps have millisecond precision or better; allow 10ms of
	// rounding between two lines a second apart.
	for i := 1; i < len(warned); i++ {
		if gap := warned[i].Sub(warned[i-1]); gap < 990*time.Millisecond {
			t.Errorf("accept warnings %v apart, want at most one a second\nlog:\n%s", gap, logs)
		}
	}

	// Free three descriptors: the waiting connections are accepted and get
	// their IDs; after them, a newcomer does too.
	extra = append(extra, a, b)
	for _, c := range extra[:3] {
		c.NC.Close()
	}
	for i, nc := range waiting {
		if _, err := rawpeer.ReadID(nc, 5*time.Second); err != nil {
			t.Fatalf("waiting connection %d after descriptors were freed: %v\nlog:\n%s", i, err, p.Logs())
		}
		nc.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := rawpeer.ReadID(rawpeer.Connect(t, p.Addr, rawpeer.Bufs{}), 2*time.Second)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new connections get no ID after descriptors were freed: %v", err)
		}
	}
}

func TestOpsMetrics(t *testing.T) {
	t.Parallel() // its servers are processes of their own; it mostly waits on them
	for _, backend := range opsBackends {
		t.Run(backend, func(t *testing.T) {
			opsSkipWithoutUring(t, backend)
			p := servertest.Start(t, servertest.Options{Args: []string{"-backend=" + backend, opsMetricsArg}})
			maddr := opsMetricsAddr(t, p)
			const (
				accepted = "ringrelay_connections_accepted_total"
				open     = "ringrelay_connections_open"
				bytes    = "ringrelay_bytes_relayed_total"
				byPeer   = `ringrelay_connections_closed_total{reason="peer"}`
				unknown  = `ringrelay_frames_dropped_total{reason="unknown_destination"}`
			)
			// servertest's readiness probe connected once; wait until it is
			// accepted and gone (it may end in a reset: it closes with its
			// ID unread).
			closed := func(m opsMetrics) (n float64) {
				for key, v := range m.value {
					if strings.HasPrefix(key, "ringrelay_connections_closed_total{") {
						n += v
					}
				}
				return n
			}
			m0 := opsWaitMetric(t, maddr, "the readiness probe accepted and closed", opsPatience, func(m opsMetrics) bool {
				return m.get(t, accepted) >= 1 && m.get(t, open) == 0 && closed(m) == m.get(t, accepted)
			})
			if v := m0.get(t, `ringrelay_backend_info{backend="`+backend+`"}`); v != 1 {
				t.Errorf("backend info is %v, want 1", v)
			}
			for key, typ := range map[string]string{accepted: "counter", open: "gauge", opsRelayed: "counter", bytes: "counter",
				"ringrelay_connections_closed_total": "counter", "ringrelay_frames_dropped_total": "counter",
				"ringrelay_loop_completions_per_wait": "histogram"} {
				if m0.typ[key] != typ {
					t.Errorf("%s has TYPE %q, want %s", key, m0.typ[key], typ)
				}
			}

			a, b, c := rawpeer.Dial(t, p.Addr, rawpeer.Bufs{}), rawpeer.Dial(t, p.Addr, rawpeer.Bufs{}), rawpeer.Dial(t, p.Addr, rawpeer.Bufs{})
			sizes := []int{opsHeadLen, 100, 1000, 10000, 65536}
			wantBytes := 0
			for i, n := range sizes {
				if err := a.Send(b.ID, opsPayload(nil, 0, i, n)); err != nil {
					t.Fatal(err)
				}
				wantBytes += n + 1
			}
			o := &opsOrder{next: make([]int, 1)}
			if err := opsDrain(b, o, func() int { return len(sizes) }); err != nil {
				t.Fatal(err)
			}
			if err := a.Send(a.ID^b.ID^c.ID^0x5a5a5a5a|1, []byte("nobody")); err != nil {
				t.Fatal(err)
			}
			c.NC.Close()

			delta := func(m opsMetrics, key string) float64 { return m.get(t, key) - m0.get(t, key) }
			m1 := opsWaitMetric(t, maddr, "the counters to catch up", opsPatience, func(m opsMetrics) bool {
				return delta(m, unknown) >= 1 && delta(m, byPeer) >= 1
			})
			for _, w := range []struct {
				key  string
				want float64
			}{
				{accepted, 3},
				{opsRelayed, float64(len(sizes))},
				{bytes, float64(wantBytes)},
				{unknown, 1},
				{byPeer, 1},
			} {
				if got := delta(m1, w.key); got != w.want {
					t.Errorf("%s moved by %v, want %v", w.key, got, w.want)
				}
			}
			if v := m1.get(t, open); v != 2 {
				t.Errorf("%s is %v, want 2", open, v)
			}
			// The histogram is cumulative and its count is its +Inf bucket.
			var prev float64
			for _, le := range []string{"1", "2", "4", "8", "16", "32", "64", "128", "256", "512", "+Inf"} {
				v := m1.get(t, `ringrelay_loop_completions_per_wait_bucket{le="`+le+`"}`)
				if v < prev {
					t.Errorf("bucket le=%s is %v, below the one before (%v)", le, v, prev)
				}
				prev = v
			}
			if n := m1.get(t, "ringrelay_loop_completions_per_wait_count"); n != prev {
				t.Errorf("histogram count %v, +Inf bucket %v", n, prev)
			}
		})
	}
}

func TestOpsRSSUnderFlood(t *testing.T) {
	t.Parallel() // its servers are processes of their own; it mostly waits on them
	for _, backend := range opsBackends {
		t.Run(backend, func(t *testing.T) { opsRSSUnderFlood(t, backend) })
	}
}

func opsRSSUnderFlood(t *testing.T, backend string) {
	opsSkipWithoutUring(t, backend)
	const (
		senders  = 50
		maxQueue = 1 << 20
		flood    = 2 * time.Second
	)
	p := servertest.Start(t, servertest.Options{Args: []string{"-backend=" + backend, "-slow-consumer=backpressure", "-max-queue=1MiB", "-max-frame=64KiB"}})
	recv := rawpeer.Dial(t, p.Addr, rawpeer.Bufs{})
	ss := make([]*rawpeer.Peer, senders)
	for i := range ss {
		ss[i] = rawpeer.Dial(t, p.Addr, rawpeer.Bufs{})
	}
	baseline := p.RSS(t)

	f := opsStartFlood(ss, recv.ID, 1000)
	var peak int64
	for start := time.Now(); time.Since(start) < flood; time.Sleep(20 * time.Millisecond) {
		peak = max(peak, p.RSS(t))
	}
	// The bound. Above the baseline, the server's memory under this flood
	// is:
	//  - the receive buffers, -buffers x -buffer-size (1024 x auto: 4 KiB
	//    on io_uring, 16 KiB on epoll), resident as they are first written;
	//  - the receiver's queue: -max-queue, plus what the relay had already
	//    read from each sender when it paused it (one buffer on epoll; on
	//    io_uring one multishot batch of up to 33 buffers, see limReadBatch
	//    in relay/limits_test.go), plus one partly filled 16 KiB chunk.
	//    Output sits in chunks; chunks freed beyond the loop's pool are
	//    garbage until the collector runs, and GOGC=100 lets garbage grow
	//    as large as the live heap: twice the queue;
	//  - the loop's pool of free output chunks, at most 8 MiB;
	//  - 8 MiB for the runtime: stacks, collector metadata, allocator
	//    slack, the 52 connections' bookkeeping.
	const buffers, chunk = 1024, 16 << 10
	bufferSize, batch := 16<<10, 16<<10
	if backend == "uring" {
		bufferSize = 4 << 10
		batch = 33 * bufferSize
	}
	queue := maxQueue + senders*batch + chunk
	bound := baseline + buffers*int64(bufferSize) + 2*int64(queue) + 8<<20 + 8<<20
	mib := func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
	t.Logf("%s: RSS %s at rest, peak %s during %v of flood (+%s); bound %s", backend,
		mib(baseline), mib(peak), flood, mib(peak-baseline), mib(bound))
	if peak > bound {
		t.Errorf("RSS reached %s under a flood to a stalled receiver, over the bound of %s", mib(peak), mib(bound))
	}

	// Resume reading: nothing lost, every sender in order.
	o := &opsOrder{next: make([]int, senders)}
	var want atomic.Int64
	want.Store(-1)
	readErr := make(chan error, 1)
	go func() { readErr <- opsDrain(recv, o, func() int { return int(want.Load()) }) }()
	want.Store(int64(f.finish(t, 20*time.Second)))
	if err := <-readErr; err != nil {
		t.Fatalf("receiver: %v", err)
	}
	for i := range o.next {
		if int64(o.next[i]) != f.sent[i].Load() {
			t.Errorf("sender %d wrote %d frames, %d arrived", i, f.sent[i].Load(), o.next[i])
		}
	}
	if b, err := recv.Recv(100 * time.Millisecond); !os.IsTimeout(err) {
		t.Errorf("after all %d frames: got %.40q, %v; want nothing more", o.total, b, err)
	}
	t.Logf("%s: %d frames delivered after the flood, none lost", backend, o.total)
}

// -loops 2 -cpus 0: two loops pinned to one CPU serve one port; a pair
// placed on the two loops talks through the mesh, and the metrics page
// splits the per-loop series by loop.
func TestOpsTwoLoops(t *testing.T) {
	t.Parallel() // its servers are processes of their own; it mostly waits on them
	for _, backend := range []string{"uring", "epoll"} {
		t.Run(backend, func(t *testing.T) {
			opsSkipWithoutUring(t, backend)
			p := servertest.Start(t, servertest.Options{Args: []string{"-backend=" + backend, "-loops=2", "-cpus=0", opsMetricsArg}})
			maddr := opsMetricsAddr(t, p)
			opsWaitMetric(t, maddr, "the readiness probe gone", opsPatience, func(m opsMetrics) bool {
				return m.get(t, "ringrelay_connections_accepted_total") >= 1 && m.get(t, "ringrelay_connections_open") == 0
			})
			// Placement is by fewest connections: one lands on each loop.
			a := rawpeer.Dial(t, p.Addr, rawpeer.Bufs{})
			b := rawpeer.Dial(t, p.Addr, rawpeer.Bufs{})
			if err := a.Send(b.ID, []byte("across")); err != nil {
				t.Fatal(err)
			}
			if got, err := b.Recv(5 * time.Second); err != nil || string(got) != "across" {
				t.Fatalf("b got %q, %v", got, err)
			}
			// Each loop publishes its own counters at the end of its pass,
			// so the receiving loop's count may show before the sender's.
			outKey := `ringrelay_cross_loop_frames_total{direction="out"}`
			inKey := `ringrelay_cross_loop_frames_total{direction="in"}`
			m := opsWaitMetric(t, maddr, "the frame counted on both loops", opsPatience, func(m opsMetrics) bool {
				return m.get(t, opsRelayed) == 1 && m.get(t, outKey) >= 1 && m.get(t, inKey) >= 1
			})
			for _, key := range []string{`ringrelay_connections_open{loop="0"}`, `ringrelay_connections_open{loop="1"}`} {
				if v := m.get(t, key); v != 1 {
					t.Errorf("%s = %v, want 1 (one connection per loop)", key, v)
				}
			}
			out, in := m.get(t, outKey), m.get(t, inKey)
			if out != 1 || in != 1 {
				t.Errorf("cross-loop frames out %v, in %v: want 1 and 1", out, in)
			}
			if _, unlabelled := m.value["ringrelay_connections_open"]; unlabelled {
				t.Errorf("a per-loop family has an unlabelled series beside its loops")
			}
		})
	}
}
