package bench

import "time"

// fixedReport is a small, hand-made result set: two backends, a pingpong
// point, a flood point where epoll failed, and an idle point.
func fixedReport() *Report {
	pp := must(NewPoint("pingpong", 50, 16, 0, 0, 64))
	fl := must(NewPoint("flood", 0, 0, 0, 0, 1024))
	id := must(NewPoint("idle", 0, 0, 0, 1000, 0))
	fig := func(fps, mbps, cpu float64, rss int64, gen float64) Figures {
		return Figures{Seconds: 5, Conns: 2, Frames: int64(fps * 5), FramesPerSec: fps, MBPerSec: mbps,
			ServerMeasured: true, ServerCPUSeconds: cpu * fps * 5 / 1e6, ServerCPUPerFrameUs: cpu,
			ServerRSS: rss, GeneratorCPU: gen}
	}
	ppU := fig(500000, 32, 1.2, 14<<20, 95)
	ppU.RTT = &Latency{P50: 1844, P99: 9000, P999: 12000.4, Max: 15000, Count: 100}
	ppE := fig(400000, 25.6, 1.8, 10<<20, 78)
	ppE.RTT = &Latency{P50: 3158.2, P99: 10000, P999: 13156, Max: 15065, Count: 90}
	flE := fig(379845.4, 389, 2.55, 10<<20, 66)
	flE.Errors, flE.ErrorSamples = 2, []string{"flood receiver: frame out of order: sender 0 sent seq 7, want 6"}
	idU := Figures{Seconds: 5, Conns: 1000, ServerMeasured: true, ServerRSS: 18 << 20, RSSPerConn: 1024}
	idE := Figures{Seconds: 5, Conns: 1000, ServerMeasured: true, ServerRSS: 19 << 20, RSSPerConn: 2048}
	one := func(b string, f Figures) BackendResult {
		return BackendResult{Backend: b, Median: f, Runs: []Figures{f}}
	}
	return &Report{
		Machine: Machine{CPUModel: "Test CPU <3GHz>", Cores: 2, Kernel: "Linux 6.18.0 x86_64", Go: "go1.26"},
		Started: time.Date(2025, 11, 25, 20, 40, 3, 0, time.UTC),
		Settings: Settings{Backends: []string{"uring", "epoll"}, Runs: 1,
			Commands: map[string]string{
				"uring": "bin/ringrelay -listen {addr} -backend uring",
				"epoll": "bin/ringrelay -listen {addr} -backend epoll",
			},
			Warmup: "500ms", Duration: "5s", ServerCPU: 0, GeneratorCPUs: []int{1}},
		Points: []PointResult{
			{Point: id, Backends: []BackendResult{one("uring", idU), one("epoll", idE)}},
			{Point: pp, Backends: []BackendResult{one("uring", ppU), one("epoll", ppE)}},
			{Point: fl, Backends: []BackendResult{one("uring", fig(254954.6, 261.1, 3.92, 32<<20, 24)), one("epoll", flE)}},
		},
	}
}

// withOpponent adds a third column, an opponent called c, to fixedReport.
func withOpponent(r *Report) *Report {
	r.Settings.Backends = append(r.Settings.Backends, "c")
	r.Settings.Commands["c"] = "/tmp/ref/c-uring-relay {addr}"
	figs := []Figures{
		{Seconds: 5, Conns: 1000, ServerMeasured: true, ServerRSS: 40 << 20, RSSPerConn: 4096},
		{Seconds: 5, Conns: 100, Frames: 5e6, FramesPerSec: 1e6, MBPerSec: 64, ServerMeasured: true,
			ServerCPUPerFrameUs: 0.6, ServerRSS: 8 << 20, GeneratorCPU: 60, GeneratorThreads: 1,
			RTT: &Latency{P50: 900, P99: 4500, P999: 6000, Max: 7000, Count: 100}},
		{Seconds: 5, Conns: 2, Frames: 2e6, FramesPerSec: 4e5, MBPerSec: 400, ServerMeasured: true,
			ServerCPUPerFrameUs: 2, ServerRSS: 9 << 20, GeneratorCPU: 50, GeneratorThreads: 1},
	}
	for i := range r.Points {
		r.Points[i].Backends = append(r.Points[i].Backends, BackendResult{Backend: "c", Median: figs[i], Runs: figs[i : i+1]})
	}
	return r
}
