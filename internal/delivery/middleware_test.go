package delivery

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// Chain applies its middleware first-outermost, and with none returns the
// Deliverer itself.
func TestChain(t *testing.T) {
	t.Parallel()
	var order []string
	mw := func(name string) Middleware {
		return func(next Deliverer) Deliverer {
			return DelivererFunc(func(ctx context.Context, d *Delivery) error {
				order = append(order, name+">")
				err := next.Deliver(ctx, d)
				order = append(order, "<"+name)
				return err
			})
		}
	}
	inner := DelivererFunc(func(context.Context, *Delivery) error { order = append(order, "inbox"); return nil })
	require.NoError(t, Chain(inner, mw("a"), mw("b")).Deliver(t.Context(), &Delivery{}))
	require.Equal(t, []string{"a>", "b>", "inbox", "<b", "<a"}, order)

	order = nil
	require.NoError(t, Chain(inner).Deliver(t.Context(), &Delivery{}))
	require.Equal(t, []string{"inbox"}, order)
}
