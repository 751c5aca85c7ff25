package router_test

import (
	"fmt"
	"net/url"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/cams"
	"github.com/msgrouter/msgrouter/internal/router"
	"github.com/msgrouter/msgrouter/internal/testutil/pgtest"
)

// multiHostURL turns the test database's DSN into a URL listing a host that is down
// (127.0.0.1:1) before the real one, as an HA Postgres's DATABASE_URL lists its
// members, with extra query parameters.
func multiHostURL(t *testing.T, query string) string {
	t.Helper()
	c, err := pgx.ParseConfig(pgtest.NewURL(t))
	require.NoError(t, err)
	u := &url.URL{Scheme: "postgres", Host: fmt.Sprintf("127.0.0.1:1,%s:%d", c.Host, c.Port), Path: "/" + c.Database, RawQuery: query}
	if c.Password != "" {
		u.User = url.UserPassword(c.User, c.Password)
	} else {
		u.User = url.User(c.User)
	}
	return u.String()
}

// TestMultiHostDatabaseURL: issue 9 — a DATABASE_URL with several hosts and
// target_session_attrs=read-write works when the first host is down.
func TestMultiHostDatabaseURL(t *testing.T) {
	t.Parallel()
	dsn := multiHostURL(t, "sslmode=disable&target_session_attrs=read-write&connect_timeout=5")
	pool, err := router.OpenPool(t.Context(), dsn)
	require.NoError(t, err)
	var readOnly string
	require.NoError(t, pool.QueryRow(t.Context(), "SHOW transaction_read_only").Scan(&readOnly))
	require.Equal(t, "off", readOnly, "connected to the writable host")
	pool.Close()

	// The attribute is enforced: no host of the list is a read-only standby here.
	_, err = router.OpenPool(t.Context(), multiHostURL(t, "sslmode=disable&target_session_attrs=standby&connect_timeout=2"))
	require.Error(t, err)

	// default_query_exec_mode in the URL is kept (PgBouncer in transaction pooling).
	pool, err = router.OpenPool(t.Context(), multiHostURL(t, "sslmode=disable&default_query_exec_mode=exec"))
	require.NoError(t, err)
	require.Equal(t, pgx.QueryExecModeExec, pool.Config().ConnConfig.DefaultQueryExecMode)
	var one int
	require.NoError(t, pool.QueryRow(t.Context(), "SELECT $1::int", 1).Scan(&one))
	pool.Close()
}

// TestRouterRunsOnMultiHostURL runs the whole router (migrations, takeover,
// delivery) with the first host of DATABASE_URL down.
func TestRouterRunsOnMultiHostURL(t *testing.T) {
	t.Parallel()
	e := setup(t, map[string]string{"DATABASE_URL": multiHostURL(t, "sslmode=disable&target_session_attrs=read-write")})
	e.cams.set("agent-ha", cams.TypeNATSSubject, "inbox.ha", cams.StatusActive)
	id := uuid.NewString()
	e.publish(body("agent-ha", `{"n":1}`), id)
	e.waitStatus(id, "DELIVERED")
	require.Len(t, e.inboxMsgs("inbox.ha"), 1)
}
