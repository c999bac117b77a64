package bench

import (
	"context"
	"crypto/tls"
	"time"

	"github.com/ringrelay/ringrelay/internal/servertest"
)

// Latency holds round-trip percentiles in microseconds.
type Latency struct {
	P50   float64 `json:"p50_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p999_us"`
	Max   float64 `json:"max_us"`
	Count int64   `json:"count"`
}

// Figures is what one measured window of one point produced.
//
// Frames are counted where they are delivered: for pingpong both directions
// count, so round trips per second are half of FramesPerSec. MB/s counts
// payload bytes (without the trailing 0x00) in units of 10^6 bytes.
type Figures struct {
	Seconds      float64  `json:"window_s"`
	Conns        int      `json:"conns"`
	Frames       int64    `json:"frames"`
	FramesPerSec float64  `json:"frames_per_s"`
	MBPerSec     float64  `json:"payload_mb_per_s"`
	RTT          *Latency `json:"rtt,omitempty"`

	// Server figures, present when the server's pid is known.
	ServerMeasured      bool    `json:"server_measured"`
	ServerCPUSeconds    float64 `json:"server_cpu_s"`
	ServerCPUPerFrameUs float64 `json:"server_cpu_us_per_frame"`
	ServerRSS           int64   `json:"server_rss_bytes"`
	RSSPerConn          float64 `json:"server_rss_per_conn_bytes,omitempty"` // idle only

	// GeneratorCPU is this process's CPU time over the window as a percentage
	// of one core; near 100 per core it is pinned to, the generator, not the
	// server, may have been the limit.
	GeneratorCPU float64 `json:"generator_cpu_percent"`
	// GeneratorThreads is how many threads moved the traffic: the most
	// CPUs the generator could keep busy.
	GeneratorThreads int `json:"generator_threads,omitempty"`

	Errors       int      `json:"errors"`
	ErrorSamples []string `json:"error_samples,omitempty"`

	// Interrupted says the context ended before the window did.
	Interrupted bool `json:"-"`
}

// Failed reports whether the window saw any error.
func (f Figures) Failed() bool { return f.Errors > 0 }

// Options control one Measure call.
type Options struct {
	Warmup    time.Duration // traffic before the window, not measured
	Duration  time.Duration // the measured window
	ServerPID int           // 0: server CPU and RSS are not measured
	Workers   int           // the generator's threads at most; 0: one per CPU it may use
	// WorkerCPUs, if set, gives the generator one thread per CPU listed,
	// each pinned to its own (Workers is then ignored).
	WorkerCPUs []int
	// TLS, if set, dials the server over TLS 1.3 with this configuration.
	TLS *tls.Config
	// Progress, if set, is called a few times a second with the time since
	// traffic started and the current delivery rate.
	Progress func(elapsed time.Duration, framesPerSec float64)
}

// snapshot is the state of every counter at one instant.
type snapshot struct {
	at        int64 // nanotime
	frames    int64
	bytes     int64
	serverCPU time.Duration
	selfCPU   time.Duration
}

// Measure runs point p against the server at addr: it opens the
// connections, runs a warm-up, measures one window, then closes everything.
// Setup failures are reported as errors in the returned Figures.
func Measure(ctx context.Context, addr string, p Point, o Options) Figures {
	m := newMeter()
	fig := measure(ctx, addr, p, o, m)
	fig.Errors, fig.ErrorSamples = m.errors()
	return fig
}

func measure(ctx context.Context, addr string, p Point, o Options, m *meter) Figures {
	var fig Figures
	tr, err := newTraffic(p, o.Workers, o.WorkerCPUs)
	if err != nil {
		m.fail("%v", err)
		return fig
	}
	d, err := newDialer(addr)
	if err != nil {
		m.fail("%v", err)
		return fig
	}
	d.tls = o.TLS
	pid := o.ServerPID
	var rssBefore int64
	if pid > 0 {
		if rssBefore, err = servertest.RSS(pid); err != nil {
			m.fail("server: %v", err)
			return fig
		}
	}
	if err := tr.open(ctx, d); err != nil {
		fig.Interrupted = ctx.Err() != nil
		m.fail("%s: %v", p.Name, err)
		return fig
	}
	fig.Conns, fig.GeneratorThreads = tr.conns(), tr.threads()
	tr.start(m)

	start := nanotime()
	ok := waitWhileRunning(ctx, m, start, o.Warmup, o.Progress)
	before := take(m, pid)
	m.measuring.Store(true)
	ok = ok && waitWhileRunning(ctx, m, start, o.Duration, o.Progress)
	m.measuring.Store(false)
	after := take(m, pid)
	if !ok {
		fig.Interrupted = true
		m.fail("%s: interrupted", p.Name)
	}
	if pid > 0 {
		fig.ServerMeasured = true
		if fig.ServerRSS, err = servertest.RSS(pid); err != nil {
			m.fail("server: %v (did it exit?)", err)
		}
	}
	m.stopping.Store(true)
	tr.finish(m)
	if p.Workload != "idle" && after.frames == before.frames && ok {
		m.fail("%s: no frame delivered during the measured window", p.Name)
	}

	window := time.Duration(after.at - before.at)
	fig.Seconds = window.Seconds()
	fig.Frames = after.frames - before.frames
	if fig.Seconds > 0 {
		fig.FramesPerSec = float64(fig.Frames) / fig.Seconds
		fig.MBPerSec = float64(after.bytes-before.bytes) / 1e6 / fig.Seconds
		fig.GeneratorCPU = 100 * (after.selfCPU - before.selfCPU).Seconds() / fig.Seconds
	}
	if fig.ServerMeasured {
		fig.ServerCPUSeconds = (after.serverCPU - before.serverCPU).Seconds()
		if fig.Frames > 0 {
			fig.ServerCPUPerFrameUs = fig.ServerCPUSeconds * 1e6 / float64(fig.Frames)
		}
		if p.Workload == "idle" && fig.Conns > 0 {
			fig.RSSPerConn = float64(fig.ServerRSS-rssBefore) / float64(fig.Conns)
		}
	}
	if h := m.rtt; h.TotalCount() > 0 {
		us := func(ns int64) float64 { return float64(ns) / 1e3 }
		fig.RTT = &Latency{
			P50:   us(h.ValueAtQuantile(50)),
			P99:   us(h.ValueAtQuantile(99)),
			P999:  us(h.ValueAtQuantile(99.9)),
			Max:   us(h.Max()),
			Count: h.TotalCount(),
		}
	}
	return fig
}

// waitWhileRunning lets traffic run for d, reporting progress. It returns
// false if ctx ends first.
func waitWhileRunning(ctx context.Context, m *meter, start int64, d time.Duration, progress func(time.Duration, float64)) bool {
	const tick = 250 * time.Millisecond
	end := time.NewTimer(d)
	defer end.Stop()
	t := time.NewTicker(tick)
	defer t.Stop()
	lastAt, lastFrames := nanotime(), m.frames.Load()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-end.C:
			return true
		case <-t.C:
			if progress == nil {
				continue
			}
			now, frames := nanotime(), m.frames.Load()
			rate := float64(frames-lastFrames) / time.Duration(now-lastAt).Seconds()
			lastAt, lastFrames = now, frames
			progress(time.Duration(now-start), rate)
		}
	}
}

func take(m *meter, pid int) snapshot {
	s := snapshot{at: nanotime(), frames: m.frames.Load(), bytes: m.bytes.Load(), selfCPU: servertest.SelfCPU()}
	if pid > 0 {
		s.serverCPU, _ = servertest.CPUTime(pid) // a vanished server is reported through its RSS
	}
	return s
}
