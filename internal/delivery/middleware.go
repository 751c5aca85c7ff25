package delivery

import (
	"context"
	"time"
)

// Middleware decorates a Deliverer: it may refuse a delivery before it is
// attempted (NotAttemptedError), bound it (Timeout), trace it (Tracing) or watch
// its outcome (Breaker), and otherwise hands it to next. The model is watermill's
// message-router middleware. A Middleware's Deliverer is safe for concurrent use
// when next is.
type Middleware func(next Deliverer) Deliverer

// Chain wraps d in mws, the first outermost: Chain(d, a, b) delivers through
// a(b(d)). The dispatcher composes its chain in one place (outbox.New).
func Chain(d Deliverer, mws ...Middleware) Deliverer {
	for i := len(mws) - 1; i >= 0; i-- {
		d = mws[i](d)
	}
	return d
}

// DelivererFunc adapts a function to a Deliverer.
type DelivererFunc func(ctx context.Context, d *Delivery) error

// Deliver calls f(ctx, d).
func (f DelivererFunc) Deliver(ctx context.Context, d *Delivery) error { return f(ctx, d) }

// Reasons of a NotAttemptedError, also the reason label of the dispatcher's
// msgrouter_outbox_waits_total for those that wait.
const (
	WaitBreakerOpen = "breaker_open" // the destination's breaker refused (Breaker)
	WaitRateLimited = "rate_limited" // the rate-limit wait was cut short by ctx (RateLimit)
)

// NotAttemptedError says a decorator held a delivery back before it reached the
// inbox. It is not a failed attempt (DESIGN §5): it counts towards no breaker and
// no attempt limit. The caller puts the message back to wait for Wait, or, when
// Wait is 0 (ctx ended while the delivery waited), hands it back at once.
type NotAttemptedError struct {
	Reason string        // WaitBreakerOpen, WaitRateLimited
	Wait   time.Duration // how long to wait before trying again; 0 = hand back now
	Err    error         // why: wraps breaker.ErrOpen, or ctx's error
}

func (e *NotAttemptedError) Error() string { return "delivery not attempted: " + e.Err.Error() }
func (e *NotAttemptedError) Unwrap() error { return e.Err }
