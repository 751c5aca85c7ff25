package delivery

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Timeout bounds each attempt by limit (DELIVERY_TIMEOUT). An error that is or wraps
// context.DeadlineExceeded is returned wrapped as "delivery timed out after <limit>:
// <err>", still classified as the inner error was (errors.As finds its *Error).
func Timeout(limit time.Duration) Middleware {
	return func(next Deliverer) Deliverer {
		return DelivererFunc(func(ctx context.Context, d *Delivery) error {
			ctx, cancel := context.WithTimeout(ctx, limit)
			err := next.Deliver(ctx, d)
			cancel()
			if err != nil && errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("delivery timed out after %s: %w", limit, err)
			}
			return err
		})
	}
}
