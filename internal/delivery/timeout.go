package delivery

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Timeout bounds each attempt by d (DELIVERY_TIMEOUT). An error that is or wraps
// context.DeadlineExceeded is returned wrapped as "delivery timed out after <d>:
// <err>", still classified as the inner error was (errors.As finds its *Error).
func Timeout(d time.Duration) Middleware {
	return func(next Deliverer) Deliverer { return &timeout{next: next, d: d} }
}

type timeout struct {
	next Deliverer
	d    time.Duration
}

func (t *timeout) Deliver(ctx context.Context, d *Delivery) error {
	ctx, cancel := context.WithTimeout(ctx, t.d)
	err := t.next.Deliver(ctx, d)
	cancel()
	if err != nil && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("delivery timed out after %s: %w", t.d, err)
	}
	return err
}
