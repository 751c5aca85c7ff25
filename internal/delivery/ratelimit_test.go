package delivery

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// rateLimited returns an inbox accepting every delivery, and that inbox behind
// RateLimit(perSecond).
func rateLimited(perSecond float64) (*countingInbox, Deliverer) {
	inbox := &countingInbox{next: func(context.Context) error { return nil }}
	return inbox, RateLimit(perSecond)(inbox)
}

// Each destination has its own limiter (keyed like its breaker: one per HTTP
// origin): a burst of max(1, rate), then one delivery per 1/rate; another
// destination is not held back. Synctest's clock makes the waits exact.
func TestRateLimitPerDestination(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		inbox, d := rateLimited(2)
		ctx := context.Background()
		http := func(url string) *Delivery { return &Delivery{DestType: "HTTP_ENDPOINT", DestName: url} }

		start := time.Now()
		require.NoError(t, d.Deliver(ctx, http("https://a.example/x")))
		require.NoError(t, d.Deliver(ctx, http("https://A.example:443/y")), "same origin, same limiter")
		require.Zero(t, time.Since(start), "the burst goes at once")
		require.NoError(t, d.Deliver(ctx, http("https://b.example/x")))
		require.NoError(t, d.Deliver(ctx, natsDelivery("agents.a")))
		require.Zero(t, time.Since(start), "other destinations are not held back")

		require.NoError(t, d.Deliver(ctx, http("https://a.example/z")))
		require.Equal(t, 500*time.Millisecond, time.Since(start), "then one per 1/rate")
		require.EqualValues(t, 5, inbox.calls.Load())
	})
}

// A delivery waiting for its turn when ctx ends is not attempted: a
// NotAttemptedError with no Wait (hand it back), wrapping ctx's error.
func TestRateLimitWaitCancelled(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		inbox, d := rateLimited(1)
		require.NoError(t, d.Deliver(context.Background(), natsDelivery("agents.a")))

		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error)
		go func() { errc <- d.Deliver(ctx, natsDelivery("agents.a")) }()
		synctest.Wait() // waiting for its turn
		cancel()
		err := <-errc
		var na *NotAttemptedError
		require.ErrorAs(t, err, &na)
		require.Equal(t, WaitRateLimited, na.Reason)
		require.Zero(t, na.Wait)
		require.ErrorIs(t, err, context.Canceled)
		require.EqualValues(t, 1, inbox.calls.Load())
	})
}

// The limiters are bounded: past RateLimitDestinations the least recently used
// destination is dropped and comes back with a fresh burst. Rate 0 limits nothing.
func TestRateLimitBounded(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		_, d := rateLimited(1)
		ctx := context.Background()
		require.NoError(t, d.Deliver(ctx, natsDelivery("agents.first")))
		for i := range RateLimitDestinations {
			require.NoError(t, d.Deliver(ctx, natsDelivery("agents.other."+string(rune('a'+i%26))+time.Duration(i).String())))
		}
		start := time.Now()
		require.NoError(t, d.Deliver(ctx, natsDelivery("agents.first")))
		require.Zero(t, time.Since(start), "evicted, so a fresh burst")
		require.NoError(t, d.Deliver(ctx, natsDelivery("agents.first")))
		require.Equal(t, time.Second, time.Since(start), "and limited again")
	})
	inbox, d := rateLimited(0)
	require.Same(t, Deliverer(inbox), d)
}
