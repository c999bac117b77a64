package tlshandshake

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: every
// worker must be gone once its pool is closed.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
