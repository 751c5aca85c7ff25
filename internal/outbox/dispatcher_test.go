package outbox

import (
	"context"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/breaker"
	"github.com/msgrouter/msgrouter/internal/delivery"
	"github.com/msgrouter/msgrouter/internal/testutil/logtest"
)

// Unit tests of the Dispatcher on a real Postgres (pgtest) with a fake inbox. The
// sweep is switched off (PollInterval one hour): each test hands claimed rows
// over as the takeover does, so it decides what is in flight. goleak runs in
// TestMain.

// runDispatcher starts a Dispatcher on cfg (Store, Breakers, Timeout, Lease and
// PollInterval filled in when unset) and stops it when the test ends.
func runDispatcher(t *testing.T, cfg Config) *Dispatcher {
	t.Helper()
	if cfg.Breakers == nil {
		cfg.Breakers = breaker.NewSet(breaker.Settings{})
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Minute
	}
	if cfg.Lease == 0 {
		cfg.Lease = 2 * time.Minute
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = time.Hour
	}
	d := New(cfg)
	require.NoError(t, d.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, d.Stop(ctx))
	})
	return d
}

// claimedRows takes n pending rows over and claims them (due now) for lease.
func claimedRows(f *storeFixture, n int, lease time.Duration) []Claimed {
	f.t.Helper()
	recs := pendingRecords(n, "agent-a@example.com")
	f.takeover(time.Hour, recs...)
	f.exec(`UPDATE outbox SET due_at = now()`)
	return f.claimN(n, lease)
}

// countingInbox accepts every delivery at once and counts them.
type countingInbox struct{ calls atomic.Int64 }

func (c *countingInbox) Deliver(context.Context, *delivery.Delivery) error {
	c.calls.Add(1)
	return nil
}

// counterValue reads a counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}

// gaugeValue reads a gauge.
func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, g.Write(&m))
	return m.GetGauge().GetValue()
}

// histogramCount reads how many observations a histogram holds.
func histogramCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, h.Write(&m))
	return m.GetHistogram().GetSampleCount()
}

// countOutbox counts outbox rows matching where (with args bound to $1...).
func (f *storeFixture) countOutbox(where string, args ...any) int {
	f.t.Helper()
	var n int
	require.NoError(f.t, f.pool.QueryRow(f.ctx, `SELECT count(*) FROM outbox WHERE `+where, args...).Scan(&n))
	return n
}

// A job that finds its destination's lane full waits for room (backpressure, issue
// 11) instead of going back to the outbox: the Handoff returns once the lane has
// taken it, nothing is written back (no lane_full, no lane_congested, no sweep
// claim), every job keeps its lease until delivered, and each is delivered once.
// (Before, the overflow went back to the outbox with a 1 s wait, lane_full.)
func TestDispatcherFullLaneWaitsForRoom(t *testing.T) {
	f := newStoreFixture(t)
	const queue = 1024 // max(1024, 16×Concurrency) with Concurrency 1
	const overflow = 5
	claimed := claimedRows(f, 1+queue+overflow, 2*time.Minute)

	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var calls atomic.Int64
	d := runDispatcher(t, Config{
		Store:       f.store,
		Concurrency: 1,
		LaneWait:    time.Hour, // never congested here: the test decides when room comes
		Deliverer: inboxFunc(func(ctx context.Context, _ *delivery.Delivery) error {
			if calls.Add(1) == 1 {
				entered <- struct{}{}
				<-release // the lane's only worker is busy with the first job
			}
			return nil
		}),
	})
	claimedAt := time.Now()
	jobs := make([]*Job, len(claimed))
	for i, c := range claimed {
		jobs[i] = d.NewJob(c, claimedAt, nil, true)
	}
	d.Handoff(context.Background(), jobs[0])
	<-entered
	d.Handoff(context.Background(), jobs[1:1+queue]...) // fills the queue: returns at once
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		d.Handoff(context.Background(), jobs[1+queue:]...)
	}()

	// The overflow Handoff waits (one job at a time, in order), the rows stay held.
	require.Eventually(t, func() bool { return gaugeValue(t, d.m.laneWaiters) == 1 }, 10*time.Second, time.Millisecond)
	select {
	case <-returned:
		t.Fatal("Handoff returned while its lane was full")
	default:
	}
	for _, c := range claimed[1+queue:] {
		o := f.mustOutbox(c.ID)
		require.NotNil(t, o.Token)
		require.Equal(t, c.Token, *o.Token, "a waiting job keeps its lease")
	}

	close(release)
	select {
	case <-returned:
	case <-time.After(20 * time.Second):
		t.Fatal("Handoff did not return once the lane had room")
	}
	require.Eventually(t, func() bool { return f.countOutbox(`true`) == 0 }, 20*time.Second, 10*time.Millisecond)
	require.EqualValues(t, 1+queue+overflow, calls.Load(), "each delivered once")
	for _, c := range claimed {
		m := f.message(c.ID)
		require.Equal(t, StatusDelivered, m.Status)
		require.Equal(t, 1, m.Attempts)
	}
	require.Zero(t, counterValue(t, d.m.waits.WithLabelValues("lane_full")))
	require.Zero(t, counterValue(t, d.m.waits.WithLabelValues("lane_congested")))
	require.Zero(t, counterValue(t, d.m.claimed), "nothing came back through the sweep")
	require.Zero(t, gaugeValue(t, d.m.laneWaiters))
	require.EqualValues(t, 1, histogramCount(t, d.m.laneWait), "one Handoff waited")
}

// A job whose claim may have lapsed (past 3/4 of the lease, local clock) is never
// delivered: another claim may hold the row. It is dropped without a write; the row
// stays as it is and comes back when the lease ends.
func TestDispatcherDropsJobPastItsLease(t *testing.T) {
	f := newStoreFixture(t)
	claimed := claimedRows(f, 3, 2*time.Minute)
	inbox := &countingInbox{}
	d := runDispatcher(t, Config{
		Store:     f.store,
		Deliverer: inbox,
	})
	stale := time.Now().Add(-2 * time.Minute) // deadline = stale + 1.5 min: passed
	d.Handoff(context.Background(), d.NewJob(claimed[0], stale, nil, true), d.NewJob(claimed[1], stale, nil, true))
	d.Handoff(context.Background(), d.NewJob(claimed[2], time.Now(), nil, true)) // a fresh one, for contrast

	require.Eventually(t, func() bool { return f.message(claimed[2].ID).Status == StatusDelivered },
		10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return counterValue(t, d.m.leaseExpired) == 2 },
		10*time.Second, 10*time.Millisecond)
	require.EqualValues(t, 1, inbox.calls.Load(), "only the fresh job reached the inbox")
	for _, c := range claimed[:2] {
		m := f.message(c.ID)
		require.Equal(t, StatusPending, m.Status)
		require.Zero(t, m.Attempts)
		o := f.mustOutbox(c.ID)
		require.NotNil(t, o.Token)
		require.Equal(t, c.Token, *o.Token, "the row is left to its claim's lease")
	}
}

// lockTimeoutStore is a Store whose statements give up after 50 ms waiting for a
// lock (SQLSTATE 55P03, not a data error: write retries it).
func lockTimeoutStore(t *testing.T, f *storeFixture) *Store {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(f.pool.Config().ConnString())
	require.NoError(t, err)
	cfg.ConnConfig.RuntimeParams["lock_timeout"] = "50ms"
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return NewStore(pool)
}

// lockOutbox holds an exclusive lock on the outbox until the returned func runs.
func lockOutbox(t *testing.T, f *storeFixture) (unlock func()) {
	t.Helper()
	tx, err := f.pool.Begin(f.ctx)
	require.NoError(t, err)
	_, err = tx.Exec(f.ctx, `LOCK TABLE outbox, messages IN ACCESS EXCLUSIVE MODE`)
	require.NoError(t, err)
	var once sync.Once
	unlock = func() { once.Do(func() { require.NoError(t, tx.Rollback(context.Background())) }) }
	t.Cleanup(unlock)
	return unlock
}

// A result write that fails for a transient reason (here a lock timeout) is
// retried while the rows' leases hold, and lands once Postgres lets it.
func TestDispatcherRetriesResultWrites(t *testing.T) {
	f := newStoreFixture(t)
	claimed := claimedRows(f, 4, 2*time.Minute)
	logs := &logtest.Buffer{}
	inbox := &countingInbox{}
	d := runDispatcher(t, Config{
		Store:     lockTimeoutStore(t, f),
		Logger:    slog.New(slog.NewTextHandler(logs, nil)),
		Deliverer: inbox,
	})
	unlock := lockOutbox(t, f)
	for _, c := range claimed {
		d.Handoff(context.Background(), d.NewJob(c, time.Now(), nil, true))
	}
	require.Eventually(t, func() bool { return strings.Count(logs.String(), "error recording delivery results, retrying") >= 2 },
		10*time.Second, 10*time.Millisecond)
	unlock()
	for _, c := range claimed {
		require.Eventually(t, func() bool { return f.message(c.ID).Status == StatusDelivered }, 10*time.Second, 10*time.Millisecond)
		f.requireNoOutbox(c.ID)
	}
	require.EqualValues(t, len(claimed), inbox.calls.Load(), "delivered once each: the write was retried, not the delivery")
	require.NotContains(t, logs.String(), "giving up recording delivery results")
}

// When the rows' leases are about to lapse, write gives up: the results are not
// written and the rows, untouched, are claimed again after the lease (at least
// once, nothing lost).
func TestDispatcherGivesUpResultWritesAtTheLease(t *testing.T) {
	f := newStoreFixture(t)
	const lease = 4 * time.Second
	claimed := claimedRows(f, 2, lease)
	logs := &logtest.Buffer{}
	d := runDispatcher(t, Config{
		Store:     lockTimeoutStore(t, f),
		Lease:     lease, // job deadline: 3 s after the claim
		Logger:    slog.New(slog.NewTextHandler(logs, nil)),
		Deliverer: inboxFunc(func(context.Context, *delivery.Delivery) error { return nil }),
	})
	unlock := lockOutbox(t, f)
	for _, c := range claimed {
		d.Handoff(context.Background(), d.NewJob(c, time.Now(), nil, true))
	}
	// Both results given up (they may be written by two completers, each giving up
	// on its own retry schedule: unlocking after the first only would let the
	// other's next try land).
	givenUp := regexp.MustCompile(`giving up recording delivery results.* results=(\d+)`)
	require.Eventually(t, func() bool {
		n := 0
		for _, m := range givenUp.FindAllStringSubmatch(logs.String(), -1) {
			k, _ := strconv.Atoi(m[1])
			n += k
		}
		return n == len(claimed)
	}, 15*time.Second, 20*time.Millisecond)
	unlock()
	for _, c := range claimed {
		m := f.message(c.ID)
		require.Equal(t, StatusPending, m.Status, "the result was not written")
		require.Zero(t, m.Attempts)
		o := f.mustOutbox(c.ID)
		require.NotNil(t, o.Token)
		require.Equal(t, c.Token, *o.Token, "still held by the claim until its lease ends")
	}
	again := f.claimN(len(claimed), time.Minute) // after the lease, on the database clock
	require.ElementsMatch(t, []uuid.UUID{claimed[0].ID, claimed[1].ID}, []uuid.UUID{again[0].ID, again[1].ID})
}

// Stop hands queued jobs back (Release: due now, no attempt counted) and lets the
// delivery in flight finish and its result be written.
func TestDispatcherStopHandsQueuedJobsBack(t *testing.T) {
	f := newStoreFixture(t)
	claimed := claimedRows(f, 6, 2*time.Minute)
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var calls atomic.Int64
	d := New(Config{
		Store:        f.store,
		Breakers:     breaker.NewSet(breaker.Settings{}),
		Concurrency:  1,
		Timeout:      time.Minute,
		Lease:        2 * time.Minute,
		PollInterval: time.Hour,
		Deliverer: inboxFunc(func(ctx context.Context, _ *delivery.Delivery) error {
			if calls.Add(1) == 1 {
				entered <- struct{}{}
				<-release
			}
			return nil
		}),
	})
	require.NoError(t, d.Start(context.Background()))
	claimedAt := time.Now()
	d.Handoff(context.Background(), d.NewJob(claimed[0], claimedAt, nil, true))
	<-entered
	for _, c := range claimed[1:] {
		d.Handoff(context.Background(), d.NewJob(c, claimedAt, nil, true))
	}

	stopped := make(chan error, 1)
	go func() { stopped <- d.Stop(context.Background()) }()
	require.Eventually(t, d.stopping.Load, 5*time.Second, time.Millisecond)
	close(release)
	select {
	case err := <-stopped:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("Stop did not return")
	}

	require.EqualValues(t, 1, calls.Load(), "queued jobs are not delivered once Stop began")
	require.Equal(t, StatusDelivered, f.message(claimed[0].ID).Status)
	f.requireNoOutbox(claimed[0].ID)
	for _, c := range claimed[1:] {
		m := f.message(c.ID)
		require.Equal(t, StatusPending, m.Status)
		require.Zero(t, m.Attempts, "a handed-back job is not an attempt")
		o := f.mustOutbox(c.ID)
		require.Nil(t, o.Token, "handed back: no lease left")
		require.LessOrEqual(t, o.DueIn, time.Duration(0), "due now, for the next replica")
	}
}
