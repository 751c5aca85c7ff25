package audit_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/audit"
	"github.com/msgrouter/msgrouter/internal/testutil/blackhole"
	"github.com/msgrouter/msgrouter/internal/testutil/runtest"
)

// With Postgres not answering (a partition), a scheduled audit hangs on its first
// statement; Stop must still return within its context (DESIGN §8.4), because it
// cancels the audit. TestMain's goleak checks the loop ended.
func TestSchedulerStopBoundedWhilePostgresIsDown(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@"+blackhole.Listen(t)+"/x")
	require.NoError(t, err)
	defer pool.Close()

	s := audit.NewScheduler(audit.SchedulerConfig{Interval: 10 * time.Millisecond, DB: pool,
		Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry()})
	require.NoError(t, s.Start(t.Context()))
	require.NoError(t, s.Start(t.Context()), "idempotent")
	require.Eventually(t, func() bool { return pool.Stat().ConstructingConns() > 0 },
		5*time.Second, 5*time.Millisecond, "the audit is waiting on Postgres")

	runtest.StopBounded(t, s, time.Second, "the audit is cancelled, so the loop ends in time")
}
