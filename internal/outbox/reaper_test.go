package outbox

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/breaker"
	"github.com/msgrouter/msgrouter/internal/delivery"
)

// The lane reaper closes a destination's lane once it has been idle for a minute
// (checked every 30 s), so the lane map does not grow with every destination ever
// seen; a lane used since is kept. Runs on synctest's fake clock with no database:
// the sweep is kept from claiming (queue full), the expiry check never comes due,
// and the jobs are past their lease, so process drops them without a write.
func TestDispatcherReapsIdleLanes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls int
		d := New(Config{
			Breakers:     breaker.NewSet(breaker.Settings{}),
			Deliverer:    inboxFunc(func(context.Context, *delivery.Delivery) error { calls++; return nil }),
			Concurrency:  2,
			PollInterval: time.Hour,
			HoldCheck:    1000 * time.Hour,
			ExpiryCheck:  1000 * time.Hour,
		})
		d.queued.Store(1 << 40) // no room: the sweep never reaches the (absent) store
		require.NoError(t, d.Start(context.Background()))

		hasLane := func(dest string) bool {
			d.mu.Lock()
			defer d.mu.Unlock()
			_, ok := d.lanes[breaker.Key("NATS_SUBJECT", dest)]
			return ok
		}
		use := func(dest string) {
			c := Claimed{ID: uuid.New(), Address: "agent-a@example.com", DestType: "NATS_SUBJECT", DestName: dest}
			d.Handoff(context.Background(), d.NewJob(c, time.Now().Add(-time.Hour), nil, true)) // past its lease: dropped, no write
			synctest.Wait()
		}

		use("agents.a.inbox")
		use("agents.b.inbox")
		require.True(t, hasLane("agents.a.inbox"))
		require.True(t, hasLane("agents.b.inbox"))

		time.Sleep(45 * time.Second)
		use("agents.b.inbox") // b used again at 45 s
		time.Sleep(50 * time.Second)
		synctest.Wait() // reaper ran at 30, 60 and 90 s
		require.False(t, hasLane("agents.a.inbox"), "idle since 0 s: reaped at 90 s")
		require.True(t, hasLane("agents.b.inbox"), "used at 45 s: kept at 90 s")

		time.Sleep(30 * time.Second)
		synctest.Wait() // reaper at 120 s
		require.False(t, hasLane("agents.b.inbox"), "idle since 45 s: reaped at 120 s")

		use("agents.a.inbox") // a reaped lane comes back when needed
		require.True(t, hasLane("agents.a.inbox"))
		require.Zero(t, calls, "jobs past their lease never reach the inbox")
		require.EqualValues(t, 4, counterValue(t, d.m.leaseExpired))
		require.NoError(t, d.Stop(context.Background()))
	})
}
