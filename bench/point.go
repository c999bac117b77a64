package bench

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Point is one load point: a workload and its parameters.
type Point struct {
	Name     string `json:"name"`
	Workload string `json:"workload"`          // pingpong, flood, fanin or idle
	Pairs    int    `json:"pairs,omitempty"`   // pingpong; flood: independent sender-receiver pairs
	Window   int    `json:"window,omitempty"`  // pingpong: frames in flight per pair
	Senders  int    `json:"senders,omitempty"` // fanin
	Conns    int    `json:"conns,omitempty"`   // idle
	Size     int    `json:"payload_bytes,omitempty"`
	// Pairing says which connections form the pairs of pingpong and flood:
	// PairAdjacent ("" too) or PairRandom, drawn from Seed.
	Pairing string `json:"pairing,omitempty"`
	Seed    uint64 `json:"seed,omitempty"`
}

// Workloads lists the workload names Point.Workload accepts.
var Workloads = []string{"pingpong", "flood", "fanin", "idle", "connect"}

// NewPoint fills in a Point for workload, taking defaults for the parameters
// that are zero, and names it after its parameters.
func NewPoint(workload string, pairs, window, senders, conns, size int) (Point, error) {
	p := Point{Workload: workload}
	switch workload {
	case "pingpong":
		p.Pairs, p.Window, p.Size = or(pairs, 1), or(window, 1), or(size, 64)
	case "flood":
		p.Pairs, p.Size = or(pairs, 1), or(size, 1024)
	case "fanin":
		p.Senders, p.Size = or(senders, 100), or(size, 256)
	case "idle":
		p.Conns = or(conns, 10000)
	case "connect":
		p.Conns = or(conns, 8)
	default:
		return Point{}, fmt.Errorf("unknown workload %q (want one of %s)", workload, strings.Join(Workloads, ", "))
	}
	p.Name = p.defaultName()
	return p, p.Validate()
}

// Paired returns p with its connections paired as pairing says (a random
// pairing drawn from seed), renamed to match.
func (p Point) Paired(pairing string, seed uint64) (Point, error) {
	if pairing == PairAdjacent {
		pairing = ""
	}
	p.Pairing, p.Seed = pairing, 0
	if pairing == PairRandom {
		p.Seed = seed
	}
	p.Name = p.defaultName()
	return p, p.Validate()
}

// defaultName names p after its parameters: pingpong-p500-w16,
// flood-1k, flood-p64-1k-random, fanin-100x256, idle-10000. A random
// pairing adds -random (the seed is in the JSON, not in the name).
func (p Point) defaultName() string {
	var name string
	switch p.Workload {
	case "pingpong":
		name = fmt.Sprintf("pingpong-p%d-w%d", p.Pairs, p.Window)
	case "flood":
		name = "flood-" + sizeName(p.Size)
		if p.Pairs > 1 {
			name = fmt.Sprintf("flood-p%d-%s", p.Pairs, sizeName(p.Size))
		}
	case "fanin":
		name = fmt.Sprintf("fanin-%dx%s", p.Senders, sizeName(p.Size))
	case "idle":
		name = fmt.Sprintf("idle-%d", p.Conns)
	case "connect":
		name = fmt.Sprintf("connect-%d", p.Conns)
	}
	if p.Pairing == PairRandom {
		name += "-random"
	}
	return name
}

func or(v, def int) int {
	if v != 0 {
		return v
	}
	return def
}

func sizeName(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%dk", n/1024)
	}
	return fmt.Sprint(n)
}

// Validate checks the parameters the workload uses.
func (p Point) Validate() error {
	positive := func(name string, v int) error {
		if v <= 0 {
			return fmt.Errorf("point %s: %s must be positive, got %d", p.Name, name, v)
		}
		return nil
	}
	var errs []error
	if err := checkPairing(p.Pairing); err != nil {
		errs = append(errs, fmt.Errorf("point %s: %w", p.Name, err))
	} else if p.Pairing != "" && p.Pairing != PairAdjacent && p.Workload != "pingpong" && p.Workload != "flood" {
		errs = append(errs, fmt.Errorf("point %s: only pingpong and flood pair their connections", p.Name))
	}
	switch p.Workload {
	case "pingpong":
		errs = append(errs, positive("pairs", p.Pairs), positive("window", p.Window))
	case "fanin":
		errs = append(errs, positive("senders", p.Senders))
	case "idle", "connect":
		errs = append(errs, positive("conns", p.Conns))
		return errors.Join(errs...)
	case "flood":
		errs = append(errs, positive("pairs", p.Pairs))
	default:
		return fmt.Errorf("point %s: unknown workload %q", p.Name, p.Workload)
	}
	if p.Size < MinPayload {
		errs = append(errs, fmt.Errorf("point %s: payload size %d is below the minimum of %d bytes", p.Name, p.Size, MinPayload))
	}
	return errors.Join(errs...)
}

// DefaultPoints are the points `ringbench compare` runs. idle comes first so
// that it measures a fresh server: a server that already grew buffers for
// earlier points would reuse that memory and understate the cost of a
// connection.
func DefaultPoints() []Point {
	return []Point{
		must(NewPoint("idle", 0, 0, 0, 10000, 0)),
		must(NewPoint("pingpong", 1, 1, 0, 0, 64)),
		must(NewPoint("pingpong", 50, 16, 0, 0, 64)),
		must(NewPoint("pingpong", 500, 16, 0, 0, 64)), // 1000 connections
		must(NewPoint("pingpong", 1000, 4, 0, 0, 64)),
		must(NewPoint("flood", 0, 0, 0, 0, 1024)),
		must(NewPoint("flood", 0, 0, 0, 0, 64*1024)),
		must(NewPoint("fanin", 0, 0, 100, 0, 256)),
	}
}

// ExtraPoints can be asked for by name (-points) but do not run by
// default: connect-8, new connections per second through 8 parallel
// dialers (the handshake point of a TLS column).
func ExtraPoints() []Point {
	return []Point{must(NewPoint("connect", 0, 0, 0, 8, 0))}
}

// QuickPoints are the points of `ringbench compare -quick`.
func QuickPoints() []Point {
	keep := []string{"pingpong-p1-w1", "pingpong-p50-w16", "flood-1k", "fanin-100x256"}
	return slices.DeleteFunc(DefaultPoints(), func(p Point) bool { return !slices.Contains(keep, p.Name) })
}

// SelectPoints keeps the points named in names, in the order of points. A
// name may be a point name (pingpong-p50-w16) or a workload (pingpong).
func SelectPoints(points []Point, names []string) ([]Point, error) {
	if len(names) == 0 {
		return points, nil
	}
	var out []Point
	for _, n := range names {
		if !slices.ContainsFunc(points, func(p Point) bool { return p.Name == n || p.Workload == n }) {
			var all []string
			for _, p := range points {
				all = append(all, p.Name)
			}
			return nil, fmt.Errorf("no point named %q (have %s)", n, strings.Join(all, ", "))
		}
	}
	for _, p := range points {
		if slices.Contains(names, p.Name) || slices.Contains(names, p.Workload) {
			out = append(out, p)
		}
	}
	return out, nil
}

func must(p Point, err error) Point {
	if err != nil {
		panic(err)
	}
	return p
}
