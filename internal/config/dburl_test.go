package config_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/config"
)

func TestNormalizeDatabaseURL(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, out string }{
		// SQLAlchemy driver forms of the Python service's README.
		{"postgresql+asyncpg://user:pass@db:5432/router", "postgresql://user:pass@db:5432/router"},
		{"postgresql+psycopg://user:pass@db/router", "postgresql://user:pass@db/router"},
		{"postgresql+psycopg2://user:pass@db/router?sslmode=require", "postgresql://user:pass@db/router?sslmode=require"},
		{"postgres+asyncpg://u@db/r", "postgresql://u@db/r"},
		{"POSTGRESQL+ASYNCPG://u@db/r", "postgresql://u@db/r"},
		// What asyncpg URLs carry that pgx would send to the server as settings.
		{"postgresql+asyncpg://u:p@db/r?ssl=require", "postgresql://u:p@db/r?sslmode=require"},
		{"postgresql+asyncpg://u:p@db/r?ssl=true", "postgresql://u:p@db/r?sslmode=require"},
		{"postgresql+asyncpg://u:p@db/r?ssl=false", "postgresql://u:p@db/r?sslmode=disable"},
		{"postgresql://u:p@db/r?ssl=prefer&application_name=x", "postgresql://u:p@db/r?application_name=x&sslmode=prefer"},
		{"postgresql://u:p@db/r?ssl=require&sslmode=disable", "postgresql://u:p@db/r?sslmode=disable"},
		{"postgresql+asyncpg://u:p@db/r?prepared_statement_cache_size=0&command_timeout=60", "postgresql://u:p@db/r"},
		{"postgresql+asyncpg://u:p@db/r?timeout=5", "postgresql://u:p@db/r?connect_timeout=5"},
		{"postgresql+asyncpg://u:p@/r?host=h1:5432&host=h2:5433", "postgresql://u:p@h1:5432,h2:5433/r"},
		{"postgresql+psycopg://u:p@/r?host=%2Fvar%2Frun%2Fpostgresql", "postgresql://u:p@/r?host=%2Fvar%2Frun%2Fpostgresql"},
		// Unchanged: plain URLs and key=value strings.
		{"postgres://u:p@db/r?sslmode=disable&application_name=x", "postgres://u:p@db/r?sslmode=disable&application_name=x"},
		{"host=db user=u dbname=r", "host=db user=u dbname=r"},
		{"", ""},
	}
	for _, c := range cases {
		out, changes, err := config.NormalizeDatabaseURL(c.in)
		require.NoError(t, err, c.in)
		require.Equal(t, c.out, out, c.in)
		require.Equal(t, c.in != c.out, changes != "", "a change is described: %s", c.in)
		if out != "" {
			pc, err := pgconn.ParseConfig(out)
			require.NoError(t, err, "pgx parses %s", out)
			for _, p := range []string{"ssl", "timeout", "command_timeout", "prepared_statement_cache_size"} {
				require.NotContains(t, pc.RuntimeParams, p, "pgx would send %s to the server, which refuses it", p)
			}
		}
	}
	for _, bad := range []string{"mysql+pymysql://u:p@db/r", "postgresql+asyncpg://u:p@db/r?ssl=sometimes"} {
		_, _, err := config.NormalizeDatabaseURL(bad)
		require.Error(t, err, bad)
	}
}

// One INFO line says the URL was taken in SQLAlchemy form, without the password.
func TestDatabaseURLNotice(t *testing.T) {
	t.Parallel()
	env := config.FromMap(map[string]string{"DATABASE_URL": "postgresql+asyncpg://user:s3cret@db:5432/router?ssl=require"})
	c, err := config.LoadRouter(env)
	require.NoError(t, err)
	require.Equal(t, "postgresql://user:s3cret@db:5432/router?sslmode=require", c.DatabaseURL)
	var buf bytes.Buffer
	env.LogNotices(context.Background(), slog.New(slog.NewTextHandler(&buf, nil)))
	require.Equal(t, 1, bytes.Count(buf.Bytes(), []byte("\n")), buf.String())
	require.Contains(t, buf.String(), "level=INFO")
	require.Contains(t, buf.String(), "SQLAlchemy")
	require.NotContains(t, buf.String(), "s3cret")

	_, err = config.LoadCAMS(config.FromMap(map[string]string{"DATABASE_URL": "mysql://u@db/r"}))
	require.ErrorContains(t, err, "DATABASE_URL: ")
}
