package chaos

import (
	"testing"

	"go.uber.org/goleak"
)

// No goroutine a test started outlives the package's tests (STYLE.md, convention 2).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
