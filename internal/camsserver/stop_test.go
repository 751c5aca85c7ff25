package camsserver

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/testutil/pgtest"
	"github.com/msgrouter/msgrouter/internal/testutil/runtest"
)

// With Postgres not answering (its table locked), a lookup hangs in the store;
// once its context ends, Serve must still return within SHUTDOWN_TIMEOUT plus a
// little (DESIGN §8.4), and TestMain's goleak checks nothing was left running.
func TestServeStopBoundedWhilePostgresHangs(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dbURL := pgtest.NewURL(t)
	cfg := config.CAMS{DatabaseURL: dbURL, Addr: ln.Addr().String(), AdminAPIKeys: "k"}
	cfg.ShutdownTimeout = time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry()) }()

	base := "http://" + ln.Addr().String()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	waitReady(t, client, base)

	bg := context.Background()
	conn, err := pgx.Connect(bg, dbURL)
	require.NoError(t, err)
	defer conn.Close(bg)
	tx, err := conn.Begin(bg)
	require.NoError(t, err)
	_, err = tx.Exec(bg, `LOCK TABLE agent_inboxes IN ACCESS EXCLUSIVE MODE`)
	require.NoError(t, err)

	lookup := make(chan struct{})
	go func() {
		defer close(lookup)
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/agent-inboxes/a@x", nil)
		req.Header.Set("Authorization", "Bearer k")
		if resp, err := client.Do(req); err == nil {
			_ = resp.Body.Close()
		}
	}()
	require.Eventually(t, func() bool {
		var n int
		err := conn.QueryRow(bg, `SELECT count(*) FROM pg_stat_activity
		    WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		return err == nil && n > 0
	}, 20*time.Second, 10*time.Millisecond, "the lookup is waiting on Postgres")

	cancel()
	runtest.Returns(t, done, 4*time.Second, "bounded by SHUTDOWN_TIMEOUT (1 s) plus the time to abandon calls")
	require.NoError(t, tx.Rollback(bg))
	<-lookup
}
