// Package periodic is the loop of a long-running part's timed chores (the
// scheduled audit, the dispatcher's sweep, lane reaper, hold and expiry checks):
// call a function, wait, call it again, until the context ends.
//
// Calls never overlap and the wait starts when a call returns (a fixed delay, not
// a fixed rate), so a slow call postpones the next one instead of queueing calls
// behind it. A call is not interrupted when the context ends: it gets the context
// and should return soon after it ends.
package periodic

import (
	"context"
	"time"
)

// Loop calls f when first has passed, and again when the delay the previous call
// returned has passed (zero or less: at once), until ctx ends. A receive on wake
// calls f at once, without waiting out the delay; a nil wake never does. Loop
// returns once ctx has ended and no call of f is running.
func Loop(ctx context.Context, first time.Duration, wake <-chan struct{}, f func(ctx context.Context) (next time.Duration)) {
	timer := time.NewTimer(first)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-wake:
		}
		timer.Reset(f(ctx))
	}
}

// Every calls f when first has passed, and again interval after each call
// returns, until ctx ends (Loop with a fixed delay and no wake channel).
func Every(ctx context.Context, first, interval time.Duration, f func(ctx context.Context)) {
	Loop(ctx, first, nil, func(ctx context.Context) time.Duration {
		f(ctx)
		return interval
	})
}
