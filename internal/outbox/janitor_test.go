package outbox

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/msgrouter/msgrouter/internal/testutil/runtest"
)

// The janitor's loops hold a Postgres statement most of the time; with Postgres
// not answering (a partition), Stop must still return within its context
// (DESIGN §8.4) and leave no goroutine behind. Start and Stop are idempotent.
func TestJanitorStopBoundedWhilePostgresIsDown(t *testing.T) {
	// Not parallel: goleak compares against the goroutines running before it.
	ignore := goleak.IgnoreCurrent()
	store, restore := blackhole(t, nil)
	j := NewJanitor(store, time.Hour, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	require.NoError(t, j.Start(context.Background()))
	require.NoError(t, j.Start(context.Background()), "idempotent")
	// The first sample is waiting on the server that never answers.
	require.Eventually(t, func() bool { return store.pool.Stat().ConstructingConns() > 0 },
		5*time.Second, 5*time.Millisecond)

	runtest.StopBounded(t, j, time.Second, "the loops' statements are cancelled, so they end in time")
	require.NoError(t, j.Start(context.Background()), "Start after Stop does nothing")
	restore()
	goleak.VerifyNone(t, ignore)
}
