package consumer_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/consumer"
	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
)

// With NATS gone (the server shut down under a pulling consumer), Stop must still
// return within its context (DESIGN §8.4); TestMain's goleak checks the reader
// and the workers ended once the connection closed.
func TestStopBoundedWhileNATSIsDown(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx := context.Background()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}})
	require.NoError(t, err)
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
	_, err = js.Publish(ctx, "s.1", []byte("m"))
	require.NoError(t, err)
	select {
	case <-handled:
	case <-time.After(10 * time.Second):
		t.Fatal("the consumer never pulled the message")
	}
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
