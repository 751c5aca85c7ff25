package consumer_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/consumer"
)

// An invalid Config is refused at New with one error naming the field, before
// anything is created on the server.
func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	_, _, st := newStream(t)
	handler := func(context.Context, []jetstream.Msg) []consumer.Action { return nil }
	cc := jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy}

	_, err := consumer.New(t.Context(), consumer.Config{Consumer: cc, Handler: handler})
	require.ErrorContains(t, err, "Stream is required")
	_, err = consumer.New(t.Context(), consumer.Config{Stream: st, Consumer: cc})
	require.ErrorContains(t, err, "Handler is required")
	_, err = consumer.New(t.Context(), consumer.Config{Stream: st, Consumer: cc, Handler: handler, Workers: -1})
	require.ErrorContains(t, err, "must not be negative")
	_, err = st.Consumer(t.Context(), "c")
	require.ErrorIs(t, err, jetstream.ErrConsumerNotFound, "nothing was created")
}
