// Package runtest is what tests of a service's Run and of a part's Start/Stop
// share: running it until it is ready, and checking the bounded stop it promises
// (DESIGN §8.4): it returns, cleanly, within its bound, even while a dependency
// hangs.
package runtest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Start runs run on a goroutine and returns once it announces it is ready (the
// address it serves on, say), with the channel run's result arrives on; it fails
// t if run returns first or is not ready within timeout. run stops when ctx ends,
// at the latest when t ends (t waits for it).
func Start[A any](ctx context.Context, t testing.TB, timeout time.Duration, run func(ctx context.Context, ready chan<- A) error) (A, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	ready := make(chan A, 1)
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		done <- run(ctx, ready)
	}()
	t.Cleanup(func() { cancel(); <-finished })
	var zero A
	select {
	case a := <-ready:
		return a, done
	case err := <-done:
		t.Fatalf("did not start: %v", err)
	case <-time.After(timeout):
		t.Fatalf("not ready within %v", timeout)
	}
	return zero, nil
}

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
