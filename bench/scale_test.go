package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/servertest"
	"github.com/ringrelay/ringrelay/shard"
)

// {loops} and {cpus} are filled in from the placement, beside the address.
func TestContenderPlacement(t *testing.T) {
	c, err := ParseOpponent("g=/bin/relay -addr {addr} -loops {loops} -cpus={cpus}")
	if err != nil {
		t.Fatal(err)
	}
	got := c.argv("127.0.0.1:9", Placement{Loops: 4, CPUs: []int{2, 3, 6, 7}})
	if want := []string{"/bin/relay", "-addr", "127.0.0.1:9", "-loops", "4", "-cpus=2,3,6,7"}; !slices.Equal(got, want) {
		t.Errorf("argv %q, want %q", got, want)
	}
	// Two loops sharing one CPU, as -handoff runs them.
	if got := c.argv("h:1", Placement{Loops: 2, CPUs: []int{0}}); got[4] != "2" || got[5] != "-cpus=0" {
		t.Errorf("handoff argv %q", got)
	}
	if !c.Scales() {
		t.Error("a command with {loops} does not scale")
	}
	if f, _ := ParseOpponent("c=/bin/c-relay {addr}"); f.Scales() {
		t.Error("a command without {loops} scales")
	}
	b := Backend("/bin/ringrelay", "uring", []string{"-loops", "{loops}", "-cpus", "{cpus}"})
	if got := b.argv("h:1", Placement{Loops: 2, CPUs: []int{0, 1}}); !slices.Equal(got[5:], []string{"-loops", "2", "-cpus", "0,1"}) {
		t.Errorf("backend argv %q", got)
	}
	if got := b.argv("h:1", OnCPUs(nil)); got[6] != "1" || got[8] != "" {
		t.Errorf("unplaced: %q", got)
	}
}

func scaleConfig() ScaleConfig {
	c, _ := ParseOpponent("g=/bin/relay {addr} -loops {loops}")
	return ScaleConfig{
		Columns: []Contender{c}, Points: []Point{must(NewPoint("pingpong", 5, 2, 0, 0, 64))},
		Loops: []int{1, 2, 4}, ServerCPUs: []int{0, 1, 2, 3}, GeneratorCPUs: []int{4, 5},
		Runs: 1, Duration: time.Second,
	}
}

func TestScaleSteps(t *testing.T) {
	cfg := scaleConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	want := []Step{{1, []int{0}}, {2, []int{0, 1}}, {4, []int{0, 1, 2, 3}}}
	if got := cfg.Steps(); !slices.EqualFunc(got, want, func(a, b Step) bool { return a.Loops == b.Loops && slices.Equal(a.CPUs, b.CPUs) }) {
		t.Errorf("steps %v, want %v", got, want)
	}
	cfg.Handoff, cfg.Loops = true, []int{1, 2}
	want = []Step{{1, []int{0}}, {2, []int{0}}}
	if got := cfg.Steps(); !slices.EqualFunc(got, want, func(a, b Step) bool { return a.Loops == b.Loops && slices.Equal(a.CPUs, b.CPUs) }) {
		t.Errorf("handoff steps %v, want %v", got, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}
}

func TestScaleValidate(t *testing.T) {
	for what, change := range map[string]func(*ScaleConfig){
		"overlapping CPUs":  func(c *ScaleConfig) { c.GeneratorCPUs = []int{3, 4} },
		"too many loops":    func(c *ScaleConfig) { c.Loops = []int{1, 8} },
		"zero loops":        func(c *ScaleConfig) { c.Loops = []int{0} },
		"loops twice":       func(c *ScaleConfig) { c.Loops = []int{2, 2} },
		"no loop count":     func(c *ScaleConfig) { c.Loops = nil },
		"no server CPU":     func(c *ScaleConfig) { c.ServerCPUs = nil },
		"idle point":        func(c *ScaleConfig) { c.Points = append(c.Points, must(NewPoint("idle", 0, 0, 0, 10, 0))) },
		"no column":         func(c *ScaleConfig) { c.Columns = nil },
		"zero runs":         func(c *ScaleConfig) { c.Runs = 0 },
		"handoff, no CPU":   func(c *ScaleConfig) { c.Handoff, c.ServerCPUs = true, nil },
		"negative duration": func(c *ScaleConfig) { c.Duration = -time.Second },
	} {
		cfg := scaleConfig()
		change(&cfg)
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
}

// fixedScaleReport is a hand-made scale run: two columns at 1, 2 and 4
// loops.
func fixedScaleReport() *ScaleReport {
	pp := must(must(NewPoint("pingpong", 500, 16, 0, 0, 64)).Paired(PairRandom, 1))
	r := &ScaleReport{
		Machine: Machine{CPUModel: "Test CPU", Cores: 16, Kernel: "Linux 6.18.0 x86_64", Go: "go1.26"},
		Started: time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC),
		Settings: ScaleSettings{
			Columns: []string{"uring", "gnet"},
			Commands: map[string]string{
				"uring": "bin/ringrelay -listen {addr} -backend uring -loops {loops} -cpus {cpus}",
				"gnet":  "/tmp/ref/gnet-relay -addr {addr} -loops {loops}",
			},
			Runs: 1, Warmup: "1s", Duration: "3s",
			ServerCPUs: seq(0, 7), GeneratorCPUs: seq(8, 15), ThreadsPerCore: 1,
			Steps: []Step{{1, []int{0}}, {2, []int{0, 1}}, {4, []int{0, 1, 2, 3}}},
		},
	}
	rates := map[string][]float64{"uring": {1e6, 1.8e6, 3e6}, "gnet": {0.8e6, 1.6e6, 2e6}}
	sp := ScalePoint{Point: pp}
	for si, st := range r.Settings.Steps {
		for _, col := range r.Settings.Columns {
			f := Figures{Seconds: 3, FramesPerSec: rates[col][si], ServerMeasured: true, ServerCPUPerFrameUs: 0.5,
				GeneratorCPU: 300, GeneratorThreads: 8, RTT: &Latency{P99: 2500}}
			if col == "gnet" && st.Loops == 4 {
				f.GeneratorCPU = 750 // 8 threads on 8 CPUs: near saturation
				f.Errors, f.ErrorSamples = 1, []string{"pingpong pair 3, B: EOF"}
			}
			sp.Rows = append(sp.Rows, ScaleRow{Step: st, Column: col, Median: f, Runs: []Figures{f}})
		}
	}
	r.Points = []ScalePoint{sp}
	r.fillRatios()
	return r
}

func TestScaleRatios(t *testing.T) {
	r := fixedScaleReport()
	want := map[string][]float64{ // scaling, vs the first column
		"uring": {1, 0.9, 0.75, 0, 0, 0},
		"gnet":  {1, 1, 0.625, 0.8, 1.6e6 / 1.8e6, 2.0 / 3},
	}
	for i, rw := range r.Points[0].Rows {
		w := want[rw.Column]
		step := i / 2
		if !near(rw.Scaling, w[step]) || !near(rw.VsFirst, w[3+step]) {
			t.Errorf("%s at %d loops: scaling %.3f vs first %.3f, want %.3f and %.3f", rw.Column, rw.Loops, rw.Scaling, rw.VsFirst, w[step], w[3+step])
		}
	}
	if !r.Failed() {
		t.Error("a row with errors does not fail the report")
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestWriteScaleMarkdown(t *testing.T) {
	var b strings.Builder
	if err := WriteScaleMarkdown(&b, fixedScaleReport()); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"## ringbench scale, 2026-12-02 05:00:00 UTC",
		"N loops on the first N of CPUs 0,1,2,3,4,5,6,7, loop k pinned to the k-th; generator on CPUs 8,9,10,11,12,13,14,15",
		"  - gnet: `/tmp/ref/gnet-relay -addr {addr} -loops {loops}`\n",
		"### pingpong-p500-w16-random\n",
		"| loops | server CPUs | server | frames/s | scaling | vs uring | CPU µs/frame | p99 µs | gen CPU % | status |",
		"| 2 | 0,1 | uring | 1,800,000 | 0.90 | - | 0.50 | 2,500 | 300 | ok |",
		"| 4 | 0,1,2,3 | gnet | 2,000,000 * | 0.62 | 0.67 | 0.50 | 2,500 | 750 | FAILED |",
		"these rows may understate the server: pingpong-p500-w16-random, 4 loop(s), gnet (750%).",
		"- pingpong-p500-w16-random, 4 loop(s), gnet: 1 error(s)\n  - pingpong pair 3, B: EOF\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in:\n%s", want, md)
		}
	}
	if strings.Contains(md, "Handoff cost") {
		t.Error("a scale run reports a handoff cost")
	}
}

// Against ringrelay's own binary, which has no -loops yet: the command
// line template is filled in at each step (the wrapper prints it before it
// execs the server, so it is the opponent's start line), every point is
// measured at every loop count, and -handoff puts both loop counts on one
// CPU and sums up their ratio.
func TestScaleEndToEnd(t *testing.T) {
	bin := filepath.Join(servertest.Binaries(t), "ringrelay")
	cpus, err := shard.AllowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := ParseOpponent(fmt.Sprintf("w=/bin/sh -c 'echo loops={loops} cpus={cpus}; exec %s -listen {addr} -backend epoll'", bin))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := ParseOpponent("plain=" + bin + " -listen {addr} -backend uring")
	if err != nil {
		t.Fatal(err)
	}
	pp := must(must(NewPoint("pingpong", 6, 4, 0, 0, 64)).Paired(PairRandom, 5))
	fl := must(must(NewPoint("flood", 3, 0, 0, 0, 256)).Paired(PairRandom, 5))
	cfg := ScaleConfig{
		Columns: []Contender{wrapped, plain}, Points: []Point{pp, fl},
		Loops: []int{1, 2}, ServerCPUs: cpus[:1], GeneratorCPUs: cpus[1:], Handoff: true,
		Runs: 1, Warmup: 200 * time.Millisecond, Duration: 300 * time.Millisecond,
	}
	before := append([]int(nil), cpus...)
	var log strings.Builder
	r, err := Scale(context.Background(), cfg, NewProgress(&log))
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if after, _ := shard.AllowedCPUs(); !slices.Equal(after, before) {
		t.Errorf("scale left this process on CPUs %v, was on %v", after, before)
	}
	if r.Failed() {
		var md strings.Builder
		_ = WriteScaleMarkdown(&md, r)
		t.Fatalf("a point failed:\n%s", md.String())
	}
	for _, loops := range []int{1, 2} {
		if got, want := r.Settings.StartLines["w"][loops], fmt.Sprintf("loops=%d cpus=%d", loops, cpus[0]); got != want {
			t.Errorf("start line at %d loops: %q, want %q", loops, got, want)
		}
	}
	if !slices.Equal(r.Settings.Fixed, []string{"plain"}) {
		t.Errorf("fixed columns %v", r.Settings.Fixed)
	}
	for _, p := range r.Points {
		if len(p.Rows) != 4 {
			t.Fatalf("%s: %d rows, want 2 steps x 2 columns", p.Point.Name, len(p.Rows))
		}
		for _, rw := range p.Rows {
			f := rw.Median
			if f.FramesPerSec <= 0 || !f.ServerMeasured || f.ServerRSS <= 0 || rw.Scaling <= 0 || !slices.Equal(rw.CPUs, cpus[:1]) {
				t.Errorf("%s, %d loops, %s: %+v", p.Point.Name, rw.Loops, rw.Column, rw)
			}
			// One worker per generator CPU, at most one per pair
			// (pingpong) or connection (flood).
			most := f.Conns
			if p.Point.Workload == "pingpong" {
				most = p.Point.Pairs
			}
			if len(cpus) > 1 && f.GeneratorThreads != min(len(cpus)-1, most) {
				t.Errorf("%s: %d generator threads for %d CPUs", p.Point.Name, f.GeneratorThreads, len(cpus)-1)
			}
		}
	}
	var md strings.Builder
	if err := WriteScaleMarkdown(&md, r); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("- %s, w: 2 loops sharing CPU %d deliver ", pp.Name, cpus[0]); !strings.Contains(md.String(), want) {
		t.Errorf("no handoff summary %q in:\n%s", want, md.String())
	}
	if strings.Contains(md.String(), ", plain: 2 loops") {
		t.Errorf("a column without {loops} has a handoff cost:\n%s", md.String())
	}
}

// cancelOn cancels a context when the result line of a measurement whose
// label contains text is written.
type cancelOn struct {
	mu     sync.Mutex
	text   string
	cancel context.CancelFunc
	log    strings.Builder
}

func (c *cancelOn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.log.Write(p)
	if line := string(p); strings.Contains(line, c.text) && strings.Contains(line, "gen CPU") {
		c.cancel()
	}
	return len(p), nil
}

// A server that does not start fails its rows, with the reason, and the
// other columns are still measured. Stopped half way, scale reports what it
// measured and says it was interrupted.
func TestScaleFailuresAndInterruption(t *testing.T) {
	bin := filepath.Join(servertest.Binaries(t), "ringrelay")
	cpus, err := shard.AllowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	broken, err := ParseOpponent("broken=/bin/sh -c 'echo flag provided but not defined: -loops {loops} {addr} >&2; exit 2'")
	if err != nil {
		t.Fatal(err)
	}
	good, err := ParseOpponent("good=" + bin + " -listen {addr} -backend epoll")
	if err != nil {
		t.Fatal(err)
	}
	pp := must(NewPoint("pingpong", 2, 2, 0, 0, 64))
	fl := must(NewPoint("flood", 2, 0, 0, 0, 256))
	cfg := ScaleConfig{
		Columns: []Contender{broken, good}, Points: []Point{pp, fl},
		Loops: []int{1}, ServerCPUs: cpus[:1], GeneratorCPUs: cpus[1:],
		Runs: 2, Warmup: 20 * time.Millisecond, Duration: 100 * time.Millisecond,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Stop during run 2, once good has measured its first point there.
	w := &cancelOn{text: "[7/8]", cancel: cancel}
	r, err := Scale(ctx, cfg, NewProgress(w))
	if err != nil {
		t.Fatalf("%v\n%s", err, w.log.String())
	}
	if !r.Interrupted {
		t.Errorf("not marked interrupted:\n%s", w.log.String())
	}
	byColumn := map[string][]ScaleRow{}
	for _, p := range r.Points {
		for _, rw := range p.Rows {
			byColumn[rw.Column] = append(byColumn[rw.Column], rw)
		}
	}
	for _, rw := range byColumn["broken"] {
		if !rw.Median.Failed() || !strings.Contains(strings.Join(rw.Median.ErrorSamples, "\n"), "server did not start") {
			t.Errorf("broken's row: %+v", rw.Median)
		}
	}
	// good: both points in run 1, and the first again in run 2 (its
	// second was cut short and is left out).
	if rows := byColumn["good"]; len(rows) != 2 || len(rows[0].Runs) != 2 || len(rows[1].Runs) != 1 {
		t.Fatalf("good's rows: %+v\n%s", rows, w.log.String())
	}
	for _, rw := range byColumn["good"] {
		if rw.Median.Failed() || rw.Median.FramesPerSec <= 0 {
			t.Errorf("good, %s: %+v", rw.Column, rw.Median)
		}
	}
	var md strings.Builder
	if err := WriteScaleMarkdown(&md, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "**Interrupted**") {
		t.Errorf("the report does not say it is incomplete:\n%s", md.String())
	}
}
