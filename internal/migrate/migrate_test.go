package migrate_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/msgrouter/msgrouter/internal/migrate"
	"github.com/msgrouter/msgrouter/internal/testutil/pgtest"
)

// Many replicas starting at once apply each migration exactly once.
func TestApplyConcurrentReplicas(t *testing.T) {
	t.Parallel()
	url := pgtest.NewURL(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	defer pool.Close()

	applied := make([]int, 6)
	var g errgroup.Group
	for i := range applied {
		g.Go(func() (err error) {
			applied[i], err = migrate.Apply(ctx, pool, migrate.Router)
			return err
		})
	}
	require.NoError(t, g.Wait())
	total := 0
	for _, n := range applied {
		total += n
	}
	var files int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM schema_migrations WHERE component = 'router'").Scan(&files))
	require.Equal(t, files, total, "each migration applied exactly once")
	require.Positive(t, files)

	n, err := migrate.Apply(ctx, pool, migrate.Router)
	require.NoError(t, err)
	require.Zero(t, n, "nothing left to apply")
}
