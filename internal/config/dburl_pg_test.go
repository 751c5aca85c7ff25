package config_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/testutil/pgtest"
)

// Against the real Postgres: an asyncpg URL with the parameters its users commonly
// set connects once normalised, while pgx given it raw is refused by the server
// (the parameters travel as unknown run-time settings).
func TestNormalizedAsyncpgURLConnects(t *testing.T) {
	t.Parallel()
	pc, err := pgx.ParseConfig(pgtest.NewURL(t))
	require.NoError(t, err)
	host := pc.Host
	if strings.HasPrefix(host, "/") {
		host = "127.0.0.1"
	}
	raw := fmt.Sprintf("postgresql+asyncpg://%s:pw@%s:%d/%s?ssl=disable&prepared_statement_cache_size=0&command_timeout=60&timeout=5",
		pc.User, host, pc.Port, pc.Database)
	url, changes, err := config.NormalizeDatabaseURL(raw)
	require.NoError(t, err)
	require.NotEmpty(t, changes)
	conn, err := pgx.Connect(t.Context(), url)
	require.NoError(t, err, url)
	require.NoError(t, conn.Ping(t.Context()))
	require.NoError(t, conn.Close(t.Context()))

	_, err = pgx.Connect(t.Context(), "postgresql"+strings.TrimPrefix(raw, "postgresql+asyncpg"))
	// Which refusal comes first depends on the order pgx sends the run-time
	// parameters in (a map): "ssl" is a real setting that cannot be set per
	// session, the others are unknown to the server.
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr, "pgx alone: the server refuses the Python-only parameters")
	require.Contains(t, []string{"42704", "55P02"}, pgErr.Code, "pgx alone: %v", err)
}
