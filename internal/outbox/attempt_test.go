package outbox

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/breaker"
	"github.com/msgrouter/msgrouter/internal/delivery"
)

// The decorators' outcomes as the Dispatcher records them: a timed-out attempt is
// a failed attempt with the "delivery timed out after …" wording, timed from the
// attempt proper (delivery_attempts.duration_ms); behind the breaker it opened,
// the next message waits out the open period without an attempt
// (waits{reason=breaker_open}, no attempt counted, lease let go).
func TestDispatcherMapsDecoratorOutcomes(t *testing.T) {
	f := newStoreFixture(t)
	claimed := claimedRows(f, 2, 2*time.Minute)
	var calls atomic.Int64
	d := runDispatcher(t, Config{
		Store:    f.store,
		Timeout:  200 * time.Millisecond,
		Breakers: breaker.NewSet(breaker.Settings{Failures: 1, OpenTimeout: time.Minute}),
		Deliverer: inboxFunc(func(ctx context.Context, d *delivery.Delivery) error {
			calls.Add(1)
			<-ctx.Done()
			return delivery.Retryable(fmt.Errorf("error publishing to %s: %w", d.DestName, ctx.Err()))
		}),
	})
	d.Handoff(t.Context(), d.NewJob(claimed[0], time.Now(), nil, true))
	require.Eventually(t, func() bool { return f.message(claimed[0].ID).Attempts == 1 }, 10*time.Second, 10*time.Millisecond)
	m := f.message(claimed[0].ID)
	require.Equal(t, StatusPending, m.Status)
	require.NotNil(t, m.LastError)
	require.Regexp(t, `^delivery timed out after 200ms: error publishing to .*: context deadline exceeded$`, *m.LastError)
	var durMS int
	require.NoError(t, f.pool.QueryRow(f.ctx, `SELECT duration_ms FROM delivery_attempts WHERE message_id = $1`, claimed[0].ID).Scan(&durMS))
	require.GreaterOrEqual(t, durMS, 200, "the attempt lasted until its deadline")
	require.EqualValues(t, 1, counterValue(t, d.m.attempts.WithLabelValues(claimed[0].DestType, "failed")))

	d.Handoff(t.Context(), d.NewJob(claimed[1], time.Now(), nil, true))
	require.Eventually(t, func() bool { return counterValue(t, d.m.waits.WithLabelValues("breaker_open")) == 1 },
		10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return f.mustOutbox(claimed[1].ID).Token == nil }, 10*time.Second, 10*time.Millisecond)
	o := f.mustOutbox(claimed[1].ID)
	require.Greater(t, o.DueIn, 50*time.Second, "waits out the rest of the open period")
	require.Zero(t, f.message(claimed[1].ID).Attempts, "waiting behind an open breaker is not an attempt")
	require.EqualValues(t, 1, calls.Load())
	require.EqualValues(t, 1, counterValue(t, d.m.attempts.WithLabelValues(claimed[0].DestType, "failed")))
}

// A delivery waiting for its destination's rate limit when Stop gives up on
// deliveries is handed back (Release): due again at once, not an attempt.
func TestDispatcherRateLimitWaitCutShortByStop(t *testing.T) {
	f := newStoreFixture(t)
	claimed := claimedRows(f, 2, 2*time.Minute)
	inbox := &countingInbox{}
	d := New(Config{
		Store:        f.store,
		Breakers:     breaker.NewSet(breaker.Settings{}),
		Rate:         0.001, // one now, the next in about 17 minutes
		Lease:        2 * time.Minute,
		PollInterval: time.Hour,
		Deliverer:    inbox,
	})
	require.NoError(t, d.Start(context.Background()))
	d.Handoff(t.Context(), d.NewJob(claimed[0], time.Now(), nil, true), d.NewJob(claimed[1], time.Now(), nil, true))
	// Whichever reached the limiter first is delivered; the other waits.
	var waiting Claimed
	require.Eventually(t, func() bool {
		for i, c := range claimed {
			if f.message(c.ID).Status == StatusDelivered {
				waiting = claimed[1-i]
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)

	// What Stop does to deliveries when its context ends, without cutting the
	// result writes short as well, so the Release can be seen.
	d.cancel()
	require.Eventually(t, func() bool { return f.mustOutbox(waiting.ID).Token == nil }, 10*time.Second, 10*time.Millisecond,
		"handed back")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, d.Stop(ctx))
	require.EqualValues(t, 1, inbox.calls.Load())
	m := f.message(waiting.ID)
	require.Equal(t, StatusPending, m.Status)
	require.Zero(t, m.Attempts, "not an attempt")
	require.LessOrEqual(t, f.mustOutbox(waiting.ID).DueIn, time.Duration(0), "due again at once")
}
