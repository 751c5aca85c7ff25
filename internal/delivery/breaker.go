package delivery

import (
	"context"
	"errors"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/msgrouter/msgrouter/internal/breaker"
)

// Breakers guards destinations by key (internal/breaker.Set is the one in use).
type Breakers interface {
	// Allow asks for one attempt; the attempt reports its outcome exactly once.
	// An error (wrapping breaker.ErrOpen) refuses it.
	Allow(key string) (func(breaker.Outcome), error)
	// OpenFor is what is left of key's open period.
	OpenFor(key string) time.Duration
	State(key string) gobreaker.State
}

// minOpenWait floors the wait behind an open breaker, so a row whose breaker is
// about to half-open does not come straight back.
const minOpenWait = 50 * time.Millisecond

// Breaker guards each destination (breaker.Key: an HTTP origin, a NATS subject)
// with its breaker in set. A refused delivery is not attempted: Breaker returns a
// *NotAttemptedError with Reason WaitBreakerOpen, wrapping breaker.ErrOpen, whose
// Wait is what is left of the open period (at least 50 ms) when the breaker is
// open, and halfOpenWait when it is half-open with its probe in flight (the
// probe's result decides; defaults to 1s). An allowed delivery reports Success
// when it returns nil and Failure when its error counts for the breaker
// (Classify(err).CountsForBreaker); everything else is Ignored: an error returned
// after ctx ended (cancellation is not the destination's fault, DESIGN §5), a
// NotAttemptedError from further in, a failure that says nothing about the
// destination's health. A nil set guards nothing.
func Breaker(set Breakers, halfOpenWait time.Duration) Middleware {
	if halfOpenWait <= 0 {
		halfOpenWait = time.Second
	}
	return func(next Deliverer) Deliverer {
		if set == nil {
			return next
		}
		return DelivererFunc(func(ctx context.Context, d *Delivery) error {
			key := breaker.Key(d.DestType, d.DestName)
			report, err := set.Allow(key)
			if err != nil {
				wait := halfOpenWait
				if set.State(key) == gobreaker.StateOpen {
					wait = max(set.OpenFor(key), minOpenWait)
				}
				return &NotAttemptedError{Reason: WaitBreakerOpen, Wait: wait, Err: err}
			}
			err = next.Deliver(ctx, d)
			report(breakerOutcome(ctx, err))
			return err
		})
	}
}

func breakerOutcome(ctx context.Context, err error) breaker.Outcome {
	if err == nil {
		return breaker.Success
	}
	if ctx.Err() != nil {
		return breaker.Ignore
	}
	var na *NotAttemptedError
	if errors.As(err, &na) || !Classify(err).CountsForBreaker {
		return breaker.Ignore
	}
	return breaker.Failure
}
