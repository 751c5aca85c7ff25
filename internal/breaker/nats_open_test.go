package breaker

import (
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/require"
)

// TestNATSBreakersReopenSooner: a NATS subject's breaker uses NATSOpenTimeout, so an
// inbox stream's leader election does not hold its deliveries for a full
// OpenTimeout (DESIGN §5, issue 9); HTTP origins keep OpenTimeout.
func TestNATSBreakersReopenSooner(t *testing.T) {
	t.Parallel()
	const nkey, hkey = "nats:agents.sales.inbox", "https://inbox.example:443"
	s := setup(t, Settings{Failures: 2, OpenTimeout: time.Hour, NATSOpenTimeout: 20 * time.Millisecond}).set
	for range 2 {
		attempt(t, s, nkey, Failure)
		attempt(t, s, hkey, Failure)
	}
	require.Equal(t, gobreaker.StateOpen, s.State(nkey))
	require.Equal(t, gobreaker.StateOpen, s.State(hkey))
	require.LessOrEqual(t, s.OpenFor(nkey), 20*time.Millisecond)
	require.Greater(t, s.OpenFor(hkey), time.Minute)

	// The NATS breaker lets a probe through after its short open period; a success
	// closes it. The HTTP one is still open.
	require.Eventually(t, func() bool {
		done, err := s.Allow(nkey)
		if err != nil {
			return false
		}
		done(Success)
		return true
	}, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, gobreaker.StateClosed, s.State(nkey))
	_, err := s.Allow(hkey)
	require.ErrorIs(t, err, ErrOpen)
}

func TestNATSOpenTimeoutDefaultsAndCap(t *testing.T) {
	t.Parallel()
	require.Equal(t, 30*time.Second, Settings{OpenTimeout: 30 * time.Second}.withDefaults().NATSOpenTimeout)
	require.Equal(t, time.Second, Settings{OpenTimeout: time.Second, NATSOpenTimeout: time.Minute}.withDefaults().NATSOpenTimeout,
		"never above OpenTimeout")
}
