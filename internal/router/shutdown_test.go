package router_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/testutil/runtest"
)

// Shutdown while Postgres does not answer (DESIGN §8.4; issue 8, item 8): the
// takeovers and result writes hang on locked tables, SIGTERM comes, and the router
// must return nil (exit 0) within SHUTDOWN_TIMEOUT plus a little, not hang on its
// stuck batches nor fail because the consumer's stop timed out. Nothing is lost:
// once Postgres answers again, a new router delivers every message.
func TestShutdownBoundedWhilePostgresHangs(t *testing.T) {
	t.Parallel()
	e := setup(t, map[string]string{"SHUTDOWN_TIMEOUT": "1s"})
	e.cams.set("p", mapping.TypeNATSSubject, "inbox.p", mapping.StatusActive)
	warm := uuid.NewString()
	e.publish(body("p", `{"warm":true}`), warm)
	e.waitStatus(warm, "DELIVERED")

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.cfg.DatabaseURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `LOCK TABLE messages, outbox IN ACCESS EXCLUSIVE MODE`)
	require.NoError(t, err)

	var ids []string
	for i := range 20 {
		id := uuid.NewString()
		ids = append(ids, id)
		e.publish(body("p", fmt.Sprintf(`{"i":%d}`, i)), id)
	}
	// Wait until a takeover is stuck on the lock.
	require.Eventually(t, func() bool {
		var n int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		    WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		return err == nil && n > 0
	}, 20*time.Second, 10*time.Millisecond)

	e.cancel()
	e.cancel = nil
	runtest.Returns(t, e.done, 5*time.Second, "shutdown is bounded by SHUTDOWN_TIMEOUT (1 s) plus the time to abandon calls")

	require.NoError(t, tx.Rollback(ctx))
	e.start()
	for _, id := range ids {
		e.waitStatus(id, "DELIVERED")
	}
}
