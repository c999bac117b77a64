package bench

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/ringrelay/ringrelay/internal/servertest"
)

// TestMain fails the package if a test leaves a goroutine behind, and
// removes the ringrelay binary a test built.
func TestMain(m *testing.M) { goleak.VerifyTestMain(servertest.WithCleanup{M: m}) }
