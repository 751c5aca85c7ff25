package delivery

import (
	"testing"

	"go.uber.org/goleak"
)

// Deliverers own no goroutines: every one a test starts must be gone at the end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
