package main

import (
	"bytes"
	"encoding/binary"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ringrelay/ringrelay/internal/natstest"
	"github.com/ringrelay/ringrelay/internal/rawpeer"
	"github.com/ringrelay/ringrelay/internal/servertest"
)

// TestClusterTwoProcesses runs two ringrelay processes joined through one
// NATS server: a frame crosses each way, the metrics page shows the
// bridge, a third process started with a -node already served refuses to
// start, and both nodes stop cleanly.
func TestClusterTwoProcesses(t *testing.T) {
	t.Parallel() // its servers are processes of their own; it mostly waits on them
	url := natstest.Start(t, 1, natstest.Options{MaxPayload: 2 << 20}).URL(0)
	maddr := make([]string, 2)
	var nodes []*servertest.Proc
	for k := range 2 {
		nodes = append(nodes, servertest.Launch(t, servertest.Options{Args: []string{
			"-cluster=" + url, "-node=" + string(rune('0'+k)), "-node-bits=2", "-cluster-name=rrcmd",
			opsMetricsArg, "-backend=epoll",
		}}))
		maddr[k] = opsMetricsAddr(t, nodes[k])
	}
	for k, p := range nodes {
		up := `ringrelay_cluster_node_up{node="` + string(rune('1'-k)) + `"}`
		opsWaitMetric(t, maddr[k], "node "+string(rune('0'+k))+" to see the other up", opsPatience, func(m opsMetrics) bool {
			return m.value[up] == 1 && m.value["ringrelay_cluster_bus_connected"] == 1
		})
		if p.Exited() {
			t.Fatalf("node %d exited:\n%s", k, p.Logs())
		}
	}
	a := rawpeer.Dial(t, nodes[0].Addr, rawpeer.Bufs{})
	b := rawpeer.Dial(t, nodes[1].Addr, rawpeer.Bufs{})
	if a.ID>>30 != 0 || b.ID>>30 != 1 {
		t.Fatalf("IDs %08x, %08x do not carry nodes 0 and 1 in their top 2 bits", a.ID, b.ID)
	}
	for _, x := range []struct {
		from, to *rawpeer.Peer
		msg      string
	}{{a, b, "to node 1"}, {b, a, "back to node 0"}} {
		if err := x.from.Send(x.to.ID, []byte(x.msg)); err != nil {
			t.Fatal(err)
		}
		got, err := x.to.Recv(5 * time.Second)
		if err != nil || string(got) != x.msg {
			t.Fatalf("got %q, %v; want %q", got, err, x.msg)
		}
	}
	m := opsScrape(t, maddr[0])
	for key, want := range map[string]float64{
		`ringrelay_cluster_frames_out_total{node="1"}`: 1,
		`ringrelay_cluster_frames_in_total{node="1"}`:  1,
		`ringrelay_cluster_bytes_out_total{node="1"}`:  float64(len("to node 1") + 1),
		`ringrelay_cluster_serving`:                    1,
	} {
		if got := m.get(t, key); got != want {
			t.Errorf("node 0: %s = %v, want %v", key, got, want)
		}
	}
	if m.get(t, "ringrelay_cluster_batches_published_total") < 1 || m.typ["ringrelay_cluster_frames_dropped_total"] != "counter" {
		t.Errorf("node 0: batches published %v, drops family type %q", m.get(t, "ringrelay_cluster_batches_published_total"), m.typ["ringrelay_cluster_frames_dropped_total"])
	}

	// Another process for node 1: it must refuse, say why, and exit 1.
	dup := servertest.Launch(t, servertest.Options{Args: []string{"-cluster=" + url, "-node=1", "-node-bits=2", "-cluster-name=rrcmd", "-backend=epoll"}})
	if code := dup.Wait(t, 15*time.Second); code != 1 {
		t.Fatalf("a second node 1 exited %d, want 1\n%s", code, dup.Logs())
	}
	if !strings.Contains(dup.Logs(), "another process serves this node index") {
		t.Errorf("the refusal does not say why:\n%s", dup.Logs())
	}
	// And node 1 is still there.
	if err := a.Send(b.ID, []byte("still node 1")); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Recv(5 * time.Second); err != nil || string(got) != "still node 1" {
		t.Fatalf("after the refused duplicate: %q, %v", got, err)
	}

	for k, p := range nodes {
		p.Signal(t, syscall.SIGTERM)
		if code := p.Wait(t, 15*time.Second); code != 0 {
			t.Errorf("node %d exited %d\n%s", k, code, p.Logs())
		}
	}
}

// TestClusterStartFailures: a bus that cannot carry a max-frame frame, and
// a bus that is not there, stop the process at start with exit 1 and a
// message that says what to change.
func TestClusterStartFailures(t *testing.T) {
	// Its servers are processes of their own; it mostly waits on them.
	t.Parallel()
	small := natstest.Start(t, 1, natstest.Options{MaxPayload: 1 << 20}).URL(0) // NATS's default max_payload: 1 MiB
	nobody, err := servertest.FreeAddr()                                        // a port nothing listens on
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"max_payload below one frame", []string{"-cluster=" + small}, "max_payload"},
		{"no NATS server", []string{"-cluster=nats://" + nobody}, "connect"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"-listen=127.0.0.1:0", "-backend=epoll"}, tc.args...)
			if code := run(args, &stdout, &stderr); code != 1 {
				t.Fatalf("run(%q) = %d, want 1\n%s", args, code, stderr.String())
			}
			if !strings.Contains(stderr.String(), "cannot join the cluster") || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr does not say why (%q):\n%s", tc.want, stderr.String())
			}
		})
	}
}

// TestClusterDuplicateWhileServing: when another instance announces that
// it serves this node's index (as after two starts on the two sides of a
// bus outage), the node stops serving, shuts down and exits 1 saying why.
// The other instance is forged: a raw NATS client publishes its
// announcement (cluster/announce.go's 16-byte layout).
func TestClusterDuplicateWhileServing(t *testing.T) {
	t.Parallel() // its servers are processes of their own; it mostly waits on them
	url := natstest.Start(t, 1, natstest.Options{MaxPayload: 2 << 20}).URL(0)
	p := servertest.Launch(t, servertest.Options{Args: []string{
		"-cluster=" + url, "-node=2", "-node-bits=2", "-cluster-name=rrdup", opsMetricsArg, "-backend=epoll",
	}})
	maddr := opsMetricsAddr(t, p)
	opsWaitMetric(t, maddr, "the node to serve", opsPatience, func(m opsMetrics) bool {
		return m.value["ringrelay_cluster_serving"] == 1 && m.value["ringrelay_cluster_bus_connected"] == 1
	})
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ann := []byte{'R', 'R', 'A', 1, 0, 2, 2 /* serving */, 0}
	ann = binary.BigEndian.AppendUint64(ann, 0x0123456789abcdef)
	if err := nc.Publish("rrdup.nodes", ann); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if code := p.Wait(t, 15*time.Second); code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, p.Logs())
	}
	if !strings.Contains(p.Logs(), "also served by instance 0123456789abcdef") {
		t.Errorf("the logs do not say why it stopped:\n%s", p.Logs())
	}
}
