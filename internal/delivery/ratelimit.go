package delivery

import (
	"context"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"github.com/msgrouter/msgrouter/internal/breaker"
)

// RateLimitDestinations bounds how many destinations RateLimit keeps a limiter
// for; the least recently used one beyond it is dropped (and starts afresh, with
// a full burst, when it comes back).
const RateLimitDestinations = 16384

// RateLimit caps deliveries to each destination (breaker.Key: an HTTP origin, a
// NATS subject) at perSecond, with a burst of max(1, perSecond) (DELIVERY_DESTINATION_RATE).
// A delivery waits for its turn; when ctx ends first it is not attempted:
// RateLimit returns a *NotAttemptedError with Reason WaitRateLimited, Wait 0 and
// ctx's error. perSecond <= 0 limits nothing.
func RateLimit(perSecond float64) Middleware {
	return func(next Deliverer) Deliverer {
		if perSecond <= 0 {
			return next
		}
		limiters, err := lru.New[string, *rate.Limiter](RateLimitDestinations)
		if err != nil {
			panic(err) // only for a size <= 0
		}
		limit, burst := rate.Limit(perSecond), max(1, int(perSecond))
		return DelivererFunc(func(ctx context.Context, d *Delivery) error {
			key := breaker.Key(d.DestType, d.DestName)
			lim, ok := limiters.Get(key)
			if !ok {
				lim = rate.NewLimiter(limit, burst)
				if prev, found, _ := limiters.PeekOrAdd(key, lim); found {
					lim = prev // another delivery added it first
				}
			}
			if err := lim.Wait(ctx); err != nil {
				return &NotAttemptedError{Reason: WaitRateLimited, Err: err}
			}
			return next.Deliver(ctx, d)
		})
	}
}
