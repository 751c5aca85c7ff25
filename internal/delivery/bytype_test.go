package delivery

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

type deliverFunc func(context.Context, *Delivery) error

func (f deliverFunc) Deliver(ctx context.Context, d *Delivery) error { return f(ctx, d) }

// ByType hands each delivery to the Deliverer of its destination type, and refuses
// a type it has none for with ErrUnsupported (not counted by the breaker).
func TestByType(t *testing.T) {
	var got []string
	by := ByType{
		"NATS_SUBJECT":  deliverFunc(func(_ context.Context, d *Delivery) error { got = append(got, "nats:"+d.DestName); return nil }),
		"HTTP_ENDPOINT": deliverFunc(func(_ context.Context, d *Delivery) error { got = append(got, "http:"+d.DestName); return nil }),
	}
	require.NoError(t, by.Deliver(t.Context(), &Delivery{DestType: "HTTP_ENDPOINT", DestName: "https://a.example/"}))
	require.NoError(t, by.Deliver(t.Context(), &Delivery{DestType: "NATS_SUBJECT", DestName: "agents.a"}))
	require.Equal(t, []string{"http:https://a.example/", "nats:agents.a"}, got)

	err := by.Deliver(t.Context(), &Delivery{DestType: "CARRIER_PIGEON"})
	require.ErrorIs(t, err, ErrUnsupported)
	var e *Error
	require.True(t, errors.As(err, &e))
	require.True(t, e.Permanent)
	require.False(t, e.CountsForBreaker)
	require.Len(t, got, 2, "an unsupported type reaches no Deliverer")
}
