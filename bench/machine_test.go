package bench

import (
	"os"
	"strings"
	"testing"
)

func TestDescribeMachineNamesCongestionControl(t *testing.T) {
	b, err := os.ReadFile(congestionControlFile)
	if err != nil {
		t.Fatalf("this test reads the host's %s: %v", congestionControlFile, err)
	}
	want := strings.TrimSpace(string(b))
	m := DescribeMachine()
	if m.TCP != want {
		t.Fatalf("TCP = %q, the host's default is %q", m.TCP, want)
	}
	if !strings.HasSuffix(m.String(), ", TCP "+want) {
		t.Fatalf("String() = %q, want it to end with the congestion control %q", m.String(), want)
	}
}

func TestMachineStringWithoutCongestionControl(t *testing.T) {
	m := Machine{CPUModel: "Test CPU", Cores: 2, Kernel: "Linux 6.18.0 x86_64", Go: "go1.26"}
	if got, want := m.String(), "Test CPU, 2 cores, Linux 6.18.0 x86_64, go1.26"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	m.TCP = "cubic"
	if got, want := m.String(), "Test CPU, 2 cores, Linux 6.18.0 x86_64, go1.26, TCP cubic"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}
