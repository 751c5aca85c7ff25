// Package stoptest checks the bounded stop every long-running part and every
// service's Run promise (DESIGN §8.4): it returns, cleanly, within its bound,
// even while a dependency hangs.
package stoptest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Stopper is a part with the Stop of the one lifecycle (internal/service).
type Stopper interface {
	Stop(ctx context.Context) error
}

// StopBounded stops p with a context of timeout and requires nil well within
// it (twice timeout), then a second Stop to return nil too (idempotent). why
// says why Stop can end in time.
func StopBounded(t testing.TB, p Stopper, timeout time.Duration, why string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	require.NoError(t, p.Stop(ctx), why)
	require.Less(t, time.Since(start), 2*timeout)
	require.NoError(t, p.Stop(context.Background()), "idempotent")
}

// Returns waits for a run's result on done once its context is cancelled, and
// requires a clean exit (nil) within bound; it gives up after 15 s. why says
// what bounds the wait.
func Returns(t testing.TB, done <-chan error, bound time.Duration, why string) {
	t.Helper()
	start := time.Now()
	select {
	case err := <-done:
		require.NoError(t, err, "a bounded shutdown is still a clean exit")
	case <-time.After(15 * time.Second):
		t.Fatalf("the run did not return after its context ended (%s)", why)
	}
	require.Less(t, time.Since(start), bound, why)
}
