package consumer_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/consumer"
	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
)

// A batch stuck in its handler (a takeover waiting on an unreachable Postgres)
// must not hold Stop past its context (DESIGN §8.4): Stop returns an error when its
// context ends, the handler's context is cancelled so it gives up, and the batch,
// not acked, is redelivered to whoever pulls next.
func TestStopBoundedWhileAHandlerHangs(t *testing.T) {
	t.Parallel()
	_, js, st := newStream(t)
	ctx := context.Background()
	cfg := jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Second, MaxDeliver: -1}

	entered := make(chan struct{}, 1)
	var gaveUp atomic.Bool
	c, err := consumer.New(ctx, consumer.Config{Stream: st, Consumer: cfg, Handler: func(ctx context.Context, msgs []jetstream.Msg) []consumer.Action {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-ctx.Done() // stuck until the stop deadline
		gaveUp.Store(true)
		return nil // no verdict: the messages are left to AckWait
	}})
	require.NoError(t, err)
	require.NoError(t, c.Start(ctx))
	require.NoError(t, c.Start(ctx), "Start is idempotent")
	publishAndAwait(t, js, entered)

	sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = c.Stop(sctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 3*time.Second, "Stop is bounded by its context")
	require.Eventually(t, gaveUp.Load, 5*time.Second, 10*time.Millisecond, "the stuck handler's context was cancelled")
	require.NoError(t, c.Stop(ctx), "idempotent")

	// Not acked: another consumer instance gets it again.
	got := make(chan struct{}, 1)
	c2, err := consumer.New(ctx, consumer.Config{Stream: st, Consumer: cfg, Handler: func(_ context.Context, msgs []jetstream.Msg) []consumer.Action {
		got <- struct{}{}
		out := make([]consumer.Action, len(msgs))
		return out // Ack
	}})
	require.NoError(t, err)
	require.NoError(t, c2.Start(ctx))
	defer c2.Stop(ctx) //nolint:errcheck
	select {
	case <-got:
	case <-time.After(15 * time.Second):
		t.Fatal("the batch cut short was never redelivered")
	}
}

// With NATS gone (the server shut down under a pulling consumer), Stop must still
// return within its context (DESIGN §8.4); TestMain's goleak checks the reader
// and the workers ended once the connection closed.
func TestStopBoundedWhileNATSIsDown(t *testing.T) {
	t.Parallel()
	srv, js, st := newStream(t)
	ctx := context.Background()
	cfg := jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Second}

	handled := make(chan struct{}, 1)
	c, err := consumer.New(ctx, consumer.Config{Stream: st, Consumer: cfg, Handler: func(_ context.Context, msgs []jetstream.Msg) []consumer.Action {
		select {
		case handled <- struct{}{}:
		default:
		}
		return make([]consumer.Action, len(msgs)) // Ack
	}})
	require.NoError(t, err)
	require.NoError(t, c.Start(ctx))
	publishAndAwait(t, js, handled)
	srv.Shutdown()
	srv.WaitForShutdown()

	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	start := time.Now()
	// The pull iterator's drain cannot complete without the server, so Stop may
	// run to its deadline; what matters is that it returns by then.
	if err := c.Stop(sctx); err != nil {
		require.ErrorIs(t, err, context.DeadlineExceeded)
	}
	require.Less(t, time.Since(start), 3*time.Second, "Stop is bounded by its context")
	require.NoError(t, c.Stop(ctx), "idempotent")
}

// publishAndAwait publishes one message on s.1 and waits, for 10 s at most, until
// handled says the consumer's handler got it.
func publishAndAwait(t *testing.T, js jetstream.JetStream, handled <-chan struct{}) {
	t.Helper()
	_, err := js.Publish(t.Context(), "s.1", []byte("m"))
	require.NoError(t, err)
	select {
	case <-handled:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler never got the message")
	}
}

// newStream starts a JetStream server with a stream S on the subjects s.>; all
// gone when t ends.
func newStream(t *testing.T) (*natstest.Server, jetstream.JetStream, jetstream.Stream) {
	t.Helper()
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	st, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}})
	require.NoError(t, err)
	return srv, js, st
}
