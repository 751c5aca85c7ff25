package outbox

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/msgrouter/msgrouter/internal/testutil/pgtest"
)

// storeFixture is a Store on a database of its own, plus readers of the raw tables
// so tests assert what the store wrote, not what it says it wrote.
type storeFixture struct {
	t     testing.TB
	ctx   context.Context
	pool  *pgxpool.Pool
	store *Store
}

func newStoreFixture(t testing.TB) *storeFixture {
	t.Helper()
	pool := pgtest.New(t)
	return &storeFixture{t: t, ctx: context.Background(), pool: pool, store: NewStore(pool)}
}

func pendingRecord(address string) Record {
	return Record{
		ID:              uuid.New(),
		Address:         address,
		Status:          StatusPending,
		DestType:        "NATS_SUBJECT",
		DestName:        "agents.test.inbox",
		Payload:         []byte(`{"command":"processData","value":42}`),
		SenderID:        "CRM_System",
		CorrelationID:   "corr-1",
		SenderMessageID: "crm-msg-1",
		Traceparent:     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		AcceptedAt:      time.Now(),
	}
}

func rejectedRecord(address, reason string) Record {
	return Record{
		ID:         uuid.New(),
		Address:    address,
		Status:     StatusRejected,
		Reason:     reason,
		LastError:  "rejected: " + reason,
		Payload:    []byte(`{}`),
		AcceptedAt: time.Now(),
	}
}

func pendingRecords(n int, address string) []Record {
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = pendingRecord(address)
	}
	return recs
}

func ids(recs []Record) []uuid.UUID {
	out := make([]uuid.UUID, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

// takeover takes recs over leased to a fresh token for lease and returns the token.
func (f *storeFixture) takeover(lease time.Duration, recs ...Record) uuid.UUID {
	f.t.Helper()
	token := uuid.New()
	inserted, _, err := f.store.Takeover(f.ctx, recs, token, lease)
	require.NoError(f.t, err)
	for _, r := range recs {
		require.True(f.t, inserted[r.ID], "record %s not inserted", r.ID)
	}
	return token
}

// claimN claims until exactly n rows were claimed, waiting for leases and retry
// times to pass on the database clock.
func (f *storeFixture) claimN(n int, lease time.Duration) []Claimed {
	f.t.Helper()
	var mu sync.Mutex
	var got []Claimed
	require.Eventually(f.t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		c, err := f.store.Claim(f.ctx, n-len(got), lease)
		if err != nil {
			f.t.Errorf("claim: %v", err)
			return true
		}
		got = append(got, c...)
		return len(got) >= n
	}, 10*time.Second, 5*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	require.Len(f.t, got, n)
	return got
}

// claimOne claims the single row id (the only due row of the test).
func (f *storeFixture) claimOne(id uuid.UUID, lease time.Duration) Claimed {
	f.t.Helper()
	c := f.claimN(1, lease)[0]
	require.Equal(f.t, id, c.ID)
	return c
}

func (f *storeFixture) complete(maxAttempts int, results ...Result) map[uuid.UUID]string {
	f.t.Helper()
	final, err := f.store.Complete(f.ctx, results, maxAttempts)
	require.NoError(f.t, err)
	return final
}

type msgRow struct {
	Address                              string
	Status                               string
	Reason, LastError                    *string
	DestType, DestName                   *string
	Payload, Raw                         []byte
	SenderID, CorrelationID, SenderMsgID *string
	Traceparent                          *string
	AcceptedAt, ReceivedAt               time.Time
	FinishedAt, DeliveredAt              *time.Time
	Attempts                             int
	AgentSecrets                         bool
}

func (f *storeFixture) message(id uuid.UUID) msgRow {
	f.t.Helper()
	var m msgRow
	err := f.pool.QueryRow(f.ctx, `SELECT ai_agent_address, status, reason, last_error, destination_type,
	    destination_name, payload, raw, sender_id, correlation_id, sender_message_id, traceparent,
	    accepted_at, received_at, finished_at, delivered_at, attempts, agent_secrets
	    FROM messages WHERE message_id = $1`, id).Scan(&m.Address, &m.Status, &m.Reason, &m.LastError,
		&m.DestType, &m.DestName, &m.Payload, &m.Raw, &m.SenderID, &m.CorrelationID, &m.SenderMsgID,
		&m.Traceparent, &m.AcceptedAt, &m.ReceivedAt, &m.FinishedAt, &m.DeliveredAt, &m.Attempts, &m.AgentSecrets)
	require.NoError(f.t, err, "message %s", id)
	return m
}

func (f *storeFixture) messageExists(id uuid.UUID) bool {
	f.t.Helper()
	var ok bool
	require.NoError(f.t, f.pool.QueryRow(f.ctx, `SELECT EXISTS (SELECT 1 FROM messages WHERE message_id = $1)`, id).Scan(&ok))
	return ok
}

type outboxRow struct {
	DueAt time.Time
	DueIn time.Duration // due_at - now() on the database clock
	Token *uuid.UUID
	Route bool
}

func (f *storeFixture) outbox(id uuid.UUID) (outboxRow, bool) {
	f.t.Helper()
	var o outboxRow
	var dueInSec float64
	rows, err := f.pool.Query(f.ctx, `SELECT due_at, extract(epoch FROM due_at - now())::float8, lease_token, route
	    FROM outbox WHERE message_id = $1`, id)
	require.NoError(f.t, err)
	defer rows.Close()
	if !rows.Next() {
		require.NoError(f.t, rows.Err())
		return o, false
	}
	require.NoError(f.t, rows.Scan(&o.DueAt, &dueInSec, &o.Token, &o.Route))
	o.DueIn = time.Duration(dueInSec * float64(time.Second))
	return o, true
}

func (f *storeFixture) mustOutbox(id uuid.UUID) outboxRow {
	f.t.Helper()
	o, ok := f.outbox(id)
	require.True(f.t, ok, "no outbox row for %s", id)
	return o
}

func (f *storeFixture) requireNoOutbox(id uuid.UUID) {
	f.t.Helper()
	_, ok := f.outbox(id)
	require.False(f.t, ok, "outbox row left for %s", id)
}

type failureRow struct{ Status, Reason, Address string }

// requireDeadLettered requires r dead-lettered for reason after attempts: its
// message finished, its outbox row gone, its failure row written. It returns the
// message row for further checks.
func (f *storeFixture) requireDeadLettered(r Record, reason string, attempts int) msgRow {
	f.t.Helper()
	m := f.message(r.ID)
	require.Equal(f.t, StatusDeadLettered, m.Status)
	require.Equal(f.t, reason, *m.Reason)
	require.Equal(f.t, attempts, m.Attempts)
	require.NotNil(f.t, m.FinishedAt)
	f.requireNoOutbox(r.ID)
	fr, ok := f.failure(r.ID)
	require.True(f.t, ok)
	require.Equal(f.t, failureRow{Status: StatusDeadLettered, Reason: reason, Address: r.Address}, fr)
	return m
}

func (f *storeFixture) failure(id uuid.UUID) (failureRow, bool) {
	f.t.Helper()
	var r failureRow
	rows, err := f.pool.Query(f.ctx, `SELECT status, reason, ai_agent_address FROM failures WHERE message_id = $1`, id)
	require.NoError(f.t, err)
	defer rows.Close()
	if !rows.Next() {
		require.NoError(f.t, rows.Err())
		return r, false
	}
	require.NoError(f.t, rows.Scan(&r.Status, &r.Reason, &r.Address))
	return r, true
}

func (f *storeFixture) history(id uuid.UUID) []Attempt {
	f.t.Helper()
	rows, err := f.pool.Query(f.ctx, `SELECT attempt, at, outcome, error, duration_ms FROM delivery_attempts
	    WHERE message_id = $1 ORDER BY at, attempt`, id)
	require.NoError(f.t, err)
	defer rows.Close()
	var out []Attempt
	for rows.Next() {
		var a Attempt
		require.NoError(f.t, rows.Scan(&a.Attempt, &a.At, &a.Outcome, &a.Error, &a.DurationMs))
		out = append(out, a)
	}
	require.NoError(f.t, rows.Err())
	return out
}

// snapshot renders every table the store writes, for "nothing changed" assertions.
// SUPERSEDED history rows (a stale result's trace, DESIGN §6) are left out: tests
// that care count them with history.
func (f *storeFixture) snapshot() string {
	f.t.Helper()
	var s string
	err := f.pool.QueryRow(f.ctx, `SELECT json_build_object(
	    'messages', (SELECT coalesce(json_agg(x ORDER BY x.message_id), '[]') FROM messages x),
	    'outbox',   (SELECT coalesce(json_agg(x ORDER BY x.message_id), '[]') FROM outbox x),
	    'failures', (SELECT coalesce(json_agg(x ORDER BY x.message_id), '[]') FROM failures x),
	    'attempts', (SELECT coalesce(json_agg(x ORDER BY x.message_id, x.at, x.attempt), '[]') FROM delivery_attempts x WHERE x.outcome <> 'SUPERSEDED')
	)::text`).Scan(&s)
	require.NoError(f.t, err)
	return s
}

func (f *storeFixture) exec(sql string, args ...any) {
	f.t.Helper()
	_, err := f.pool.Exec(f.ctx, sql, args...)
	require.NoError(f.t, err)
}

func micros(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

// --- Takeover ---------------------------------------------------------------

func TestTakeoverInsertsPendingAndRejected(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)

	full := pendingRecord("agent-sales@example.com")
	full.AcceptedAt = time.Date(2026, 11, 28, 15, 4, 5, 123456789, time.UTC)
	bare := pendingRecord("agent-bare@example.com")
	bare.SenderID, bare.CorrelationID, bare.SenderMessageID, bare.Traceparent = "", "", "", ""
	rejected := rejectedRecord("agent-gone@example.com", "AGENT_NOT_FOUND")
	invalid := Record{
		ID:         uuid.New(),
		Status:     StatusRejected,
		Reason:     "INVALID_MESSAGE",
		LastError:  "payload is not an object",
		Raw:        []byte("{\"aiAgentAddress\": 1, \xff\x00}"),
		AcceptedAt: time.Now(),
	}

	token := uuid.New()
	inserted, leaseUntil, err := f.store.Takeover(f.ctx, []Record{full, bare, rejected, invalid}, token, time.Minute)
	require.NoError(t, err)
	require.Equal(t, map[uuid.UUID]bool{full.ID: true, bare.ID: true, rejected.ID: true, invalid.ID: true}, inserted)

	// Pending messages: an outbox row leased to the takeover's token until leaseUntil.
	for _, r := range []Record{full, bare} {
		m := f.requireFreshPending(r.ID)
		require.Equal(t, r.Address, m.Address)
		require.Equal(t, r.DestType, *m.DestType)
		require.Equal(t, r.DestName, *m.DestName)
		require.Equal(t, r.Payload, m.Payload)
		require.True(t, micros(r.AcceptedAt).Equal(m.AcceptedAt), "accepted_at %v != %v", m.AcceptedAt, r.AcceptedAt)

		o := f.mustOutbox(r.ID)
		require.NotNil(t, o.Token)
		require.Equal(t, token, *o.Token)
		require.False(t, o.Route)
		require.True(t, o.DueAt.Equal(leaseUntil), "due_at %v is the lease deadline %v", o.DueAt, leaseUntil)
		require.Greater(t, o.DueIn, time.Duration(0))
		require.LessOrEqual(t, o.DueIn, time.Minute)
		_, failed := f.failure(r.ID)
		require.False(t, failed)
	}
	m := f.message(full.ID)
	require.Equal(t, "CRM_System", *m.SenderID)
	require.Equal(t, "corr-1", *m.CorrelationID)
	require.Equal(t, "crm-msg-1", *m.SenderMsgID)
	require.Equal(t, full.Traceparent, *m.Traceparent)

	// Empty optional strings are stored as NULL, not ''.
	m = f.message(bare.ID)
	require.Nil(t, m.SenderID)
	require.Nil(t, m.CorrelationID)
	require.Nil(t, m.SenderMsgID)
	require.Nil(t, m.Traceparent)
	require.Nil(t, m.Raw)

	// Rejected messages: finished at once, a failures row, no outbox row.
	for _, r := range []Record{rejected, invalid} {
		m := f.message(r.ID)
		require.Equal(t, StatusRejected, m.Status)
		require.Equal(t, r.Reason, *m.Reason)
		require.Equal(t, r.LastError, *m.LastError)
		require.NotNil(t, m.FinishedAt)
		require.Nil(t, m.DestType)
		require.Nil(t, m.DestName)
		f.requireNoOutbox(r.ID)
		fr, ok := f.failure(r.ID)
		require.True(t, ok)
		require.Equal(t, failureRow{Status: StatusRejected, Reason: r.Reason, Address: r.Address}, fr)
	}
	m = f.message(invalid.ID)
	require.Nil(t, m.Payload, "a message that did not parse has no payload")
	require.Equal(t, invalid.Raw, m.Raw, "raw bytes kept exactly")
	require.Empty(t, f.history(invalid.ID))
}

func TestTakeoverEmptyBatch(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	inserted, _, err := f.store.Takeover(f.ctx, nil, uuid.New(), time.Minute)
	require.NoError(t, err)
	require.Empty(t, inserted)
}

// A second takeover of known ids (a JetStream redelivery, a duplicate submission
// beyond the dedupe window) inserts nothing and changes nothing, whatever it carries.
func TestTakeoverKnownIDsChangeNothing(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	pending := pendingRecord("agent-a@example.com")
	rejected := rejectedRecord("agent-b@example.com", "AGENT_INACTIVE")
	f.takeover(time.Hour, pending, rejected)
	before := f.snapshot()

	// Same ids, different everything: statuses swapped, other payloads and routes.
	again := []Record{pending, rejected}
	again[0].Status, again[0].Reason = StatusRejected, "AGENT_NOT_FOUND"
	again[0].Payload = []byte(`{"changed":true}`)
	again[1].Status, again[1].Reason = StatusPending, ""
	again[1].DestType, again[1].DestName = "HTTP_ENDPOINT", "https://example.com/inbox"
	inserted, _, err := f.store.Takeover(f.ctx, again, uuid.New(), time.Millisecond)
	require.NoError(t, err)
	require.Empty(t, inserted)
	require.Equal(t, before, f.snapshot())
}

func TestTakeoverMixedBatchInsertsOnlyNewIDs(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	delivered := pendingRecord("agent-a@example.com")
	waiting := pendingRecord("agent-a@example.com")
	first := f.takeover(time.Hour, delivered, waiting)
	// The first copy was delivered (on the fast path, with the takeover's lease) ...
	require.Equal(t, map[uuid.UUID]string{delivered.ID: StatusDelivered},
		f.complete(10, Result{ID: delivered.ID, Token: first, Kind: Delivered, At: time.Now()}))
	beforeDelivered, beforeWaiting := f.message(delivered.ID), f.mustOutbox(waiting.ID)

	// ... and its redelivery must not bring it back to the outbox.
	fresh1, fresh2 := pendingRecord("agent-b@example.com"), rejectedRecord("agent-c@example.com", "CONFIG_ERROR")
	second := uuid.New()
	inserted, _, err := f.store.Takeover(f.ctx, []Record{delivered, fresh1, waiting, fresh2}, second, time.Hour)
	require.NoError(t, err)
	require.Equal(t, map[uuid.UUID]bool{fresh1.ID: true, fresh2.ID: true}, inserted)

	require.Equal(t, beforeDelivered, f.message(delivered.ID))
	f.requireNoOutbox(delivered.ID)
	afterWaiting := f.mustOutbox(waiting.ID)
	require.True(t, beforeWaiting.DueAt.Equal(afterWaiting.DueAt), "the known row keeps its lease deadline")
	require.Equal(t, first, *afterWaiting.Token, "the known row keeps its first lease")
	require.Equal(t, second, *f.mustOutbox(fresh1.ID).Token)
	require.Equal(t, StatusRejected, f.message(fresh2.ID).Status)
}

// One fetch can carry the same messageId twice (a producer that retried without a
// Nats-Msg-Id header): the batch keeps one copy instead of failing as a whole.
func TestTakeoverDuplicateIDsInOneBatch(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	r := pendingRecord("agent-a@example.com")
	dup := r
	dup.Payload = []byte(`{"copy":2}`)
	other := pendingRecord("agent-a@example.com")
	inserted, _, err := f.store.Takeover(f.ctx, []Record{r, dup, other}, uuid.New(), time.Hour)
	require.NoError(t, err)
	require.Equal(t, map[uuid.UUID]bool{r.ID: true, other.ID: true}, inserted)
	var n int
	require.NoError(t, f.pool.QueryRow(f.ctx, `SELECT count(*) FROM outbox`).Scan(&n))
	require.Equal(t, 2, n)
}

func TestTakeoverKeepsPayloadBytesExact(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	payloads := [][]byte{
		[]byte(`{}`),
		[]byte(`{"big":123456789012345678901234567890,"dec":0.10000000000000000000000000001,"neg":-1e400}`),
		[]byte(`{"nul":"a\u0000b","esc":"\ud83d\ude00 \" \\ \/","raw":"héllo 🌍 日本語"}`),
		[]byte("{ \"spacing\" :\t[1 ,2]\n}"),
	}
	recs := make([]Record, len(payloads))
	for i, p := range payloads {
		recs[i] = pendingRecord("agent+ü/日本:%41@example.com")
		recs[i].Payload = p
	}
	f.takeover(0, recs...) // lease 0: due at once, so a claim reads them back

	byID := map[uuid.UUID][]byte{}
	for _, r := range recs {
		byID[r.ID] = r.Payload
		require.True(t, bytes.Equal(r.Payload, f.message(r.ID).Payload))
	}
	for _, c := range f.claimN(len(recs), time.Hour) {
		require.True(t, bytes.Equal(byID[c.ID], c.Payload), "payload of %s: %q", c.ID, c.Payload)
		require.Equal(t, "agent+ü/日本:%41@example.com", c.Address)
	}
}

// --- Claim -------------------------------------------------------------------

func TestClaimOnlyDueRows(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	held := pendingRecords(3, "agent-held@example.com")
	heldToken := f.takeover(time.Hour, held...)
	short := pendingRecord("agent-short@example.com")
	short.DestType, short.DestName = "HTTP_ENDPOINT", "https://agents.example.com/inbox"
	short.AgentSecrets = true
	shortToken := f.takeover(50*time.Millisecond, short)

	// A fresh takeover's rows belong to its dispatcher until the lease expires.
	c := f.claimOne(short.ID, time.Hour)
	require.NotEqual(t, shortToken, c.Token)
	require.NotEqual(t, uuid.Nil, c.Token)

	// The claimed row comes with its message joined.
	require.Equal(t, short.Address, c.Address)
	require.Equal(t, short.DestType, c.DestType)
	require.Equal(t, short.DestName, c.DestName)
	require.Equal(t, short.Payload, c.Payload)
	require.Equal(t, short.SenderID, c.SenderID)
	require.Equal(t, short.CorrelationID, c.CorrelationID)
	require.Equal(t, short.SenderMessageID, c.SenderMessageID)
	require.Equal(t, short.Traceparent, c.Traceparent)
	require.True(t, micros(short.AcceptedAt).Equal(c.AcceptedAt))
	require.Zero(t, c.Attempts)
	require.False(t, c.Route)
	require.True(t, c.AgentSecrets)

	o := f.mustOutbox(short.ID)
	require.Equal(t, c.Token, *o.Token)
	require.Greater(t, o.DueIn, 59*time.Minute, "the claim's lease runs from the claim")

	// Nothing else is due: the held rows and the row just claimed stay put.
	more, err := f.store.Claim(f.ctx, 100, time.Hour)
	require.NoError(t, err)
	require.Empty(t, more)
	for _, r := range held {
		require.Equal(t, heldToken, *f.mustOutbox(r.ID).Token)
	}
}

func TestClaimTakesExpiredLeaseWithNewToken(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	r := pendingRecord("agent-a@example.com")
	f.takeover(0, r)
	first := f.claimOne(r.ID, 50*time.Millisecond)
	second := f.claimOne(r.ID, time.Hour) // waits for the first lease to expire
	require.NotEqual(t, first.Token, second.Token)
	require.Equal(t, second.Token, *f.mustOutbox(r.ID).Token)
	require.Zero(t, second.Attempts, "an expired lease is not an attempt")
}

func TestClaimConcurrentClaimersNeverShareARow(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	const rows, claimers = 500, 8
	recs := pendingRecords(rows, "agent-a@example.com")
	f.takeover(0, recs...)

	got := make([][]Claimed, claimers)
	var g errgroup.Group
	for i := range claimers {
		g.Go(func() error {
			for {
				c, err := f.store.Claim(f.ctx, 7, time.Hour)
				if err != nil {
					return err
				}
				if len(c) == 0 {
					return nil
				}
				got[i] = append(got[i], c...)
			}
		})
	}
	require.NoError(t, g.Wait())

	seen := map[uuid.UUID]uuid.UUID{} // row -> token of the claim that got it
	for _, cs := range got {
		for _, c := range cs {
			prev, dup := seen[c.ID]
			require.False(t, dup, "row %s claimed twice (tokens %s and %s)", c.ID, prev, c.Token)
			seen[c.ID] = c.Token
		}
	}
	require.Len(t, seen, rows)
	for _, r := range recs {
		token, ok := seen[r.ID]
		require.True(t, ok, "row %s never claimed", r.ID)
		require.Equal(t, token, *f.mustOutbox(r.ID).Token, "the row is held by the claim that returned it")
	}
}

// --- Complete ----------------------------------------------------------------

func TestCompleteDelivered(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	r, token := f.takenOver()
	at := time.Now().Add(-time.Second)

	final := f.complete(10, Result{ID: r.ID, Token: token, Kind: Delivered, At: at, Duration: 42 * time.Millisecond})
	require.Equal(t, map[uuid.UUID]string{r.ID: StatusDelivered}, final)

	f.requireNoOutbox(r.ID)
	m := f.message(r.ID)
	require.Equal(t, StatusDelivered, m.Status)
	require.Equal(t, 1, m.Attempts)
	require.Nil(t, m.Reason)
	require.Nil(t, m.LastError)
	require.NotNil(t, m.FinishedAt)
	require.NotNil(t, m.DeliveredAt)
	require.True(t, micros(at).Add(42*time.Millisecond).Equal(*m.DeliveredAt), "delivered_at %v", *m.DeliveredAt)
	_, failed := f.failure(r.ID)
	require.False(t, failed)

	h := f.history(r.ID)
	require.Len(t, h, 1)
	require.Equal(t, 1, h[0].Attempt)
	require.Equal(t, StatusDelivered, h[0].Outcome)
	require.Nil(t, h[0].Error)
	require.Equal(t, 42, h[0].DurationMs)
	require.True(t, micros(at).Equal(h[0].At))
}

func TestCompleteFailedSchedulesRetry(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	r, token := f.takenOver()

	final := f.complete(10, Result{ID: r.ID, Token: token, Kind: Failed, At: time.Now(),
		Duration: 7 * time.Millisecond, Delay: time.Hour, Error: "HTTP 500"})
	require.Equal(t, map[uuid.UUID]string{r.ID: StatusPending}, final)

	m := f.message(r.ID)
	require.Equal(t, StatusPending, m.Status)
	require.Equal(t, 1, m.Attempts)
	require.Equal(t, "HTTP 500", *m.LastError)
	require.Nil(t, m.Reason)
	require.Nil(t, m.FinishedAt)
	o := f.mustOutbox(r.ID)
	require.Nil(t, o.Token, "the lease is cleared")
	require.Greater(t, o.DueIn, 59*time.Minute, "due after Delay")
	require.LessOrEqual(t, o.DueIn, time.Hour)
	h := f.history(r.ID)
	require.Len(t, h, 1)
	require.Equal(t, "FAILED", h[0].Outcome)
	require.Equal(t, "HTTP 500", *h[0].Error)
	require.Equal(t, 7, h[0].DurationMs)

	c, err := f.store.Claim(f.ctx, 10, time.Hour)
	require.NoError(t, err)
	require.Empty(t, c, "a retry is not due before its time")
}

func TestCompleteFailedOnLastAttemptDeadLetters(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	const maxAttempts = 3
	r, token := f.takenOver()
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		if attempt > 1 {
			c := f.claimOne(r.ID, time.Hour)
			require.Equal(t, attempt-1, c.Attempts)
			token = c.Token
		}
		final := f.complete(maxAttempts, Result{ID: r.ID, Token: token, Kind: Failed, At: time.Now(),
			Error: "timeout " + string(rune('0'+attempt))})
		want := StatusPending
		if attempt == maxAttempts {
			want = StatusDeadLettered
		}
		require.Equal(t, map[uuid.UUID]string{r.ID: want}, final, "attempt %d", attempt)
	}

	m := f.requireDeadLettered(r, ReasonMaxAttempts, maxAttempts)
	require.Equal(t, "timeout 3", *m.LastError)

	h := f.history(r.ID)
	require.Len(t, h, maxAttempts)
	for i, a := range h {
		require.Equal(t, i+1, a.Attempt)
		require.Equal(t, "timeout "+string(rune('1'+i)), *a.Error)
	}
	require.Equal(t, "FAILED", h[0].Outcome)
	require.Equal(t, "FAILED", h[1].Outcome)
	require.Equal(t, StatusDeadLettered, h[2].Outcome)
}

func TestCompleteDeadDeadLettersAtOnce(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	gone, forbidden, noReason := pendingRecord("agent-a@example.com"), pendingRecord("agent-b@example.com"), pendingRecord("agent-c@example.com")
	token := f.takeover(time.Hour, gone, forbidden, noReason)

	final := f.complete(10,
		Result{ID: gone.ID, Token: token, Kind: Dead, Reason: "DESTINATION_GONE", Error: "HTTP 410", At: time.Now()},
		Result{ID: forbidden.ID, Token: token, Kind: Dead, Reason: "DESTINATION_FORBIDDEN", Error: "private address", At: time.Now()},
		Result{ID: noReason.ID, Token: token, Kind: Dead, Error: "boom", At: time.Now()},
	)
	require.Equal(t, map[uuid.UUID]string{gone.ID: StatusDeadLettered, forbidden.ID: StatusDeadLettered, noReason.ID: StatusDeadLettered}, final)

	for r, reason := range map[*Record]string{&gone: "DESTINATION_GONE", &forbidden: "DESTINATION_FORBIDDEN", &noReason: ReasonMaxAttempts} {
		f.requireDeadLettered(*r, reason, 1)
		h := f.history(r.ID)
		require.Len(t, h, 1)
		require.Equal(t, StatusDeadLettered, h[0].Outcome)
	}
}

// Wait and Release let the row go without an attempt: no message status,
// attempt, error or history is recorded and the row is unleased. A waiting row is
// due after its Delay; a released one at once (its Delay is ignored).
func TestCompleteWithoutAttempt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		kind   Kind
		atOnce bool // due, and claimed again, at once
	}{
		{"wait", Wait, false},
		{"release", Release, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newStoreFixture(t)
			r, token := f.takenOver()
			before := f.message(r.ID)

			final := f.complete(10, Result{ID: r.ID, Token: token, Kind: tc.kind, Delay: time.Hour})
			require.Empty(t, final, "no message status changes")

			require.Equal(t, before, f.message(r.ID), "no attempt, no error recorded")
			require.Empty(t, f.history(r.ID))
			o := f.mustOutbox(r.ID)
			require.Nil(t, o.Token)
			if !tc.atOnce {
				require.Greater(t, o.DueIn, 59*time.Minute)
				f.requireNothingClaimed(time.Hour)
				return
			}
			require.LessOrEqual(t, o.DueIn, time.Duration(0))
			require.Zero(t, f.claimOne(r.ID, time.Hour).Attempts)
		})
	}
}

func TestCompleteRejected(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	r, token := f.takenOver()

	final := f.complete(10, Result{ID: r.ID, Token: token, Kind: Rejected, Reason: "AGENT_NOT_FOUND", Error: "CAMS: 404"})
	require.Equal(t, map[uuid.UUID]string{r.ID: StatusRejected}, final)

	m := f.message(r.ID)
	require.Equal(t, StatusRejected, m.Status)
	require.Equal(t, "AGENT_NOT_FOUND", *m.Reason)
	require.Equal(t, "CAMS: 404", *m.LastError)
	require.Zero(t, m.Attempts, "routing is not a delivery attempt")
	require.NotNil(t, m.FinishedAt)
	f.requireNoOutbox(r.ID)
	require.Empty(t, f.history(r.ID))
	fr, ok := f.failure(r.ID)
	require.True(t, ok)
	require.Equal(t, failureRow{Status: StatusRejected, Reason: "AGENT_NOT_FOUND", Address: r.Address}, fr)
}

func TestCompleteMixedBatchFinalStatuses(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	recs := pendingRecords(7, "agent-a@example.com")
	token := f.takeover(time.Hour, recs...)
	// recs[2] is on its last allowed attempt.
	f.exec(`UPDATE messages SET attempts = 2 WHERE message_id = $1`, recs[2].ID)

	now := time.Now()
	final := f.complete(3,
		Result{ID: recs[0].ID, Token: token, Kind: Delivered, At: now},
		Result{ID: recs[1].ID, Token: token, Kind: Failed, At: now, Delay: time.Minute, Error: "e1"},
		Result{ID: recs[2].ID, Token: token, Kind: Failed, At: now, Delay: time.Minute, Error: "e2"},
		Result{ID: recs[3].ID, Token: token, Kind: Dead, At: now, Reason: "DESTINATION_GONE", Error: "410"},
		Result{ID: recs[4].ID, Token: token, Kind: Wait, Delay: time.Minute},
		Result{ID: recs[5].ID, Token: token, Kind: Release},
		Result{ID: recs[6].ID, Token: token, Kind: Rejected, Reason: "AGENT_INACTIVE"},
	)
	// Wait and Release made no attempt and changed no status: they are not reported.
	require.Equal(t, map[uuid.UUID]string{
		recs[0].ID: StatusDelivered,
		recs[1].ID: StatusPending,
		recs[2].ID: StatusDeadLettered,
		recs[3].ID: StatusDeadLettered,
		recs[6].ID: StatusRejected,
	}, final)
	want := []string{StatusDelivered, StatusPending, StatusDeadLettered, StatusDeadLettered, StatusPending, StatusPending, StatusRejected}
	for i, r := range recs {
		require.Equal(t, want[i], f.message(r.ID).Status, "record %d", i)
	}
	require.Equal(t, ReasonMaxAttempts, *f.message(recs[2].ID).Reason)
}

// A result is applied once: the same result again (a completer retrying a batch
// whose commit it did not see) finds the lease gone and changes nothing.
func TestCompleteTwiceAppliesOnce(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	r, token := f.takenOver()
	res := Result{ID: r.ID, Token: token, Kind: Failed, At: time.Now(), Delay: time.Hour, Error: "HTTP 502"}
	require.Equal(t, map[uuid.UUID]string{r.ID: StatusPending}, f.complete(10, res))
	before := f.snapshot()
	require.Empty(t, f.complete(10, res))
	require.Equal(t, before, f.snapshot())
	require.Equal(t, 1, f.message(r.ID).Attempts)
}

// FENCING: a dispatcher whose lease expired and whose row another claim took over
// must not be able to write anything about that row, whatever its result says.
func TestCompleteStaleTokenChangesNothing(t *testing.T) {
	t.Parallel()
	kinds := []struct {
		name   string
		result Result
		max    int
	}{
		{"Delivered", Result{Kind: Delivered}, 10},
		{"Failed", Result{Kind: Failed, Delay: time.Minute, Error: "HTTP 500"}, 10},
		{"FailedLastAttempt", Result{Kind: Failed, Error: "HTTP 500"}, 1},
		{"Dead", Result{Kind: Dead, Reason: "DESTINATION_GONE", Error: "HTTP 410"}, 10},
		{"Wait", Result{Kind: Wait, Delay: time.Hour}, 10},
		{"Release", Result{Kind: Release}, 10},
		{"Rejected", Result{Kind: Rejected, Reason: "AGENT_NOT_FOUND", Error: "CAMS: 404"}, 10},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			f := newStoreFixture(t)
			r := pendingRecord("agent-a@example.com")
			stale := f.takeover(50*time.Millisecond, r)
			current := f.claimOne(r.ID, time.Hour) // the lease expired: the row changed hands
			require.NotEqual(t, stale, current.Token)
			before := f.snapshot()

			res := k.result
			res.ID, res.Token, res.At = r.ID, stale, time.Now()
			final := f.complete(k.max, res)
			require.Empty(t, final, "a stale result reports no status")
			require.Equal(t, before, f.snapshot(), "a stale result changes nothing")
			// ... but an attempt that was made stays visible in the history, as
			// SUPERSEDED (DESIGN §6); a non-attempt leaves no trace.
			var superseded []Attempt
			for _, a := range f.history(r.ID) {
				if a.Outcome == OutcomeSuperseded {
					superseded = append(superseded, a)
				}
			}
			switch k.result.Kind {
			case Delivered, Failed, Dead:
				require.Len(t, superseded, 1, "the superseded attempt is in the history")
				if k.result.Error != "" {
					require.Equal(t, k.result.Error, *superseded[0].Error)
				}
			default:
				require.Empty(t, superseded, "no attempt was made")
			}
			o := f.mustOutbox(r.ID)
			require.Equal(t, current.Token, *o.Token, "the row stays with the current claim")

			// The current holder's result still applies.
			res.Token = current.Token
			f.complete(k.max, res)
			require.NotEqual(t, before, f.snapshot())
		})
	}
}

// --- SetRoute / ReleaseAll -----------------------------------------------------

func TestStoreSetRouteIsFenced(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	r := f.replayedRejection()

	first := f.claimOne(r.ID, 50*time.Millisecond)
	require.True(t, first.Route, "a replayed row asks for a fresh lookup")
	second := f.claimOne(r.ID, time.Hour) // after the first lease expired

	err := f.store.SetRoute(f.ctx, r.ID, first.Token, "NATS_SUBJECT", "agents.stale.inbox", true)
	require.ErrorIs(t, err, ErrLeaseLost)
	err = f.store.SetRoute(f.ctx, uuid.New(), second.Token, "NATS_SUBJECT", "agents.other.inbox", true)
	require.ErrorIs(t, err, ErrLeaseLost, "the token holds only its own rows")
	m := f.message(r.ID)
	require.Nil(t, m.DestType)
	require.Nil(t, m.DestName)
	require.False(t, m.AgentSecrets)
	require.True(t, f.mustOutbox(r.ID).Route)

	require.NoError(t, f.store.SetRoute(f.ctx, r.ID, second.Token, "HTTP_ENDPOINT", "https://agents.example.com/a", true))
	m = f.message(r.ID)
	require.Equal(t, "HTTP_ENDPOINT", *m.DestType)
	require.Equal(t, "https://agents.example.com/a", *m.DestName)
	require.True(t, m.AgentSecrets)
	o := f.mustOutbox(r.ID)
	require.False(t, o.Route)
	require.Equal(t, second.Token, *o.Token, "the claim keeps its lease to deliver")
}

func TestStoreReleaseAllHandsBackOnlyTheGivenTokens(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	a, b, c := pendingRecords(3, "agent-a@example.com"), pendingRecords(2, "agent-b@example.com"), pendingRecords(4, "agent-c@example.com")
	ta, tb, tc := f.takeover(time.Hour, a...), f.takeover(time.Hour, b...), f.takeover(time.Hour, c...)

	n, err := f.store.ReleaseAll(f.ctx, []uuid.UUID{ta, tb})
	require.NoError(t, err)
	require.EqualValues(t, len(a)+len(b), n)

	for _, r := range append(append([]Record{}, a...), b...) {
		o := f.mustOutbox(r.ID)
		require.Nil(t, o.Token)
		require.LessOrEqual(t, o.DueIn, time.Duration(0))
		require.Equal(t, StatusPending, f.message(r.ID).Status)
		require.Zero(t, f.message(r.ID).Attempts)
	}
	for _, r := range c {
		require.Equal(t, tc, *f.mustOutbox(r.ID).Token)
	}
	claimed := f.claimN(len(a)+len(b), time.Hour)
	got := map[uuid.UUID]bool{}
	for _, cl := range claimed {
		got[cl.ID] = true
	}
	for _, id := range append(ids(a), ids(b)...) {
		require.True(t, got[id])
	}

	n, err = f.store.ReleaseAll(f.ctx, nil)
	require.NoError(t, err)
	require.Zero(t, n)
	n, err = f.store.ReleaseAll(f.ctx, []uuid.UUID{ta})
	require.NoError(t, err)
	require.Zero(t, n, "released rows no longer belong to the token")
}

// A slow delivery's stale result and the current claim's result for the same row
// can reach the completer together (the sweep re-claimed the row in the same
// process): only the current one may count, once, with its own data.
func TestCompleteStaleAndCurrentResultsInOneBatch(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name           string
		stale, current Result
		check          func(t *testing.T, f *storeFixture, id uuid.UUID)
	}{
		{
			name:    "Delivered",
			stale:   Result{Kind: Delivered, At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Duration: time.Millisecond},
			current: Result{Kind: Delivered, At: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), Duration: 2 * time.Millisecond},
			check: func(t *testing.T, f *storeFixture, id uuid.UUID) {
				m := f.message(id)
				require.Equal(t, StatusDelivered, m.Status)
				require.Equal(t, 1, m.Attempts)
				require.True(t, time.Date(2026, 1, 2, 0, 0, 0, 2e6, time.UTC).Equal(*m.DeliveredAt), "delivered_at %v", *m.DeliveredAt)
				h := f.history(id)
				require.Len(t, h, 2, "the current attempt and the superseded one")
				require.Equal(t, OutcomeSuperseded, h[0].Outcome, "the stale attempt (earlier) is SUPERSEDED")
				require.Equal(t, 1, h[0].DurationMs)
				require.Equal(t, StatusDelivered, h[1].Outcome)
				require.Equal(t, 2, h[1].DurationMs)
			},
		},
		{
			name:    "Failed",
			stale:   Result{Kind: Dead, Reason: "DESTINATION_GONE", Error: "stale 410", Duration: time.Millisecond},
			current: Result{Kind: Failed, Delay: time.Hour, Error: "current 500", Duration: 2 * time.Millisecond},
			check: func(t *testing.T, f *storeFixture, id uuid.UUID) {
				m := f.message(id)
				require.Equal(t, StatusPending, m.Status, "the stale dead-letter must not win")
				require.Equal(t, 1, m.Attempts)
				require.Equal(t, "current 500", *m.LastError)
				require.Greater(t, f.mustOutbox(id).DueIn, 59*time.Minute)
				h := f.history(id)
				require.Len(t, h, 1, "one attempt, one history row")
				require.Equal(t, "current 500", *h[0].Error)
			},
		},
		{
			name:    "Rejected",
			stale:   Result{Kind: Rejected, Reason: "AGENT_INACTIVE", Error: "stale"},
			current: Result{Kind: Rejected, Reason: "AGENT_NOT_FOUND", Error: "current"},
			check: func(t *testing.T, f *storeFixture, id uuid.UUID) {
				m := f.message(id)
				require.Equal(t, StatusRejected, m.Status)
				require.Equal(t, "AGENT_NOT_FOUND", *m.Reason)
				require.Equal(t, "current", *m.LastError)
				fr, ok := f.failure(id)
				require.True(t, ok)
				require.Equal(t, "AGENT_NOT_FOUND", fr.Reason)
			},
		},
	}
	for _, tc := range cases {
		for _, staleFirst := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/staleFirst=%v", tc.name, staleFirst), func(t *testing.T) {
				t.Parallel()
				f := newStoreFixture(t)
				r := pendingRecord("agent-a@example.com")
				staleToken := f.takeover(50*time.Millisecond, r)
				cur := f.claimOne(r.ID, time.Hour)
				stale, current := tc.stale, tc.current
				stale.ID, stale.Token = r.ID, staleToken
				current.ID, current.Token = r.ID, cur.Token
				batch := []Result{stale, current}
				if !staleFirst {
					batch = []Result{current, stale}
				}
				f.complete(10, batch...)
				tc.check(t, f, r.ID)
			})
		}
	}
}
