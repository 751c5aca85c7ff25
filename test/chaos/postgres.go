package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// database is the harness's own database on the local Postgres server, created for
// one run and dropped after it.
type database struct {
	adminURL string // where CREATE/DROP DATABASE run; "" = libpq defaults
	name     string
	url      string // for the routers
}

func createDatabase(ctx context.Context, adminURL string) (*database, error) {
	cfg, err := pgx.ParseConfig(adminURL)
	if err != nil {
		return nil, fmt.Errorf("postgres admin URL: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot reach Postgres (libpq defaults, or --database-url): %w", err)
	}
	defer conn.Close(ctx)
	name := "chaos_" + strings.ReplaceAll(uuid.NewString()[:18], "-", "")
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return nil, fmt.Errorf("error creating database %s: %w", name, err)
	}
	url := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", cfg.Host, cfg.Port, cfg.User, name)
	if cfg.Password != "" {
		url += " password=" + cfg.Password
	}
	return &database{adminURL: adminURL, name: name, url: url}, nil
}

// drop removes the database, disconnecting whoever is still on it.
func (d *database) drop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// Postgres may be mid-restart when a run is interrupted: retry for a while.
	var err error
	for ctx.Err() == nil {
		var conn *pgx.Conn
		if conn, err = pgx.Connect(ctx, d.adminURL); err == nil {
			_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+d.name+" WITH (FORCE)")
			conn.Close(ctx)
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("error dropping database %s: %w", d.name, err)
}

// waitPostgres waits until the server accepts connections and answers a query on the
// harness's database (after a restart it refuses, then says "the database system is
// starting up", then works).
func (d *database) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var err error
	for {
		var conn *pgx.Conn
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		if conn, err = pgx.Connect(cctx, d.url); err == nil {
			_, err = conn.Exec(cctx, "SELECT 1")
			conn.Close(cctx)
		}
		ccancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres not ready within %s: %w", timeout, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// DefaultPostgresRestart is the command that restarts the machine's Postgres cluster
// (Debian's pg_ctlcluster, as on the dev machines and in CI), or nil when there is no
// cluster under /etc/postgresql.
func DefaultPostgresRestart() []string {
	entries, err := os.ReadDir("/etc/postgresql")
	if err != nil {
		return nil
	}
	var versions []string
	for _, e := range entries {
		if e.IsDir() {
			versions = append(versions, e.Name())
		}
	}
	if len(versions) == 0 {
		return nil
	}
	sort.Strings(versions)
	return []string{"pg_ctlcluster", "--skip-systemctl-redirect", versions[len(versions)-1], "main", "restart"}
}

func runCommand(ctx context.Context, timeout time.Duration, argv []string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
