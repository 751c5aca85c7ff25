package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Reasons of the agent-aware delivery (DESIGN §5a, §6).
const (
	ReasonExpired       = "EXPIRED"
	ReasonAgentInactive = "AGENT_INACTIVE"
)

// Outcome of a history entry whose result was discarded because another claim held
// the row by then (DESIGN §6).
const OutcomeSuperseded = "SUPERSEDED"

// orderSettle is how long a keyed job waits at the order gate when the dispatcher
// has no AckFloor to read (a dispatcher on its own, in this package's tests): an
// earlier message of its key committed a little later by a concurrent batch still
// lands first if it lands within this time. The router always reads the ack floor
// (ordergate.go).
var orderSettle = 150 * time.Millisecond

// holdSQL puts held rows back to wait without an attempt (DESIGN §5a): the row is
// marked held (releaseHeldSQL finds it when the agent is ACTIVE again) and the
// message shows reason AGENT_INACTIVE while it stays PENDING. Fenced by the lease.
const holdSQL = `
WITH r AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[]) AS r(id, token, delay_ms)
), o AS (
    UPDATE outbox o SET due_at = now() + r.delay_ms * interval '1 millisecond', lease_token = NULL, held = true
    FROM r WHERE o.message_id = r.id AND o.lease_token = r.token
    RETURNING o.message_id
)
UPDATE messages m SET reason = 'AGENT_INACTIVE' FROM o
WHERE m.message_id = o.message_id AND m.reason IS DISTINCT FROM 'AGENT_INACTIVE'`

// expireSQL dead-letters held-by-token rows without an attempt (expiry, or a hold
// past HOLD_MAX_AGE). Fenced by the lease.
const expireSQL = `
WITH r AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[]) AS r(id, token, reason, err)
), d AS (
    DELETE FROM outbox o USING r WHERE o.message_id = r.id AND o.lease_token = r.token
    RETURNING o.message_id, r.reason, r.err
), m AS (
    UPDATE messages m SET status = 'DEAD_LETTERED', reason = d.reason, last_error = d.err, finished_at = now()
    FROM d WHERE m.message_id = d.message_id
    RETURNING m.message_id, m.reason, m.ai_agent_address
)
INSERT INTO failures (message_id, status, reason, ai_agent_address)
SELECT message_id, 'DEAD_LETTERED', reason, ai_agent_address FROM m
ON CONFLICT (message_id) DO UPDATE SET status = excluded.status, reason = excluded.reason, failed_at = now()
RETURNING message_id`

// supersededSQL keeps attempts whose result was discarded (another claim held the
// row by then) in the history, as SUPERSEDED (DESIGN §6). It runs after the
// statements that applied the batch's results, in the same transaction: a result
// that was applied has written its own history row at the same instant.
//
// The history check is a scalar subquery with LIMIT 1, not NOT EXISTS, on purpose
// (issue 11): pgx prepares the statement once per connection and Postgres soon
// keeps a generic plan for it; planned while delivery_attempts was small, NOT
// EXISTS became a hash anti join over a sequential scan of the whole history
// table, run for every delivered batch for the life of the connection (in a
// 60,000-message bench run: ~300 rows read per delivered message, Postgres CPU per
// message growing as the table grew). A subquery with LIMIT is never turned into a
// join, so it is always an index probe per row (delivery_attempts_message_idx).
const supersededSQL = `
INSERT INTO delivery_attempts (message_id, attempt, at, outcome, error, duration_ms)
SELECT r.id, m.attempts, r.at, 'SUPERSEDED', NULLIF(r.err, ''), r.dur
FROM unnest($1::uuid[], $2::timestamptz[], $3::int[], $4::text[]) AS r(id, at, dur, err)
JOIN messages m ON m.message_id = r.id
WHERE (SELECT 1 FROM delivery_attempts d WHERE d.message_id = r.id AND d.at = r.at LIMIT 1) IS NULL`

// queueAgentAware adds the statements of the Hold and Expire results, and the
// history of superseded attempts, to a Complete batch.
func queueAgentAware(b *pgx.Batch, results []Result, final map[uuid.UUID]string) {
	var hold waiting
	var exp rejected
	var sup failed
	for _, r := range results {
		switch r.Kind {
		case Hold:
			hold.add(r)
		case Expire:
			exp.add(r)
		case Delivered, Failed, Dead:
			sup.delivered.add(r)
			sup.err = append(sup.err, truncate(r.Error))
		}
	}
	if len(hold.ids) > 0 {
		b.Queue(holdSQL, hold.ids, hold.tokens, hold.delay)
	}
	if len(exp.ids) > 0 {
		b.Queue(expireSQL, exp.ids, exp.tokens, exp.reason, exp.err).Query(func(rows pgx.Rows) error {
			return collect(rows, final, StatusDeadLettered)
		})
	}
	if len(sup.ids) > 0 {
		b.Queue(supersededSQL, sup.ids, sup.at, sup.dur, sup.err)
	}
}

// expireWaitingSQL dead-letters expired rows that no live claim holds, whatever
// they wait for: a retry's time, an open breaker, a hold, the head of their key.
const expireWaitingSQL = `
WITH d AS (
    DELETE FROM outbox o
    WHERE o.message_id IN (
        SELECT message_id FROM outbox
        WHERE expires_at <= now() AND (lease_token IS NULL OR due_at <= now())
        ORDER BY expires_at LIMIT $1
        FOR UPDATE SKIP LOCKED)
    RETURNING o.message_id, o.expires_at
), m AS (
    UPDATE messages m SET status = 'DEAD_LETTERED', reason = 'EXPIRED',
           last_error = 'expired at ' || to_char(d.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || ' before it could be delivered',
           finished_at = now()
    FROM d WHERE m.message_id = d.message_id
    RETURNING m.message_id, m.ai_agent_address
)
INSERT INTO failures (message_id, status, reason, ai_agent_address)
SELECT message_id, 'DEAD_LETTERED', 'EXPIRED', ai_agent_address FROM m
ON CONFLICT (message_id) DO UPDATE SET status = excluded.status, reason = excluded.reason, failed_at = now()`

// ExpireWaiting dead-letters, as EXPIRED, up to limit messages past their
// expiresAt that are waiting in the outbox (not held by a live claim), and returns
// how many (DESIGN §5a: never delivered after expiresAt, and visible as such).
func (s *Store) ExpireWaiting(ctx context.Context, limit int) (int, error) {
	tag, err := s.pool.Exec(ctx, expireWaitingSQL, limit)
	if err != nil {
		return 0, fmt.Errorf("error expiring waiting messages: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// ReleaseHeld makes the held rows of an agent due at once (CAMS shows it ACTIVE
// again, DESIGN §5a) and returns how many.
func (s *Store) ReleaseHeld(ctx context.Context, address string) (int, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE outbox SET due_at = now(), held = false
        WHERE ai_agent_address = $1 AND held AND lease_token IS NULL`, address)
	if err != nil {
		return 0, fmt.Errorf("error releasing held messages: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// HeldCount returns how many messages are held for INACTIVE agents.
func (s *Store) HeldCount(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE held`).Scan(&n); err != nil {
		return 0, fmt.Errorf("error counting held messages: %w", err)
	}
	return n, nil
}

// parkFor is how long a row parked behind the head of its key waits at most before
// a claim looks at it again; normally the trigger of migration 0002 wakes it first.
var parkFor = 30 * time.Second

// unparkHeadsSQL makes due again the parked rows that are heads of their key by now.
// It runs after the parking claim committed, with a snapshot of its own: a head
// that left the outbox while the claim parked its successor — its trigger ran
// before the successor was visible or parked — is seen gone here, so the key is not
// left parked behind a head that is no more. It takes no lock it would wait for
// (a parked row locked right now is left alone: the trigger of the transaction
// deleting its head holds it, and wakes it), so it cannot deadlock with the
// transactions recording results. A head still being deleted when it runs is seen
// still there: the dispatcher runs the check again a little later (recheckParked).
// Unparking a row that is not the head is harmless: every claim checks the head
// rule again and parks it anew.
const unparkHeadsSQL = `
UPDATE outbox o SET due_at = now(), parked = false
WHERE o.message_id IN (SELECT message_id FROM outbox WHERE message_id = ANY($1) AND parked FOR UPDATE SKIP LOCKED)
  AND o.parked
  AND NOT EXISTS (
      SELECT 1 FROM outbox p
      WHERE p.ai_agent_address = o.ai_agent_address AND p.ordering_key = o.ordering_key
        AND p.ordering_key IS NOT NULL
        AND (p.order_seq, p.message_id) < (o.order_seq, o.message_id))`

// unparkHeads runs unparkHeadsSQL on ids and returns how many it made due.
func (s *Store) unparkHeads(ctx context.Context, ids []uuid.UUID) (int64, error) {
	tag, err := s.pool.Exec(ctx, unparkHeadsSQL, ids)
	if err != nil {
		return 0, fmt.Errorf("error checking parked rows: %w", err)
	}
	return tag.RowsAffected(), nil
}
