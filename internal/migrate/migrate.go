// Package migrate applies the embedded SQL migrations of one component (router or
// cams) in order, each exactly once. A transaction-level advisory lock serialises
// appliers, so many replicas starting at once are safe: the first applies, the others
// wait and then find nothing left to do. Everything happens in one transaction, so it
// also works through PgBouncer in transaction pooling.
package migrate

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/msgrouter/msgrouter/migrations"
)

// lockKey is an arbitrary constant shared by every msgrouter binary.
const lockKey = 0x6d73_6772_7472 // "msgrtr"

// Components with migrations.
const (
	Router = "router"
	CAMS   = "cams"
)

// Apply runs the pending migrations of component and returns how many it applied.
func Apply(ctx context.Context, pool *pgxpool.Pool, component string) (int, error) {
	files, err := fs.Glob(migrations.FS, component+"/*.sql")
	if err != nil || len(files) == 0 {
		return 0, fmt.Errorf("no migrations for %q", component)
	}
	sort.Strings(files)

	// One transaction holds the lock (pg_advisory_xact_lock, released at commit or
	// rollback), the bookkeeping and every pending migration: a transaction runs on one
	// server connection even behind PgBouncer in transaction pooling, where a
	// session-level lock would be taken on one server connection and released (or
	// not) on another. Pending migrations apply all or none.
	tx, err := pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("error connecting to Postgres for migrations: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey); err != nil {
		return 0, fmt.Errorf("error taking the migration lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		component  text        NOT NULL,
		version    integer     NOT NULL,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (component, version))`); err != nil {
		return 0, fmt.Errorf("error creating schema_migrations: %w", err)
	}
	rows, err := tx.Query(ctx, "SELECT version FROM schema_migrations WHERE component = $1", component)
	if err != nil {
		return 0, fmt.Errorf("error reading schema_migrations: %w", err)
	}
	// CollectRows closes rows on every path, a Scan failure included.
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return 0, fmt.Errorf("error reading schema_migrations: %w", err)
	}
	applied := make(map[int]bool, len(versions))
	for _, v := range versions {
		applied[v] = true
	}

	n := 0
	for _, f := range files {
		name := path.Base(f)
		version, err := strconv.Atoi(strings.SplitN(name, "_", 2)[0])
		if err != nil {
			return 0, fmt.Errorf("migration %s: name must start with a number", f)
		}
		if applied[version] {
			continue
		}
		sql, err := fs.ReadFile(migrations.FS, f)
		if err != nil {
			return 0, err
		}
		if _, err := tx.Exec(ctx, string(sql)); err != nil {
			return 0, fmt.Errorf("error applying migration %s: %w", f, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)", component, version, name); err != nil {
			return 0, fmt.Errorf("error recording migration %s: %w", f, err)
		}
		n++
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("error committing the migrations: %w", err)
	}
	return n, nil
}
