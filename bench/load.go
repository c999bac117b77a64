package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/ringrelay/ringrelay/internal/servertest"
)

// LoadConfig is what `ringbench load` runs: one point against a server that
// is already running.
type LoadConfig struct {
	Addr       string
	Point      Point
	Warmup     time.Duration
	Duration   time.Duration
	ServerPID  int         // 0: do not measure the server
	CPU        int         // pin the generator here; -1 leaves it unpinned
	CPUProfile string      // write the generator's CPU profile here; "" for none
	TLS        *tls.Config // dial over TLS 1.3 with this configuration; nil: plaintext
}

// Validate checks the configuration before anything starts.
func (c LoadConfig) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("no server address (-addr HOST:PORT)"))
	}
	errs = append(errs, c.Point.Validate())
	if c.Warmup < 0 || c.Duration <= 0 {
		errs = append(errs, fmt.Errorf("warm-up must be >= 0 and duration > 0 (got %s, %s)", c.Warmup, c.Duration))
	}
	if c.ServerPID < 0 {
		errs = append(errs, fmt.Errorf("server pid must be positive, got %d", c.ServerPID))
	}
	return errors.Join(errs...)
}

// Load runs one point and returns a one-point Report; the backend column
// names the address.
func Load(ctx context.Context, cfg LoadConfig, progress *Progress) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := newReport(1, cfg.Warmup, cfg.Duration)
	r.Settings.Server, r.Settings.Backends = cfg.Addr, []string{cfg.Addr}
	if cfg.CPU >= 0 {
		if err := servertest.PinSelf(cfg.CPU); err != nil {
			return nil, err
		}
		r.Settings.GeneratorCPUs = []int{cfg.CPU}
	}
	if _, err := servertest.RaiseFileLimit(); err != nil {
		progress.Log("warning: %v", err)
	}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	fig := Measure(ctx, cfg.Addr, cfg.Point, Options{
		Warmup: cfg.Warmup, Duration: cfg.Duration, ServerPID: cfg.ServerPID, TLS: cfg.TLS,
		Progress: func(elapsed time.Duration, fps float64) {
			progress.Show("%s  %5.1fs  %s frames/s", cfg.Point.Name, elapsed.Seconds(), count(fps))
		},
	})
	progress.Done()
	r.Points = []PointResult{{
		Point:    cfg.Point,
		Backends: []BackendResult{{Backend: cfg.Addr, Median: fig, Runs: []Figures{fig}}},
	}}
	r.Finished = time.Now()
	return r, nil
}
