package reactor

import (
	"errors"
	"fmt"

	"github.com/ringrelay/ringrelay/ring"
)

// Open creates a loop listening on addr with the backend cfg asks for.
//
// Auto probes io_uring once and falls back to epoll when it cannot be used,
// logging one line with the reason. Uring fails with an error that names
// the cause and the way out when io_uring cannot be used.
//
// The calling goroutine becomes the loop's owner: on io_uring it is locked
// to its OS thread (SINGLE_ISSUER), and it must be the one that calls Poll.
func Open(addr string, cfg Config) (Loop, error) {
	cfg.fill()
	if cfg.Buffers <= 0 || cfg.Buffers > 1<<15 || cfg.Buffers&(cfg.Buffers-1) != 0 {
		return nil, fmt.Errorf("buffers: %d: must be a power of two between 1 and 32768", cfg.Buffers)
	}
	switch cfg.Backend {
	case Epoll:
		return openEpoll(addr, cfg)
	case Uring:
		if err := ring.Probe().Usable(); err != nil {
			return nil, fmt.Errorf("%w; run with -backend=epoll", err)
		}
		l, err := newUring(addr, cfg)
		if err != nil {
			return nil, err
		}
		return l, nil
	case Auto:
		if err := ring.Probe().Usable(); err != nil {
			cfg.Logger.Warn("io_uring unavailable, falling back to epoll", "reason", err.Error())
			return openEpoll(addr, cfg)
		}
		l, err := newUring(addr, cfg)
		if err == nil {
			return l, nil
		}
		var ue *ring.UnavailableError
		if errors.As(err, &ue) || isSetupFailure(err) {
			cfg.Logger.Warn("io_uring setup failed, falling back to epoll", "reason", err.Error())
			return openEpoll(addr, cfg)
		}
		return nil, err
	}
	return nil, fmt.Errorf("backend %q: must be auto, uring or epoll", cfg.Backend)
}

// openEpoll keeps a failed constructor's nil pointer from becoming a
// non-nil Loop interface.
func openEpoll(addr string, cfg Config) (Loop, error) {
	l, err := newEpoll(addr, cfg)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// isSetupFailure tells io_uring setup errors (worth falling back from)
// from listen errors (which epoll would hit too).
func isSetupFailure(err error) bool {
	var se *setupError
	return errors.As(err, &se)
}

// setupError marks a failure to create the ring or its buffer ring.
type setupError struct{ err error }

func (e *setupError) Error() string { return e.err.Error() }
func (e *setupError) Unwrap() error { return e.err }
