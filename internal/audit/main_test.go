package audit_test

import (
	"testing"

	"go.uber.org/goleak"
)

// No audit, scheduler or stream reader outlives its test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
