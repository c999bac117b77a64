package shard

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestParseLoops(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
		bad  bool
	}{
		{"auto", AutoLoops, false},
		{" auto ", AutoLoops, false},
		{"1", 1, false},
		{"16", 16, false},
		{"1024", 1024, false},
		{"0", 0, true},
		{"-2", 0, true},
		{"1025", 0, true},
		{"", 0, true},
		{"four", 0, true},
		{"2.5", 0, true},
		{"Auto", 0, true},
	} {
		got, err := ParseLoops(c.in)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("ParseLoops(%q) = %d, %v; want %d, error %v", c.in, got, err, c.want, c.bad)
		}
		if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("%q", c.in)) {
			t.Errorf("ParseLoops(%q): error %q does not quote the value", c.in, err)
		}
	}
}

func TestParseCPUs(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []int
	}{
		{"0", []int{0}},
		{"0-3", []int{0, 1, 2, 3}},
		{"0-3,8,10-11", []int{0, 1, 2, 3, 8, 10, 11}},
		{"8,0-1", []int{8, 0, 1}},
		{" 2 , 4-5 ", []int{2, 4, 5}},
		{"7-7", []int{7}},
		{"1023", []int{1023}},
	} {
		got, err := ParseCPUs(c.in)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("ParseCPUs(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, c := range []struct{ in, names string }{
		{"", "empty list"},
		{"0,,2", "empty item"},
		{"1,", "empty item"},
		{"a", `"a" is not a CPU number`},
		{"0-3,x-5", `"x-5"`},
		{"3-1", `"3-1": range runs backwards`},
		{"0-", `"0-"`},
		{"-1", `"-1"`},
		{"+1", `"+1" is not a CPU number`},
		{"2,1-3", "CPU 2 listed twice"},
		{"1024", "CPU 1024 is beyond 1023"},
		{"0-99999999999999999999", `"0-99999999999999999999"`},
	} {
		got, err := ParseCPUs(c.in)
		if err == nil {
			t.Errorf("ParseCPUs(%q) = %v, want an error", c.in, got)
			continue
		}
		if !strings.Contains(err.Error(), c.names) {
			t.Errorf("ParseCPUs(%q): error %q does not say %q", c.in, err, c.names)
		}
	}
}

func TestFormatCPUs(t *testing.T) {
	for in, want := range map[string]string{
		"0": "0", "0-3,8,10-11": "0-3,8,10-11", "0,1,2,5": "0-2,5", "3,2": "3,2",
	} {
		list, err := ParseCPUs(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := FormatCPUs(list); got != want {
			t.Errorf("FormatCPUs(%v) = %q, want %q", list, got, want)
		}
	}
}

func TestLayout(t *testing.T) {
	allowed := []int{0, 1, 2, 3}
	for _, c := range []struct {
		loops, cpus string
		n           int
		pins        []int
		err         string
	}{
		{"auto", "", 4, nil, ""},
		{"3", "", 3, nil, ""},
		{"8", "", 8, nil, ""},
		{"auto", "1-2", 2, []int{1, 2}, ""},
		{"4", "2,0", 4, []int{2, 0, 2, 0}, ""},
		{"2", "0", 2, []int{0, 0}, ""},
		{"1", "3", 1, []int{3}, ""},
		{"2", "0,5", 0, nil, "CPU 5 is not one this process may run on (0-3)"},
		{"x", "", 0, nil, "-loops"},
		{"2", "0-", 0, nil, "-cpus"},
	} {
		n, pins, err := Layout(c.loops, c.cpus, allowed)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Layout(%q, %q): error %v, want one saying %q", c.loops, c.cpus, err, c.err)
			}
			continue
		}
		if err != nil || n != c.n || !slices.Equal(pins, c.pins) {
			t.Errorf("Layout(%q, %q) = %d, %v, %v; want %d, %v", c.loops, c.cpus, n, pins, err, c.n, c.pins)
		}
	}
}

func TestAllowedCPUsMatchRuntime(t *testing.T) {
	cpus, err := AllowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	// The runtime counts the same mask at start-up.
	if len(cpus) != runtime.NumCPU() || !slices.IsSorted(cpus) {
		t.Fatalf("AllowedCPUs = %v, runtime.NumCPU = %d", cpus, runtime.NumCPU())
	}
}

// TestPinThreadChangesTheMask pins a locked thread to each allowed CPU in
// turn and reads its mask back. The goroutine ends still locked, so the
// runtime retires the pinned thread.
func TestPinThreadChangesTheMask(t *testing.T) {
	allowed, err := AllowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		for _, cpu := range allowed {
			if err := PinThread(cpu); err != nil {
				errs <- err
				return
			}
			got, err := AllowedCPUs()
			if err != nil {
				errs <- err
				return
			}
			if !slices.Equal(got, []int{cpu}) {
				errs <- fmt.Errorf("pinned to CPU %d, the thread's mask reads %v", cpu, got)
				return
			}
		}
		if err := PinThread(-1); err == nil {
			errs <- fmt.Errorf("PinThread(-1) succeeded")
			return
		}
		errs <- nil
	}()
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	// Other threads keep the process's mask.
	if after, err := AllowedCPUs(); err != nil || len(after) != len(allowed) {
		t.Fatalf("after the pinned thread ended, this thread may run on %v (%v), want %v", after, err, allowed)
	}
}

func TestPinThreadOutsideTheMaskFails(t *testing.T) {
	allowed, err := AllowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	outside := maxCPUs - 1
	if slices.Contains(allowed, outside) {
		t.Fatalf("this machine allows CPU %d; pick another CPU for this test", outside)
	}
	errs := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errs <- PinThread(outside)
	}()
	err = <-errs
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(outside)) {
		t.Fatalf("PinThread(%d), a CPU outside the mask: %v", outside, err)
	}
}
