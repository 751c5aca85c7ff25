package outbox

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/msgrouter/msgrouter/internal/breaker"
	"github.com/msgrouter/msgrouter/internal/delivery"
)

// inboxFunc is a fake agent inbox.
type inboxFunc func(ctx context.Context, d *delivery.Delivery) error

func (f inboxFunc) Deliver(ctx context.Context, d *delivery.Delivery) error { return f(ctx, d) }

// stopFixture runs a Dispatcher whose claimed jobs are handed over in-process, as the
// takeover does, so the test decides when Postgres becomes unreachable.
func startDispatcher(t *testing.T, store *Store, inbox inboxFunc) *Dispatcher {
	t.Helper()
	d := New(Config{
		Store:        store,
		Deliverer:    inboxFunc(inbox),
		Breakers:     breaker.NewSet(breaker.Settings{}),
		Timeout:      time.Minute, // deliveries never time out on their own in these tests
		Lease:        2 * time.Minute,
		PollInterval: time.Hour, // no sweeps: the test hands the jobs over
	})
	require.NoError(t, d.Start(context.Background()))
	return d
}

// Shutdown while Postgres does not answer (DESIGN §8.4; issue 8, item 8): the
// dispatcher's result writes used to retry until the rows' lease deadline and Stop
// waited on them without a bound (20.8 s with a 1 s deadline). Stop must return
// soon after its context ends, with an error saying results were not written, leave
// no goroutine behind, and lose nothing: the rows stay PENDING and come back after
// their lease.
func TestDispatcherStopBoundedWhilePostgresIsDown(t *testing.T) {
	// Not parallel: goleak compares against the goroutines running before it.
	cases := []struct {
		name string
		// down makes Postgres unreachable for store's writes and returns a way back.
		down func(t *testing.T, f *storeFixture) (store *Store, restore func())
		// hang makes some deliveries hang until cancelled, as well.
		hang bool
	}{
		{"tables locked (writes hang)", lockTables, false},
		{"tables locked, an inbox hangs too", lockTables, true},
		{"connection refused", deadPort, false},
		{"server never answers", blackhole, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newStoreFixture(t)
			recs := pendingRecords(40, "agent-a@example.com")
			f.takeover(time.Hour, recs...)
			f.exec(`UPDATE outbox SET due_at = now()`) // claimable now
			claimed := f.claimN(len(recs), 2*time.Minute)

			ignore := goleak.IgnoreCurrent()
			store, restore := tc.down(t, f)
			delivered := make(chan struct{}, len(recs))
			d := startDispatcher(t, store, func(ctx context.Context, del *delivery.Delivery) error {
				defer func() { delivered <- struct{}{} }()
				if tc.hang && del.MessageID[0] < '8' {
					<-ctx.Done()
					return ctx.Err()
				}
				return nil
			})
			claimedAt := time.Now()
			for _, c := range claimed {
				d.Handoff(context.Background(), d.NewJob(c, claimedAt, nil, true))
			}
			for range recs { // every delivery ran (or hangs), results are waiting to be written
				if !tc.hang {
					<-delivered
				}
			}

			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			start := time.Now()
			err := d.Stop(ctx)
			took := time.Since(start)
			require.ErrorIs(t, err, context.DeadlineExceeded, "Stop says results were not written")
			require.Less(t, took, 4*time.Second, "Stop is bounded by its context (1 s) plus the time to abandon a call")
			require.NoError(t, d.Stop(context.Background()), "idempotent")
			restore()
			goleak.VerifyNone(t, ignore)

			// Nothing lost: every message is still PENDING, its row held by the
			// old claim until the lease ends, then claimed again.
			for _, r := range recs {
				require.Equal(t, StatusPending, f.message(r.ID).Status)
				f.mustOutbox(r.ID)
			}
			f.requireNoOrphans()
		})
	}
}

// lockTables holds an exclusive lock on the outbox in an open transaction: every
// result write waits on it.
func lockTables(t *testing.T, f *storeFixture) (*Store, func()) {
	tx, err := f.pool.Begin(f.ctx)
	require.NoError(t, err)
	_, err = tx.Exec(f.ctx, `LOCK TABLE outbox, messages IN ACCESS EXCLUSIVE MODE`)
	require.NoError(t, err)
	return f.store, func() { require.NoError(t, tx.Rollback(context.Background())) }
}

// deadPort points a pool at a port nobody listens on.
func deadPort(t *testing.T, _ *storeFixture) (*Store, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@"+addr+"/x")
	require.NoError(t, err)
	return NewStore(pool), pool.Close
}

// blackhole points a pool at a server that accepts connections and never answers
// (a network partition, a frozen server).
func blackhole(t *testing.T, _ *storeFixture) (*Store, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepted := make(chan net.Conn, 64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@"+ln.Addr().String()+"/x")
	require.NoError(t, err)
	return NewStore(pool), func() {
		pool.Close()
		_ = ln.Close()
		for c := range accepted {
			_ = c.Close()
		}
	}
}
