package relay

import (
	"fmt"
	"log/slog"
	"time"
)

// Policy says what happens to a frame whose destination already has
// MaxQueue bytes of output queued.
type Policy string

const (
	// Backpressure queues the frame and stops reading from its sender until
	// the destination drains below half of MaxQueue. Lossless.
	Backpressure Policy = "backpressure"
	// Drop discards the frame and counts it.
	Drop Policy = "drop"
	// Disconnect closes the slow destination and counts it.
	Disconnect Policy = "disconnect"
)

// Config holds the protocol limits and policies the server enforces.
type Config struct {
	MaxFrame        int           // payload bytes, not counting header and NUL
	MaxQueue        int           // queued output bytes per destination
	SlowConsumer    Policy        // what a full destination means
	WriteTimeout    time.Duration // close a destination whose output makes no progress this long
	FrameTimeout    time.Duration // close a connection whose frame stays incomplete this long
	MaxConns        int           // open connections; newer ones are closed at once
	ShutdownTimeout time.Duration // how long shutdown waits for queued output

	// Limits for a network the operator does not control (limits.go,
	// budget.go); 0 turns each off.
	MaxUnknownDest    int           // frames to unknown IDs one connection may send per UnknownDestWindow
	UnknownDestWindow time.Duration // the window MaxUnknownDest counts over
	MaxConnsPerIP     int           // open connections from one source address (or IPv6 prefix)
	MaxNewConnsPerIP  int           // new connections per second from one source address (or IPv6 prefix)
	ConnsPerIPPrefix6 int           // IPv6 addresses are grouped by this prefix length for the two above
	MaxMemory         int64         // bytes of client buffers (partial frames, queued output) of all loops together

	Logger *slog.Logger
}

// DefaultConfig returns the limits of docs/protocol.md.
func DefaultConfig() Config {
	return Config{
		MaxFrame:        1 << 20,
		MaxQueue:        4 << 20,
		SlowConsumer:    Backpressure,
		WriteTimeout:    30 * time.Second,
		FrameTimeout:    60 * time.Second,
		MaxConns:        100000,
		ShutdownTimeout: 5 * time.Second,

		MaxUnknownDest:    4096,
		UnknownDestWindow: 10 * time.Second,
		ConnsPerIPPrefix6: 64,
	}
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.MaxFrame < 1:
		return fmt.Errorf("max-frame %d: must be at least 1 byte", c.MaxFrame)
	case c.MaxQueue < 1:
		return fmt.Errorf("max-queue %d: must be at least 1 byte", c.MaxQueue)
	case c.WriteTimeout <= 0:
		return fmt.Errorf("write-timeout %v: must be positive", c.WriteTimeout)
	case c.FrameTimeout <= 0:
		return fmt.Errorf("frame-timeout %v: must be positive", c.FrameTimeout)
	case c.MaxConns < 1:
		return fmt.Errorf("max-conns %d: must be at least 1", c.MaxConns)
	case c.ShutdownTimeout < 0:
		return fmt.Errorf("shutdown-timeout %v: must not be negative", c.ShutdownTimeout)
	case c.MaxUnknownDest < 0:
		return fmt.Errorf("max-unknown-dest %d: must not be negative (0 turns it off)", c.MaxUnknownDest)
	case c.MaxUnknownDest > 0 && c.UnknownDestWindow <= 0:
		return fmt.Errorf("unknown-dest-window %v: must be positive", c.UnknownDestWindow)
	case c.MaxConnsPerIP < 0:
		return fmt.Errorf("max-conns-per-ip %d: must not be negative (0 turns it off)", c.MaxConnsPerIP)
	case c.MaxNewConnsPerIP < 0:
		return fmt.Errorf("max-new-conns-per-ip %d: must not be negative (0 turns it off)", c.MaxNewConnsPerIP)
	case c.ConnsPerIPPrefix6 < 1 || c.ConnsPerIPPrefix6 > 128:
		return fmt.Errorf("conns-per-ip-prefix6 %d: must be between 1 and 128", c.ConnsPerIPPrefix6)
	case c.MaxMemory < 0:
		return fmt.Errorf("max-memory %d: must not be negative (0 turns it off)", c.MaxMemory)
	}
	switch c.SlowConsumer {
	case Backpressure, Drop, Disconnect:
	default:
		return fmt.Errorf("slow-consumer %q: must be backpressure, drop or disconnect", c.SlowConsumer)
	}
	return nil
}
