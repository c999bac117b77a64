package servertest

import (
	"context"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringrelay/ringrelay/shard"
)

// A pinned child runs only where it was pinned, from its first thread on,
// and the /proc readers see it.
func TestRunPinnedAndObserved(t *testing.T) {
	cpus, err := shard.Affinity(0)
	if err != nil {
		t.Fatal(err)
	}
	want := cpus[len(cpus)-1:]
	p, err := Run(Command{Path: "/bin/sh", Args: []string{"-c", "echo started; exec sleep 30"}, CPUs: want, RaiseFileLimit: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	got, err := shard.Affinity(p.Pid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("child may run on CPUs %v, want %v", got, want)
	}
	if now, _ := shard.Affinity(0); !slices.Equal(now, cpus) {
		t.Errorf("starting a pinned child changed this process's CPUs from %v to %v", cpus, now)
	}
	if rss := p.RSS(t); rss <= 0 {
		t.Errorf("RSS %d", rss)
	}
	if n := p.Threads(t); n < 1 {
		t.Errorf("%d threads", n)
	}
	if fds := p.FDs(t); len(fds) < 3 {
		t.Errorf("descriptors %v: stdin, stdout and stderr at least", fds)
	}
	if cpu := p.CPUTime(t); cpu < 0 || cpu > time.Minute {
		t.Errorf("CPU time %v", cpu)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.Logs(), "started") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(p.Logs(), "started") {
		t.Errorf("output not collected: %q", p.Logs())
	}
	// sleep has no SIGTERM handler: dying of the signal Stop sent is a
	// clean stop.
	if err := p.Stop(5 * time.Second); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if !p.Exited() {
		t.Error("still running after Stop")
	}
}

// A child that fails on its own is reported as such, with its output.
func TestStopReportsAFailedChild(t *testing.T) {
	p, err := Run(Command{Path: "/bin/sh", Args: []string{"-c", "echo boom; exit 3"}})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if err := p.Stop(time.Second); err == nil || !strings.Contains(err.Error(), "3") {
		t.Errorf("Stop after exit 3: %v", err)
	}
}

// WaitReady gives up as soon as the process exits and shows its output.
func TestWaitReadyNoticesAnExit(t *testing.T) {
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Run(Command{Path: "/bin/sh", Args: []string{"-c", "echo cannot bind; exit 1"}, Addr: addr, OutputTail: 8})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = p.WaitReady(context.Background(), time.Minute, 4)
	if err == nil || !strings.Contains(err.Error(), "exited") || !strings.Contains(err.Error(), "bind") {
		t.Fatalf("WaitReady: %v", err)
	}
	if strings.Contains(err.Error(), "cannot") {
		t.Errorf("OutputTail 8 kept more than the tail: %v", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("took %v to notice the exit", d)
	}
}

func TestReadersFailForAMissingProcess(t *testing.T) {
	const pid = 1 << 30 // above pid_max
	if _, err := CPUTime(pid); err == nil {
		t.Error("CPUTime of a missing process succeeded")
	}
	if _, err := RSS(pid); err == nil {
		t.Error("RSS of a missing process succeeded")
	}
	if _, err := RSS(os.Getpid()); err != nil {
		t.Errorf("RSS of this process: %v", err)
	}
	if SelfCPU() <= 0 {
		t.Error("SelfCPU is 0")
	}
}

// TCPQueues sees bytes that were written and not yet read in the
// receiver's queue, and none left in the sender's once the receiving
// kernel took them.
func TestTCPQueues(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := c.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	var tx, rx int
	WaitFor(t, "1000 unread bytes at the receiver", 10*time.Second, func() bool {
		if _, rx, err = TCPQueues(s.LocalAddr().String(), s.RemoteAddr().String()); err != nil {
			t.Fatal(err)
		}
		return rx == 1000
	})
	if tx, _, err = TCPQueues(c.LocalAddr().String(), c.RemoteAddr().String()); err != nil || tx != 0 {
		t.Fatalf("sender's unacknowledged bytes %d, %v; want 0", tx, err)
	}
	if _, _, err := TCPQueues(c.LocalAddr().String(), "127.0.0.1:1"); err == nil {
		t.Fatal("found a socket that does not exist")
	}
}
