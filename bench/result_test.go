package bench

import (
	"slices"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{7}, 7},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{5, 5, 1, 9, 5}, 5},
	} {
		in := slices.Clone(tc.in)
		if got := Median(in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		if !slices.Equal(in, tc.in) {
			t.Errorf("Median reordered its input: %v", in)
		}
	}
}

func TestMedianFigures(t *testing.T) {
	runs := []Figures{
		{FramesPerSec: 100, ServerCPUPerFrameUs: 3, RTT: &Latency{P50: 10, P99: 90}},
		{FramesPerSec: 300, ServerCPUPerFrameUs: 1, RTT: &Latency{P50: 30, P99: 70}, Errors: 1, ErrorSamples: []string{"bad"}},
		{FramesPerSec: 200, ServerCPUPerFrameUs: 2, RTT: &Latency{P50: 20, P99: 80}},
	}
	m := MedianFigures(runs)
	if m.FramesPerSec != 200 || m.ServerCPUPerFrameUs != 2 || m.RTT.P50 != 20 || m.RTT.P99 != 80 {
		t.Errorf("medians: %+v, rtt %+v", m, *m.RTT)
	}
	if !m.Failed() || m.Errors != 1 || !slices.Equal(m.ErrorSamples, []string{"bad"}) {
		t.Errorf("one failed run must fail the median: errors %d %v", m.Errors, m.ErrorSamples)
	}
	if MedianFigures(runs[:1]).RTT.P99 != 90 {
		t.Error("a single run is its own median")
	}
}

func TestSelectPoints(t *testing.T) {
	all := DefaultPoints()
	got, err := SelectPoints(all, []string{"flood", "pingpong-p1-w1"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range got {
		names = append(names, p.Name)
	}
	if want := []string{"pingpong-p1-w1", "flood-1k", "flood-64k"}; !slices.Equal(names, want) {
		t.Errorf("selected %v, want %v", names, want)
	}
	if _, err := SelectPoints(all, []string{"nope"}); err == nil {
		t.Error("an unknown point name was accepted")
	}
	var quick []string
	for _, p := range QuickPoints() {
		quick = append(quick, p.Name)
	}
	if want := []string{"pingpong-p1-w1", "pingpong-p50-w16", "flood-1k", "fanin-100x256"}; !slices.Equal(quick, want) {
		t.Errorf("quick points %v, want %v", quick, want)
	}
}
