package delivery

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/breaker"
)

// countingInbox is a fake inbox returning what next returns and counting calls.
type countingInbox struct {
	calls atomic.Int64
	next  func(ctx context.Context) error
}

func (c *countingInbox) Deliver(ctx context.Context, _ *Delivery) error {
	c.calls.Add(1)
	return c.next(ctx)
}

var errInbox = errors.New("inbox down")

func natsDelivery(subject string) *Delivery {
	return &Delivery{MessageID: "m", DestType: "NATS_SUBJECT", DestName: subject}
}

// The breaker opens after Failures consecutive counted failures; behind it a
// delivery is not attempted and waits out the rest of the open period (at least
// 50 ms); once it has passed, one probe goes while others wait halfOpenWait, and
// the probe's success closes it. Synctest's clock drives gobreaker's and the Set's.
func TestBreakerOpensProbesAndCloses(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		set := breaker.NewSet(breaker.Settings{Failures: 3, OpenTimeout: 30 * time.Second})
		fail := true
		probe := make(chan struct{})
		inbox := &countingInbox{next: func(ctx context.Context) error {
			if fail {
				return Retryable(errInbox)
			}
			<-probe
			return nil
		}}
		d := Breaker(set, 700*time.Millisecond)(inbox)
		ctx := context.Background()

		for range 3 {
			require.ErrorIs(t, d.Deliver(ctx, natsDelivery("agents.a")), errInbox)
		}
		require.Equal(t, gobreaker.StateOpen, set.State("nats:agents.a"))

		notAttempted := func(del *Delivery) *NotAttemptedError {
			t.Helper()
			err := d.Deliver(ctx, del)
			var na *NotAttemptedError
			require.ErrorAs(t, err, &na)
			require.ErrorIs(t, err, breaker.ErrOpen)
			require.Equal(t, WaitBreakerOpen, na.Reason)
			return na
		}
		require.Equal(t, 30*time.Second, notAttempted(natsDelivery("agents.a")).Wait)
		time.Sleep(10 * time.Second)
		require.Equal(t, 20*time.Second, notAttempted(natsDelivery("agents.a")).Wait)
		time.Sleep(20*time.Second - 10*time.Millisecond)
		require.Equal(t, 50*time.Millisecond, notAttempted(natsDelivery("agents.a")).Wait, "floored")
		require.EqualValues(t, 3, inbox.calls.Load(), "deliveries behind an open breaker are not attempted")
		require.ErrorIs(t, d.Deliver(ctx, natsDelivery("agents.b")), errInbox, "another destination has its own breaker")
		require.EqualValues(t, 4, inbox.calls.Load())
		inbox.calls.Store(0)

		// Half-open: one probe, the others wait halfOpenWait.
		time.Sleep(20 * time.Millisecond) // past the open period
		fail = false
		probed := make(chan error)
		go func() { probed <- d.Deliver(ctx, natsDelivery("agents.a")) }()
		synctest.Wait() // the probe is in the inbox
		require.Equal(t, gobreaker.StateHalfOpen, set.State("nats:agents.a"))
		require.Equal(t, 700*time.Millisecond, notAttempted(natsDelivery("agents.a")).Wait)
		close(probe)
		require.NoError(t, <-probed)
		require.Equal(t, gobreaker.StateClosed, set.State("nats:agents.a"))
		require.NoError(t, d.Deliver(ctx, natsDelivery("agents.a")))
		require.EqualValues(t, 2, inbox.calls.Load())
	})
}

// What says nothing about the destination's health never opens its breaker:
// failures with CountsForBreaker false, errors after the caller's ctx ended
// (shutdown), and deliveries a decorator further in did not attempt.
func TestBreakerIgnoresOutcomesThatDoNotCount(t *testing.T) {
	t.Parallel()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name string
		ctx  context.Context
		err  error
	}{
		{"not counted", context.Background(), Permanent(ReasonDestinationForbidden, false, errInbox)},
		{"ctx cancelled", cancelled, Retryable(errors.Join(context.Canceled, errInbox))},
		{"not attempted", context.Background(), &NotAttemptedError{Reason: WaitRateLimited, Err: context.Canceled}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			set := breaker.NewSet(breaker.Settings{Failures: 2})
			inbox := &countingInbox{next: func(context.Context) error { return tc.err }}
			d := Breaker(set, time.Second)(inbox)
			for range 10 {
				require.ErrorIs(t, d.Deliver(tc.ctx, natsDelivery("agents.a")), tc.err)
			}
			require.EqualValues(t, 10, inbox.calls.Load())
			require.Equal(t, gobreaker.StateClosed, set.State("nats:agents.a"))
		})
	}
}

// A success between failures resets the streak; a nil Set guards nothing.
func TestBreakerSuccessResetsAndNilSet(t *testing.T) {
	t.Parallel()
	set := breaker.NewSet(breaker.Settings{Failures: 2})
	var n atomic.Int64
	inbox := &countingInbox{next: func(context.Context) error {
		if n.Add(1)%2 == 0 {
			return nil
		}
		return Retryable(errInbox)
	}}
	d := Breaker(set, time.Second)(inbox)
	for range 10 {
		_ = d.Deliver(t.Context(), natsDelivery("agents.a"))
	}
	require.EqualValues(t, 10, inbox.calls.Load())
	require.Equal(t, gobreaker.StateClosed, set.State("nats:agents.a"))

	require.Same(t, Deliverer(inbox), Breaker(nil, time.Second)(inbox))
}
