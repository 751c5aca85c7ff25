package audit_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/audit"
	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/config"
	"github.com/msgrouter/msgrouter/internal/message"
	"github.com/msgrouter/msgrouter/internal/router"
	"github.com/msgrouter/msgrouter/internal/router/routertest"
	"github.com/msgrouter/msgrouter/internal/stream"
	"github.com/msgrouter/msgrouter/internal/testutil/camstest"
	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
	"github.com/msgrouter/msgrouter/internal/testutil/pgtest"
	"github.com/msgrouter/msgrouter/internal/testutil/promtest"
)

type fixture struct {
	t    *testing.T
	ns   *natstest.Server
	js   jetstream.JetStream
	st   jetstream.Stream
	pool *pgxpool.Pool
}

func setup(t *testing.T) *fixture {
	t.Helper()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	st, err := stream.Ensure(t.Context(), js)
	require.NoError(t, err)
	return &fixture{t: t, ns: ns, js: js, st: st, pool: pgtest.New(t)}
}

// publish sends body to the stream with an optional Nats-Msg-Id; it returns the
// stream sequence.
func (f *fixture) publish(msgID, body string) uint64 {
	f.t.Helper()
	m := nats.NewMsg(stream.Subject)
	if msgID != "" {
		m.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	m.Data = []byte(body)
	ack, err := f.js.PublishMsg(f.t.Context(), m)
	require.NoError(f.t, err)
	return ack.Sequence
}

// record inserts a message record as the router would have.
func (f *fixture) record(id uuid.UUID, status, reason string, acceptedAgo time.Duration) {
	f.t.Helper()
	_, err := f.pool.Exec(f.t.Context(), `INSERT INTO messages (message_id, ai_agent_address, status, reason, accepted_at)
		VALUES ($1, 'agent@example.com', $2, nullif($3, ''), now() - $4::interval)`, id, status, reason, acceptedAgo.String())
	require.NoError(f.t, err)
	if status == "PENDING" {
		_, err = f.pool.Exec(f.t.Context(), `INSERT INTO outbox (message_id) VALUES ($1)`, id)
		require.NoError(f.t, err)
	}
}

func (f *fixture) audit(c audit.Config) *audit.Report {
	f.t.Helper()
	c.IdleTimeout = 2 * time.Second
	r, err := audit.Run(f.t.Context(), f.js, f.pool, c)
	require.NoError(f.t, err)
	return r
}

// The real router takes messages of every id kind over (a UUID Nats-Msg-Id, any
// other Nats-Msg-Id, a senderProvidedMessageId, none: the stream sequence, and an
// invalid body); the audit derives the same ids and finds every one. Then a record
// is deleted in Postgres: the audit finds exactly that gap, acked by the router.
func TestAuditFindsInjectedGapBehindTheRouter(t *testing.T) {
	t.Parallel()
	f := setup(t)
	dbURL := pgtest.NewURL(t)
	camsSrv := camstest.Serve(t, mapping.Mapping{AIAgentAddress: "agent-a@example.com",
		InboxDestinationType: mapping.TypeNATSSubject, InboxName: "inbox.a", Status: mapping.StatusActive})
	_, err := f.js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "INBOX", Subjects: []string{"inbox.>"}})
	require.NoError(t, err)
	cfg, err := config.LoadRouter(config.FromMap(map[string]string{
		"NATS_URL": f.ns.URL, "DATABASE_URL": dbURL, "CAMS_API_URL": camsSrv.URL, "ROUTER_ADDR": "127.0.0.1:0",
		"SHUTDOWN_TIMEOUT": "5s", "CAMS_CACHE_TTL": "0s",
	}))
	require.NoError(t, err)
	routertest.Start(t.Context(), t, cfg, router.Options{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()}, 30*time.Second)

	f.publish(uuid.NewString(), `{"aiAgentAddress":"agent-a@example.com","payload":{"n":1}}`)
	f.publish("crm-1", `{"aiAgentAddress":"nobody@example.com","payload":{"n":2}}`)
	f.publish("", `{"aiAgentAddress":"agent-a@example.com","payload":{"n":3},"senderMetadata":{"serviceName":"crm","senderProvidedMessageId":"m-3"}}`)
	seq4 := f.publish("", `{"aiAgentAddress":"agent-a@example.com","payload":{"n":4}}`)
	f.publish("", `not json`)

	pool, err := pgxpool.New(t.Context(), dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.Eventually(t, func() bool {
		var n int
		err := pool.QueryRow(t.Context(), `SELECT count(*) FROM messages WHERE status <> 'PENDING'`).Scan(&n)
		return err == nil && n == 5
	}, 30*time.Second, 20*time.Millisecond, "the router took all five over and finished them")

	r, err := audit.Run(t.Context(), f.js, pool, audit.Config{IdleTimeout: 2 * time.Second})
	require.NoError(t, err)
	require.True(t, r.OK(), "%+v", r)
	require.EqualValues(t, 5, r.StreamMessages)
	require.Equal(t, map[string]int64{"DELIVERED": 3, "REJECTED": 2}, r.ByStatus)
	require.Zero(t, r.InGrace)

	// The injected gap: the sequence-derived record disappears.
	var id4 uuid.UUID
	require.NoError(t, pool.QueryRow(t.Context(), `DELETE FROM messages WHERE payload = '{"n":4}'::bytea RETURNING message_id`).Scan(&id4))
	r, err = audit.Run(t.Context(), f.js, pool, audit.Config{IdleTimeout: 2 * time.Second})
	require.NoError(t, err)
	require.False(t, r.OK())
	require.EqualValues(t, 1, r.Missing)
	require.EqualValues(t, 1, r.MissingAcked, "the router had acked it")
	require.Len(t, r.MissingIDs, 1)
	require.Equal(t, id4, r.MissingIDs[0].MessageID, "the audit derives the router's id")
	require.Equal(t, seq4, r.MissingIDs[0].Sequence)
	require.True(t, r.MissingIDs[0].Acked)
	require.Equal(t, map[string]int64{"DELIVERED": 2, "REJECTED": 2}, r.ByStatus)
}

// Messages inside the grace period are not reported; after it they are; records
// PENDING past the threshold are stuck, held ones are counted apart.
func TestAuditGraceAndStuck(t *testing.T) {
	t.Parallel()
	f := setup(t)
	known, unknown := uuid.New(), uuid.New()
	f.publish(known.String(), `{"aiAgentAddress":"a","payload":{}}`)
	f.publish(unknown.String(), `{"aiAgentAddress":"a","payload":{}}`)
	f.record(known, "DELIVERED", "", time.Second)

	r := f.audit(audit.Config{Grace: time.Hour})
	require.True(t, r.OK(), "a message inside the grace period is not missing")
	require.EqualValues(t, 1, r.InGrace)
	require.Zero(t, r.Missing)
	require.Equal(t, map[string]int64{"DELIVERED": 1}, r.ByStatus)

	r = f.audit(audit.Config{Grace: 0})
	require.False(t, r.OK())
	require.EqualValues(t, 1, r.Missing)
	require.Zero(t, r.MissingAcked, "no router consumer acked it")
	require.Equal(t, unknown, r.MissingIDs[0].MessageID)
	require.Equal(t, stream.Subject, r.MissingIDs[0].Subject)

	// A window that ends before these messages: nothing read, nothing missing.
	later := time.Now().Add(2 * time.Hour)
	r = f.audit(audit.Config{Grace: 0, Since: time.Minute, Now: func() time.Time { return later }})
	require.True(t, r.OK())
	require.Zero(t, r.StreamMessages)

	stuck, fresh, held := uuid.New(), uuid.New(), uuid.New()
	f.record(stuck, "PENDING", "", 10*time.Minute)
	f.record(fresh, "PENDING", "", time.Minute)
	f.record(held, "PENDING", "AGENT_INACTIVE", time.Hour)
	r = f.audit(audit.Config{Grace: time.Hour, PendingThreshold: 5 * time.Minute})
	require.True(t, r.OK(), "stuck messages are reported, not missing")
	require.EqualValues(t, 1, r.StuckPending)
	require.Equal(t, stuck, r.StuckIDs[0].MessageID)
	require.EqualValues(t, 1, r.Held)
}

// The audit reads with an ordered ephemeral consumer: the router's durable
// consumer is exactly as it was. Chunks smaller than the stream give the same
// answer, with the id list capped and the counts exact.
func TestAuditLeavesTheRouterConsumerAloneAndChunks(t *testing.T) {
	t.Parallel()
	f := setup(t)
	cons, err := f.st.CreateOrUpdateConsumer(t.Context(), jetstream.ConsumerConfig{Durable: stream.ConsumerName, AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	var ids []uuid.UUID
	for i := range 25 {
		id := uuid.New()
		ids = append(ids, id)
		f.publish(id.String(), `{"aiAgentAddress":"a","payload":{}}`)
		if i%5 != 0 {
			f.record(id, "DELIVERED", "", time.Second)
		}
	}
	// The router has taken (and acked) the first 3.
	batch, err := cons.Fetch(3)
	require.NoError(t, err)
	for m := range batch.Messages() {
		require.NoError(t, m.DoubleAck(t.Context()))
	}
	before, err := cons.Info(t.Context())
	require.NoError(t, err)

	r := f.audit(audit.Config{ChunkSize: 4, MaxListed: 3})
	require.EqualValues(t, 25, r.StreamMessages)
	require.EqualValues(t, 5, r.Missing, "every fifth has no record")
	require.EqualValues(t, 1, r.MissingAcked, "the first one was acked by the router consumer")
	require.Len(t, r.MissingIDs, 3)
	require.True(t, r.Truncated)
	require.Equal(t, ids[0], r.MissingIDs[0].MessageID)
	require.True(t, r.MissingIDs[0].Acked)
	require.Equal(t, ids[5], r.MissingIDs[1].MessageID)
	require.False(t, r.MissingIDs[1].Acked)
	require.EqualValues(t, 20, r.ByStatus["DELIVERED"])

	after, err := cons.Info(t.Context())
	require.NoError(t, err)
	require.Equal(t, before.Delivered, after.Delivered)
	require.Equal(t, before.AckFloor, after.AckFloor)
	require.Equal(t, before.NumPending, after.NumPending)
	require.Equal(t, before.NumAckPending, after.NumAckPending)
	require.Equal(t, before.NumRedelivered, after.NumRedelivered)
}

// Sequence-derived ids name the message's storage time (message.StoredIdentity),
// as the router's takeover derives them.
func TestAuditUsesTheStreamIdentity(t *testing.T) {
	t.Parallel()
	f := setup(t)
	seq := f.publish("", `{"aiAgentAddress":"a","payload":{}}`)
	raw, err := f.st.GetMsg(t.Context(), seq)
	require.NoError(t, err)
	f.record(message.DirectID("", nil, message.StoredIdentity(f.st.CachedInfo().Config.Name, raw.Time), seq), "DELIVERED", "", time.Second)
	r := f.audit(audit.Config{})
	require.True(t, r.OK(), "%+v", r.MissingIDs)
}

// The router's scheduled audit exports the gauges the alert rules use, and only
// one replica audits at a time.
func TestSchedulerMetricsAndLock(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.publish(uuid.NewString(), `{"aiAgentAddress":"a","payload":{}}`)
	stuck := uuid.New()
	f.record(stuck, "PENDING", "", time.Hour)
	reg := prometheus.NewRegistry()
	s := audit.NewScheduler(audit.SchedulerConfig{Interval: time.Hour, JS: f.js, DB: f.pool,
		Audit: audit.Config{IdleTimeout: 2 * time.Second}, Logger: slog.New(slog.DiscardHandler), Registerer: reg})
	require.Zero(t, value(t, reg, "msgrouter_audit_last_run_timestamp_seconds"), "never run")

	r, err := s.RunOnce(t.Context())
	require.NoError(t, err)
	require.False(t, r.OK())
	require.InDelta(t, 1, value(t, reg, "msgrouter_audit_missing_messages"), 0)
	require.InDelta(t, 1, value(t, reg, "msgrouter_audit_stuck_pending_messages"), 0)
	require.InDelta(t, float64(time.Now().Unix()), value(t, reg, "msgrouter_audit_last_run_timestamp_seconds"), 60)

	// Another replica holds the lock: this one skips.
	conn, err := f.pool.Acquire(t.Context())
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(t.Context(), "SELECT pg_advisory_lock($1)", int64(0x6d73677261756474))
	require.NoError(t, err)
	_, err = s.RunOnce(t.Context())
	require.ErrorIs(t, err, audit.ErrSkipped)
	_, err = conn.Exec(t.Context(), "SELECT pg_advisory_unlock($1)", int64(0x6d73677261756474))
	require.NoError(t, err)

	require.NoError(t, s.Stop(t.Context())) // never started: nothing to stop

	// On a schedule: it runs by itself and stops when told.
	reg2 := prometheus.NewRegistry()
	s2 := audit.NewScheduler(audit.SchedulerConfig{Interval: 50 * time.Millisecond, JS: f.js, DB: f.pool,
		Audit: audit.Config{IdleTimeout: 2 * time.Second}, Logger: slog.New(slog.DiscardHandler), Registerer: reg2})
	require.NoError(t, s2.Start(t.Context()))
	require.Eventually(t, func() bool { return value(t, reg2, "msgrouter_audit_last_run_timestamp_seconds") > 0 },
		20*time.Second, 20*time.Millisecond)
	require.NoError(t, s2.Stop(t.Context()))
	require.NoError(t, s2.Stop(t.Context()))
	require.InDelta(t, 1, value(t, reg2, "msgrouter_audit_missing_messages"), 0)
}

// value reads one unlabelled gauge from reg.
func value(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	v, ok := promtest.Lookup(t, reg, name)
	require.True(t, ok, "%s not exported", name)
	return v
}
