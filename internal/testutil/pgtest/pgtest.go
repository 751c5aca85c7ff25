// Package pgtest gives each test a fresh database on the real Postgres server
// (TEST_DATABASE_URL, else DATABASE_URL, else the libpq defaults), with the project's
// migrations applied, dropped when the test ends.
package pgtest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/msgrouter/msgrouter/internal/migrate"
	"github.com/msgrouter/msgrouter/internal/pguuid"
)

// BaseURL is the server tests create their databases on.
func BaseURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return os.Getenv("DATABASE_URL")
}

// NewURL creates an empty database and returns its connection string.
func NewURL(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, BaseURL())
	if err != nil {
		t.Fatalf("pgtest: cannot reach Postgres (set TEST_DATABASE_URL or DATABASE_URL): %v", err)
	}
	defer admin.Close(ctx)
	name := "msgrouter_test_" + strings.ReplaceAll(uuid.NewString()[:18], "-", "")
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, BaseURL())
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	cfg, err := pgx.ParseConfig(BaseURL())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	cfg.Database = name
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", cfg.Host, cfg.Port, cfg.User, name) + password(cfg.Password)
}

func password(p string) string {
	if p == "" {
		return ""
	}
	return " password=" + p
}

// New creates a database with the router and CAMS migrations applied and returns a
// pool on it, closed when t ends.
func New(t testing.TB) *pgxpool.Pool {
	t.Helper()
	url := NewURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	pc.AfterConnect = pguuid.AfterConnect // as router.OpenPool does
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(pool.Close)
	for _, c := range []string{migrate.Router, migrate.CAMS} {
		if _, err := migrate.Apply(ctx, pool, c); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
	}
	return pool
}
