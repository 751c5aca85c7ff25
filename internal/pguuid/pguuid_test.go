package pguuid_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/msgrouter/msgrouter/internal/pguuid"
	"github.com/msgrouter/msgrouter/internal/testutil/pgtest"
)

// Every query mode pgx offers: binary (prepared, described) and text (simple
// protocol, as behind PgBouncer) parameters and results.
var modes = []pgx.QueryExecMode{
	pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol,
}

func TestRoundTrip(t *testing.T) {
	url := pgtest.NewURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	pc.AfterConnect = pguuid.AfterConnect
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	a, b := uuid.New(), uuid.New()
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			// One value: the server sees the same uuid (compared as text there).
			var text string
			var back uuid.UUID
			if err := pool.QueryRow(ctx, "SELECT $1::uuid::text, $1::uuid", mode, a).Scan(&text, &back); err != nil {
				t.Fatal(err)
			}
			if text != a.String() || back != a {
				t.Fatalf("got %s / %s, want %s", text, back, a)
			}

			// Arrays, through unnest as the outbox passes them, and back as uuid[].
			var texts []string
			var ids []uuid.UUID
			err := pool.QueryRow(ctx, "SELECT array_agg(x::text ORDER BY o), array_agg(x ORDER BY o) FROM unnest($1::uuid[]) WITH ORDINALITY AS t(x, o)",
				mode, []uuid.UUID{a, b}).Scan(&texts, &ids)
			if err != nil {
				t.Fatal(err)
			}
			if len(texts) != 2 || texts[0] != a.String() || texts[1] != b.String() || len(ids) != 2 || ids[0] != a || ids[1] != b {
				t.Fatalf("got %v / %v, want [%s %s]", texts, ids, a, b)
			}

			// A nil slice is NULL; an empty one is an empty array.
			var isNull bool
			var n int
			if err := pool.QueryRow(ctx, "SELECT $1::uuid[] IS NULL, cardinality($2::uuid[])", mode, []uuid.UUID(nil), []uuid.UUID{}).Scan(&isNull, &n); err != nil {
				t.Fatal(err)
			}
			if !isNull || n != 0 {
				t.Fatalf("nil slice NULL=%v, empty slice cardinality %d", isNull, n)
			}

			// NULLs: a nil *uuid.UUID encodes as NULL; NULL scans into **uuid.UUID as
			// nil and into uuid.UUID as uuid.Nil (what uuid's own Scan did).
			var p *uuid.UUID = &a
			zero := a
			if err := pool.QueryRow(ctx, "SELECT $1::uuid, $1::uuid", mode, (*uuid.UUID)(nil)).Scan(&p, &zero); err != nil {
				t.Fatal(err)
			}
			if p != nil || zero != uuid.Nil {
				t.Fatalf("NULL scanned as %v / %s", p, zero)
			}
			if err := pool.QueryRow(ctx, "SELECT $1::uuid", mode, &b).Scan(&p); err != nil {
				t.Fatal(err)
			}
			if p == nil || *p != b {
				t.Fatalf("*uuid.UUID round trip: %v, want %s", p, b)
			}

			// uuid.NullUUID and pgtype's own types still go through pgtype.UUIDCodec.
			var nu uuid.NullUUID
			if err := pool.QueryRow(ctx, "SELECT $1::uuid", mode, uuid.NullUUID{UUID: b, Valid: true}).Scan(&nu); err != nil {
				t.Fatal(err)
			}
			if !nu.Valid || nu.UUID != b {
				t.Fatalf("NullUUID: %+v", nu)
			}
		})
	}
}

// BenchmarkEncodeArray measures a 256-element uuid[] parameter with and without the
// codec (the outbox's unnest batches), on the server's no-op round trip.
func BenchmarkEncodeArray(b *testing.B) {
	url := pgtest.NewURL(b)
	ids := make([]uuid.UUID, 256)
	for i := range ids {
		ids[i] = uuid.New()
	}
	for _, tc := range []struct {
		name string
		hook func(context.Context, *pgx.Conn) error
	}{{"valuer", nil}, {"pguuid", pguuid.AfterConnect}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			cfg, err := pgx.ParseConfig(url)
			if err != nil {
				b.Fatal(err)
			}
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close(ctx)
			if tc.hook != nil {
				_ = tc.hook(ctx, conn)
			}
			b.ReportAllocs()
			for b.Loop() {
				var n int
				if err := conn.QueryRow(ctx, "SELECT cardinality($1::uuid[])", ids).Scan(&n); err != nil || n != 256 {
					b.Fatal(n, err)
				}
			}
		})
	}
}
