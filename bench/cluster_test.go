package bench

import (
	"context"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/internal/servertest"
)

// ringbench cluster starts NATS and two real nodes, and both rows carry
// traffic that passed the integrity checks; every pair crosses nodes in
// the second.
func TestClusterAgainstNodes(t *testing.T) {
	bin := servertest.Binaries(t)
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+"/", "./internal/devnats")
	build.Dir = ".."
	build.Env = append(build.Environ(), "GOFLAGS=-ldflags=-checklinkname=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build devnats: %v\n%s", err, out)
	}
	p, err := NewPoint("pingpong", 4, 4, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ClusterConfig{
		Server: filepath.Join(bin, "ringrelay"), DevNATS: filepath.Join(dir, "devnats"),
		Flags: []string{"-loops=1"}, Point: p, Runs: 1,
		Warmup: 200 * time.Millisecond, Duration: 300 * time.Millisecond,
	}
	r, err := Cluster(context.Background(), cfg, NewProgress(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]Figures{"one node": r.Single, "two nodes": r.Cross} {
		if f.Frames == 0 || f.Errors != 0 || f.RTT == nil || f.RTT.Count == 0 {
			t.Fatalf("%s: %d frames, %d errors %v, rtt %+v", name, f.Frames, f.Errors, f.ErrorSamples, f.RTT)
		}
	}
	if r.Failed() || len(r.SingleRuns) != 1 || len(r.CrossRuns) != 1 {
		t.Fatalf("report: failed %v, %d and %d runs", r.Failed(), len(r.SingleRuns), len(r.CrossRuns))
	}
	var b strings.Builder
	if err := WriteClusterMarkdown(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| one node |", "| across two nodes |", "of the frames/s on one node; the hop adds"} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("markdown lacks %q:\n%s", want, b.String())
		}
	}
}
