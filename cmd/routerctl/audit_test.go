package main

import (
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/audit"
	"github.com/msgrouter/msgrouter/internal/stream"
	"github.com/msgrouter/msgrouter/internal/stream/streamtest"
	"github.com/msgrouter/msgrouter/internal/testutil/pgtest"
)

// routerctl audit: 0 on a healthy run, 1 once a record is deleted (an injected
// gap), 2 on bad usage; --json carries the same report.
func TestAuditCommandExitStatus(t *testing.T) {
	t.Parallel()
	ns, js, _ := streamtest.Start(t)
	// A database with the router's migrations, as the router applies them at start.
	migratedPool := pgtest.New(t)
	var ids []uuid.UUID
	for range 3 {
		id := uuid.New()
		ids = append(ids, id)
		m := nats.NewMsg(stream.Subject)
		m.Header.Set(jetstream.MsgIDHeader, id.String())
		m.Data = []byte(`{"aiAgentAddress":"a","payload":{}}`)
		_, err := js.PublishMsg(t.Context(), m)
		require.NoError(t, err)
		_, err = migratedPool.Exec(t.Context(), `INSERT INTO messages (message_id, ai_agent_address, status, accepted_at) VALUES ($1, 'a', 'DELIVERED', now())`, id)
		require.NoError(t, err)
	}
	// The records live in migratedPool's database: point routerctl at it, in the
	// Python service's SQLAlchemy form to show it is accepted here too.
	var dbName string
	require.NoError(t, migratedPool.QueryRow(t.Context(), "SELECT current_database()").Scan(&dbName))
	cfg := migratedPool.Config().ConnConfig
	host := cfg.Host
	if host == "" || host[0] == '/' {
		host = "127.0.0.1"
	}
	url := "postgresql+asyncpg://" + cfg.User + "@" + host + ":" + strconv.Itoa(int(cfg.Port)) + "/" + dbName
	c := cli{env: map[string]string{"NATS_URL": ns.URL, "DATABASE_URL": url}}

	o := c.run(t, "audit", "--grace", "0s")
	require.Equal(t, 0, o.code, o.stderr+o.stdout)
	require.Contains(t, o.stdout, "recorded DELIVERED")
	require.Contains(t, o.stdout, "OK: every message")

	_, err := migratedPool.Exec(t.Context(), `DELETE FROM messages WHERE message_id = $1`, ids[1])
	require.NoError(t, err)
	o = c.run(t, "audit", "--grace", "0s")
	require.Equal(t, 1, o.code, o.stderr+o.stdout)
	require.Contains(t, o.stdout, ids[1].String())
	require.Contains(t, o.stdout, "GAP: 1 accepted message(s) have no record")

	o = c.run(t, "audit", "--json", "--grace=0s", "--since", "10m")
	require.Equal(t, 1, o.code, o.stderr)
	var r audit.Report
	require.NoError(t, json.Unmarshal([]byte(o.stdout), &r))
	require.EqualValues(t, 3, r.StreamMessages)
	require.EqualValues(t, 1, r.Missing)
	require.Equal(t, ids[1], r.MissingIDs[0].MessageID)

	// Within the default grace period (1m) the fresh gap is not reported.
	o = c.run(t, "audit")
	require.Equal(t, 0, o.code, o.stderr+o.stdout)

	for _, bad := range [][]string{{"audit", "--since", "0s"}, {"audit", "--grace", "soon"}, {"audit", "extra"}, {"audit", "--database-url", "mysql://x"}} {
		o = c.run(t, bad...)
		require.Equal(t, 2, o.code, "%v: %s", bad, o.stderr)
	}
	o = cli{env: map[string]string{"NATS_URL": ns.URL, "DATABASE_URL": "postgres://nobody@127.0.0.1:1/x?connect_timeout=1"}}.run(t, "audit", "--timeout", "2s")
	require.Equal(t, 1, o.code, "Postgres unreachable is a failure: %s", o.stderr)
}

// The text report lists the missing and the stuck messages, each under its title
// and header, and leaves an empty list out.
func TestPrintAuditLists(t *testing.T) {
	t.Parallel()
	var stdout strings.Builder
	a := newApp(strings.NewReader(""), &stdout, io.Discard, func(string) string { return "" })
	missing, stuck := uuid.New(), uuid.New()
	r := &audit.Report{Stream: "ROUTER_MESSAGES", StreamMessages: 1, Missing: 1, StuckPending: 1,
		MissingIDs: []audit.Missing{{MessageID: missing, Sequence: 7, Subject: "router.messages", Acked: true}},
		StuckIDs:   []audit.Stuck{{MessageID: stuck, AIAgentAddress: "a@x", Attempts: 3}}}
	a.printAudit(r)
	out := stdout.String()
	require.Regexp(t, `missing messages \(in the stream, unknown to Postgres\):\nMESSAGE ID +SEQUENCE +ACCEPTED AT +SUBJECT +ACKED BY ROUTER\n`+
		missing.String()+` +7 +\S+ +router.messages +true\n`, out)
	require.Regexp(t, `PENDING longer than the threshold:\nMESSAGE ID +AGENT +REASON +ATTEMPTS +ACCEPTED AT\n`+
		stuck.String()+` +a@x +- +3 +\S+\n`, out)

	stdout.Reset()
	r.MissingIDs, r.StuckIDs = nil, nil
	a.printAudit(r)
	require.NotContains(t, stdout.String(), "MESSAGE ID")
}
