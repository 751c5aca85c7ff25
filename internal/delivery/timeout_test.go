package delivery

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// Each attempt gets its own deadline; a deadline error is reported as "delivery
// timed out after <timeout>", still classified as the inner Deliverer did.
func TestTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var deadline time.Time
		inbox := &countingInbox{next: func(ctx context.Context) error {
			var ok bool
			deadline, ok = ctx.Deadline()
			if !ok {
				return errors.New("no deadline")
			}
			<-ctx.Done()
			return Retryable(fmt.Errorf("error publishing: %w", ctx.Err()))
		}}
		d := Timeout(2 * time.Second)(inbox)
		start := time.Now()
		err := d.Deliver(context.Background(), natsDelivery("agents.a"))
		require.Equal(t, start.Add(2*time.Second), deadline)
		require.Equal(t, 2*time.Second, time.Since(start))
		require.EqualError(t, err, "delivery timed out after 2s: error publishing: context deadline exceeded")
		require.ErrorIs(t, err, context.DeadlineExceeded)
		var e *Error
		require.ErrorAs(t, err, &e)
		require.True(t, e.CountsForBreaker)

		// The next attempt has a deadline of its own.
		time.Sleep(time.Second)
		start = time.Now()
		_ = d.Deliver(context.Background(), natsDelivery("agents.a"))
		require.Equal(t, start.Add(2*time.Second), deadline)
	})
}

// Other outcomes pass through untouched, cancellation included.
func TestTimeoutPassesOtherErrors(t *testing.T) {
	t.Parallel()
	gone := Permanent(ReasonDestinationGone, true, errInbox)
	for _, want := range []error{nil, gone, context.Canceled} {
		inbox := &countingInbox{next: func(context.Context) error { return want }}
		require.Equal(t, want, Timeout(time.Minute)(inbox).Deliver(t.Context(), natsDelivery("agents.a")))
	}
}
