package router

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Messages CAMS could not route go back to JetStream with a growing delay, capped
// by the breaker's open timeout (and 5s), never with an immediate Nak (a storm).
func TestNakDelay(t *testing.T) {
	t.Parallel()
	tk := &Takeover{maxNak: 30 * time.Second}
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i, w := range want {
		require.Equal(t, w, tk.nakDelay(uint64(i+1)), "delivery %d", i+1)
	}
	require.Equal(t, 250*time.Millisecond, tk.nakDelay(0), "a missing count is the first delivery")
	require.Equal(t, 5*time.Second, tk.nakDelay(1<<40), "no overflow")

	short := &Takeover{maxNak: 300 * time.Millisecond}
	require.Equal(t, 300*time.Millisecond, short.nakDelay(10), "never beyond the breaker's open timeout")
}

// An unreachable Postgres stops the router with one line that says what to do.
func TestOpenPoolUnreachableIsOneLine(t *testing.T) {
	t.Parallel()
	_, err := OpenPool(context.Background(), "postgres://nobody@127.0.0.1:1/x?connect_timeout=2")
	require.Error(t, err)
	require.Contains(t, err.Error(), "set DATABASE_URL")
	require.NotContains(t, err.Error(), "\n")
}
