package consumer_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/consumer"
	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
)

// An invalid Config is refused at New with one error naming the field, before
// anything is created on the server.
func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	st, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}})
	require.NoError(t, err)
	handler := func(context.Context, []jetstream.Msg) []consumer.Action { return nil }
	cc := jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy}

	_, err = consumer.New(t.Context(), consumer.Config{Consumer: cc, Handler: handler})
	require.ErrorContains(t, err, "Stream is required")
	_, err = consumer.New(t.Context(), consumer.Config{Stream: st, Consumer: cc})
	require.ErrorContains(t, err, "Handler is required")
	_, err = consumer.New(t.Context(), consumer.Config{Stream: st, Consumer: cc, Handler: handler, Workers: -1})
	require.ErrorContains(t, err, "must not be negative")
	_, err = st.Consumer(t.Context(), "c")
	require.ErrorIs(t, err, jetstream.ErrConsumerNotFound, "nothing was created")
}
