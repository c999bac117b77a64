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
	Logger          *slog.Logger
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
	}
	switch c.SlowConsumer {
	case Backpressure, Drop, Disconnect:
	default:
		return fmt.Errorf("slow-consumer %q: must be backpressure, drop or disconnect", c.SlowConsumer)
	}
	return nil
}
