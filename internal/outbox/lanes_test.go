package outbox

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/msgrouter/msgrouter/internal/breaker"
	"github.com/msgrouter/msgrouter/internal/delivery"
)

// Lane workers on demand (lanes.go): a lane starts with one worker, adds one when a
// job is queued and none is free, up to Concurrency, and a worker idle for laneIdle
// exits unless it is the lane's last. No database: laneDispatcher runs the lanes
// without the sweep, the gate and the completers, so results stay in d.results.

// laneDispatcher returns a Dispatcher with only its lanes running (Start's contexts,
// none of its goroutines). Stop works as usual.
func laneDispatcher(concurrency int, inbox inboxFunc) *Dispatcher {
	d := New(Config{Deliverer: inbox, Concurrency: concurrency, Timeout: time.Hour})
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.writeCtx, d.writeCancel = context.WithCancel(context.Background())
	d.sweepStop = func() {}
	return d
}

// laneJobs makes n unkeyed jobs for one NATS inbox, claimed now.
func laneJobs(d *Dispatcher, n int) []*Job {
	out := make([]*Job, n)
	for i := range out {
		c := Claimed{ID: uuid.New(), Address: "agent-a@example.com", DestType: "NATS_SUBJECT", DestName: "agents.a.inbox"}
		out[i] = d.NewJob(c, time.Now(), nil, true)
	}
	return out
}

// stoppedResults stops d and returns the results its lanes left in d.results, by kind.
func stoppedResults(t *testing.T, d *Dispatcher, ctx context.Context) map[Kind]int {
	t.Helper()
	require.NoError(t, d.Stop(ctx))
	kinds := map[Kind]int{}
	for r := range d.results {
		kinds[r.Kind]++
	}
	return kinds
}

// peak counts what is in progress and the most there ever was at once.
type peak struct{ now, max atomic.Int64 }

func (p *peak) enter() {
	n := p.now.Add(1)
	for m := p.max.Load(); n > m && !p.max.CompareAndSwap(m, n); m = p.max.Load() {
	}
}

func (p *peak) leave() { p.now.Add(-1) }

func TestLaneWorkersStartOnDemandUpToConcurrencyAndLeaveWhenIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const concurrency = 4
		release := make(chan struct{})
		var inFlight peak
		d := laneDispatcher(concurrency, func(ctx context.Context, _ *delivery.Delivery) error {
			inFlight.enter()
			defer inFlight.leave()
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		ctx := context.Background()
		workers := func() int { return int(gaugeValue(t, d.m.laneWorkers)) }

		d.Handoff(ctx, laneJobs(d, 1)...)
		synctest.Wait()
		require.Equal(t, 1, workers(), "a new lane starts one worker")
		require.EqualValues(t, 1, inFlight.now.Load())

		d.Handoff(ctx, laneJobs(d, 2)...)
		synctest.Wait()
		require.Equal(t, 3, workers(), "a job queued with every worker busy starts one more")
		require.EqualValues(t, 3, inFlight.now.Load())

		d.Handoff(ctx, laneJobs(d, 20)...)
		synctest.Wait()
		require.Equal(t, concurrency, workers(), "never more than Concurrency")
		require.EqualValues(t, concurrency, inFlight.now.Load())
		require.EqualValues(t, 23-concurrency, d.queued.Load(), "the rest wait in the queue")

		for range 23 {
			release <- struct{}{} // one delivery ends; its worker takes the next job
		}
		synctest.Wait()
		require.Len(t, d.results, 23)
		require.EqualValues(t, concurrency, inFlight.max.Load())
		require.Equal(t, concurrency, workers(), "idle for less than laneIdle: still running")

		time.Sleep(d.laneIdle + time.Second)
		synctest.Wait()
		require.Equal(t, 1, workers(), "idle workers leave, the lane's last stays")

		time.Sleep(10 * d.laneIdle)
		synctest.Wait()
		require.Equal(t, 1, workers(), "the last worker stays however long the lane is idle")

		d.Handoff(ctx, laneJobs(d, 3)...)
		synctest.Wait()
		require.Equal(t, 3, workers(), "a lane grows again")
		close(release)

		kinds := stoppedResults(t, d, ctx)
		require.Equal(t, map[Kind]int{Delivered: 26}, kinds)
		require.Zero(t, workers())
	})
}

// Stop hands the jobs still queued back (Release) and cancels the deliveries in
// flight (Release too, not an attempt), with the lane's workers short of
// Concurrency or at it.
func TestLaneWorkersOnDemandStopHandsQueuedJobsBack(t *testing.T) {
	for _, queued := range []int{0, 1, 50} {
		t.Run(fmt.Sprintf("%d queued", queued), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const concurrency = 3
				d := laneDispatcher(concurrency, func(ctx context.Context, _ *delivery.Delivery) error {
					<-ctx.Done() // stuck until Stop gives up on it
					return ctx.Err()
				})
				d.Handoff(context.Background(), laneJobs(d, 1)...)
				synctest.Wait()
				d.Handoff(context.Background(), laneJobs(d, queued)...)
				synctest.Wait()
				require.Equal(t, 1+min(queued, concurrency-1), int(gaugeValue(t, d.m.laneWorkers)))

				stop, cancel := context.WithCancel(context.Background())
				cancel() // in-flight deliveries are cancelled at once
				kinds := stoppedResults(t, d, stop)
				require.Equal(t, map[Kind]int{Release: 1 + queued}, kinds)
				require.Zero(t, gaugeValue(t, d.m.laneWorkers))
				require.Zero(t, d.queued.Load())
			})
		})
	}
}

// Many callers placing bursts of jobs at once while workers come and go (laneIdle
// of a microsecond: each pause between bursts retires the workers a burst started;
// over a hundred starts and retires per run) never run more than Concurrency
// deliveries or workers on a lane, and every job is delivered. Real scheduler, for
// the race detector and the ordering of grow and retire.
func TestLaneWorkersOnDemandNeverExceedConcurrency(t *testing.T) {
	// Not parallel: goleak compares against the goroutines running before it.
	ignore := goleak.IgnoreCurrent()
	const concurrency, callers, perCaller, burst = 3, 4, 200, 5
	var inFlight peak
	var overRunning atomic.Int64
	delivered := make(chan struct{}, callers*perCaller)
	var d *Dispatcher
	d = laneDispatcher(concurrency, func(context.Context, *delivery.Delivery) error {
		inFlight.enter()
		defer inFlight.leave()
		d.mu.Lock()
		l := d.lanes[breaker.Key("NATS_SUBJECT", "agents.a.inbox")]
		d.mu.Unlock()
		if l != nil && l.running.Load() > concurrency {
			overRunning.Add(1)
		}
		for range 3 {
			runtime.Gosched() // a delivery takes a while: a burst finds every worker busy
		}
		delivered <- struct{}{}
		return nil
	})
	d.laneIdle = time.Microsecond
	var wg sync.WaitGroup
	deadline := time.Now().Add(time.Minute) // a failure's deadline, not a timing assertion
	for range callers {
		wg.Go(func() {
			for range perCaller / burst {
				d.Handoff(context.Background(), laneJobs(d, burst)...)
				// Until the queue is empty: the burst is taken, and workers left
				// idle then retire before the next burst starts others.
				for d.queued.Load() > 0 && time.Now().Before(deadline) {
					runtime.Gosched()
				}
			}
		})
	}
	wg.Wait()
	timeout := time.After(time.Until(deadline) + time.Second)
	for range callers * perCaller {
		select {
		case <-delivered:
		case <-timeout:
			t.Fatalf("%d jobs queued and not delivered", d.queued.Load())
		}
	}
	require.LessOrEqual(t, inFlight.max.Load(), int64(concurrency))
	require.Zero(t, overRunning.Load(), "a lane ran more than Concurrency workers")
	kinds := stoppedResults(t, d, context.Background())
	require.Equal(t, map[Kind]int{Delivered: callers * perCaller}, kinds)
	require.Zero(t, gaugeValue(t, d.m.laneWorkers))
	goleak.VerifyNone(t, ignore)
}
