package main

import (
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ringrelay/ringrelay/internal/servertest"
)

func TestCgroupMemoryMax(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	for _, c := range []struct {
		name string
		fs   fstest.MapFS
		want int64 // 0: no limit
	}{
		{"v2 with a limit", fstest.MapFS{
			"proc/self/cgroup": file("0::/system.slice/ringrelay.service\n"),
			"sys/fs/cgroup/system.slice/ringrelay.service/memory.max": file("536870912\n"),
		}, 512 << 20},
		{"v2 without a limit", fstest.MapFS{
			"proc/self/cgroup":                    file("0::/user.slice\n"),
			"sys/fs/cgroup/user.slice/memory.max": file("max\n"),
		}, 0},
		{"v2 in a private namespace", fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("1073741824\n"),
		}, 1 << 30},
		{"v1 path not mounted, root of the mount", fstest.MapFS{
			"proc/self/cgroup":                           file("5:devices:/\n4:memory:/docker/abc\n1:cpu:/\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes": file("268435456\n"),
		}, 256 << 20},
		{"v1 unlimited", fstest.MapFS{
			"proc/self/cgroup":                           file("4:cpu,memory:/\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes": file("9223372036854771712\n"),
		}, 0},
		{"no cgroup file", fstest.MapFS{}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := cgroupMemoryMax(c.fs)
			if ok != (c.want > 0) || got != c.want {
				t.Fatalf("cgroupMemoryMax = %d, %v; want %d", got, ok, c.want)
			}
		})
	}
}

// GOMEMLIMIT set by the user is the limit the server runs with: the
// start-up line reports the runtime's own figure, unchanged.
func TestGOMEMLIMITHonoured(t *testing.T) {
	p := servertest.Start(t, servertest.Options{Env: []string{"GOMEMLIMIT=200MiB"}})
	line := ""
	for _, l := range strings.Split(p.Logs(), "\n") {
		if strings.Contains(l, "Go memory limit") {
			line = l
		}
	}
	if !strings.Contains(line, "limit=200MiB") || !strings.Contains(line, "source=GOMEMLIMIT") {
		t.Fatalf("want a start-up line with limit=200MiB source=GOMEMLIMIT; logs:\n%s", p.Logs())
	}
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}
