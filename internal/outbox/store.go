// Package outbox is the transactional outbox: the Postgres store of message records
// and outbox rows (taking a batch over in one statement, fenced claims, batched
// completions, replay, retention) and the dispatcher that delivers claimed rows.
//
// Guarantees: a message is PENDING exactly while it has an outbox row; every claim
// carries a lease token and a lease deadline on the database clock (due_at), and
// every completion only applies to the claim that still holds the row, so a
// dispatcher that died or stalled can never overwrite the work of the one that took
// the row over after its lease expired (FIELD-NOTES, river #1302).
package outbox

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/msgrouter/msgrouter/internal/pgtext"
)

// Statuses of the contract.
const (
	StatusPending      = "PENDING"
	StatusDelivered    = "DELIVERED"
	StatusRejected     = "REJECTED"
	StatusDeadLettered = "DEAD_LETTERED"
)

// Dead-letter reason decided by the store.
const ReasonMaxAttempts = "MAX_ATTEMPTS_EXCEEDED"

// Store runs the outbox's SQL on a pool.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store on pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Pool returns the pool, for readiness checks.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Record is a message being taken over from the stream.
type Record struct {
	ID              uuid.UUID
	Address         string
	Status          string // StatusPending or StatusRejected
	Reason          string // rejection reason
	LastError       string // rejection detail
	DestType        string
	DestName        string
	Payload         []byte // nil when the message did not parse
	Raw             []byte // the stream message, kept for INVALID_MESSAGE
	SenderID        string
	CorrelationID   string
	SenderMessageID string
	Traceparent     string
	AcceptedAt      time.Time
	// AgentSecrets records that CAMS gave the agent its own signing secrets, so a
	// later delivery (a retry, another replica) knows to fetch them. The secrets
	// themselves are never stored.
	AgentSecrets bool
	// OrderingKey is senderMetadata.orderingKey ("" = unkeyed) and OrderSeq the
	// stream sequence the message was accepted at: together with Address they give
	// its place in its key (DESIGN §5a, ordering.go).
	OrderingKey string
	OrderSeq    uint64
	// ExpiresAt is senderMetadata.expiresAt (zero = never; DESIGN §5a, expiry.go).
	ExpiresAt time.Time
}

const takeoverSQL = `
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::bytea[], $8::bytea[], $9::text[], $10::text[], $11::text[], $12::text[],
                         $13::timestamptz[], $14::text[], $17::boolean[], $18::text[], $19::bigint[],
                         $20::timestamptz[])
        AS t(message_id, ai_agent_address, status, reason, destination_type, destination_name,
             payload, raw, sender_id, correlation_id, sender_message_id, traceparent, accepted_at, last_error,
             agent_secrets, ordering_key, order_seq, expires_at)
), ins AS (
    INSERT INTO messages (message_id, ai_agent_address, status, reason, destination_type, destination_name,
                          payload, raw, sender_id, correlation_id, sender_message_id, traceparent,
                          accepted_at, last_error, finished_at, agent_secrets, ordering_key, order_seq, expires_at)
    SELECT message_id, ai_agent_address, status, NULLIF(reason, ''), NULLIF(destination_type, ''),
           NULLIF(destination_name, ''), payload, raw, NULLIF(sender_id, ''), NULLIF(correlation_id, ''),
           NULLIF(sender_message_id, ''), NULLIF(traceparent, ''), accepted_at, NULLIF(last_error, ''),
           CASE WHEN status = 'PENDING' THEN NULL ELSE now() END, agent_secrets, NULLIF(ordering_key, ''),
           order_seq, expires_at
    FROM input
    ON CONFLICT (message_id) DO NOTHING
    RETURNING message_id, status, reason, ai_agent_address, ordering_key, order_seq, expires_at
), ob AS (
    -- Keyed rows are not leased to the taking-over process: they pass the order
    -- gate first (ordergate.go: every earlier stream message taken over), then
    -- the gate claims each key's head. Should the process die meanwhile, they come
    -- due after the lease like any row left behind.
    INSERT INTO outbox (message_id, due_at, lease_token, ai_agent_address, ordering_key, order_seq, expires_at, gate)
    SELECT message_id, now() + $15::interval,
           CASE WHEN ordering_key IS NULL THEN $16::uuid END,
           ai_agent_address, ordering_key,
           CASE WHEN ordering_key IS NOT NULL THEN order_seq END, expires_at, ordering_key IS NOT NULL
    FROM ins WHERE status = 'PENDING'
), fl AS (
    INSERT INTO failures (message_id, status, reason, ai_agent_address)
    SELECT message_id, status, reason, ai_agent_address FROM ins WHERE status <> 'PENDING'
)
SELECT message_id, now() + $15::interval FROM ins`

// Takeover writes recs and the outbox rows of the pending ones in one statement (one
// transaction): a message already known (a redelivery, a duplicate submission beyond
// the JetStream dedupe window) is left untouched. The new pending rows are leased to
// token until the returned deadline, so the caller can hand them straight to its
// dispatcher; inserted reports which recs were new.
func (s *Store) Takeover(ctx context.Context, recs []Record, token uuid.UUID, lease time.Duration) (inserted map[uuid.UUID]bool, leaseUntil time.Time, err error) {
	n := len(recs)
	ids := make([]uuid.UUID, n)
	addr, status, reason, dtype, dname := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	payload, raw := make([][]byte, n), make([][]byte, n)
	sender, corr, smid, tp, lastErr := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	accepted := make([]time.Time, n)
	secrets := make([]bool, n)
	okey, oseq, expires := make([]string, n), make([]int64, n), make([]pgtype.Timestamptz, n)
	for i, r := range recs {
		okey[i], oseq[i] = r.OrderingKey, int64(r.OrderSeq)
		expires[i] = pgtype.Timestamptz{Time: r.ExpiresAt, Valid: !r.ExpiresAt.IsZero()}
		secrets[i] = r.AgentSecrets
		ids[i], addr[i], status[i], reason[i], dtype[i], dname[i] = r.ID, r.Address, r.Status, r.Reason, r.DestType, r.DestName
		payload[i], raw[i] = r.Payload, r.Raw
		sender[i], corr[i], smid[i], tp[i], lastErr[i] = r.SenderID, r.CorrelationID, r.SenderMessageID, r.Traceparent, r.LastError
		accepted[i] = r.AcceptedAt
	}
	rows, err := s.pool.Query(ctx, takeoverSQL, ids, addr, status, reason, dtype, dname, payload, raw,
		sender, corr, smid, tp, accepted, lastErr, lease, token, secrets, okey, oseq, expires)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("error taking messages over: %w", err)
	}
	inserted = make(map[uuid.UUID]bool, n)
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id, &leaseUntil); err != nil {
			rows.Close()
			return nil, time.Time{}, fmt.Errorf("error taking messages over: %w", err)
		}
		inserted[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, time.Time{}, fmt.Errorf("error taking messages over: %w", err)
	}
	return inserted, leaseUntil, nil
}

const conflictsSQL = `
SELECT i.id FROM unnest($1::uuid[], $2::text[], $3::bytea[]) AS i(id, addr, digest)
JOIN messages m ON m.message_id = i.id
WHERE m.ai_agent_address <> i.addr OR m.payload IS NULL OR sha256(m.payload) <> i.digest`

// Conflicts returns the ids of recs whose stored message has another address or
// payload: a sender reusing an idempotency key for a different message (DESIGN §2:
// the first submission wins; the later one is counted and logged). recs are
// messages the takeover found already known; only parsed ones (Payload != nil)
// are compared.
func (s *Store) Conflicts(ctx context.Context, recs []Record) ([]uuid.UUID, error) {
	var ids []uuid.UUID
	var addrs []string
	var digests [][]byte
	for _, r := range recs {
		if r.Payload == nil {
			continue
		}
		d := sha256.Sum256(r.Payload)
		ids, addrs, digests = append(ids, r.ID), append(addrs, r.Address), append(digests, d[:])
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return s.queryIDs(ctx, "comparing known messages", conflictsSQL, ids, addrs, digests)
}

// queryIDs runs query, which returns one uuid column, and returns its rows; an
// error wraps the cause as "error <doing>: …".
func (s *Store) queryIDs(ctx context.Context, doing, query string, args ...any) ([]uuid.UUID, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("error %s: %w", doing, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, fmt.Errorf("error %s: %w", doing, err)
	}
	return ids, nil
}

// Claimed is an outbox row held by a claim.
type Claimed struct {
	ID              uuid.UUID
	Token           uuid.UUID
	Address         string
	DestType        string
	DestName        string
	Payload         []byte
	SenderID        string
	CorrelationID   string
	SenderMessageID string
	Traceparent     string
	AcceptedAt      time.Time
	Attempts        int       // attempts already made since the last replay
	Route           bool      // look the agent up afresh before delivering
	AgentSecrets    bool      // fetch the agent's own signing secrets from CAMS
	OrderingKey     string    // "" = unkeyed (DESIGN §5a)
	OrderSeq        uint64    // stream sequence of a keyed message, set by the takeover (the order gate)
	Gate            bool      // a keyed row no order gate has passed yet (outbox.gate; ordergate.go regate)
	ExpiresAt       time.Time // zero = never (DESIGN §5a)
	// Swept is true for rows claimed by the sweep (retries, replays, leftovers,
	// keyed rows), false for rows handed over in-process right after the takeover
	// routed them: only swept rows look the agent up again (DESIGN §5).
	Swept bool
	// Hold is set by the takeover when routing found the agent INACTIVE with
	// inactivePolicy HOLD: the job is held, not attempted (DESIGN §5a).
	Hold bool
}

// claimSQL claims due rows; a keyed row only when it is the head of its key (no
// pending row of the same address and key comes before it), so a key has at most
// one row in flight and its messages go out in order (DESIGN §5a). Keyed rows it
// finds behind their head are parked instead (agentaware_store.go): the trigger of
// migration 0002 makes a key's next row due when its head leaves the outbox. The
// last column tells parked rows from claimed ones. Rows of the agents in $5 are
// left alone: their lanes are congested (lanes.go), so a claim would only send them
// back (coalesce: a row without an address is never skipped).
const claimSQL = `
WITH due AS (
    SELECT o.message_id,
           (o.ordering_key IS NOT NULL AND EXISTS (
               SELECT 1 FROM outbox p
               WHERE p.ai_agent_address = o.ai_agent_address AND p.ordering_key = o.ordering_key
                 AND p.ordering_key IS NOT NULL
                 AND (p.order_seq, p.message_id) < (o.order_seq, o.message_id))) AS behind
    FROM outbox o
    WHERE o.due_at <= now() AND coalesce(o.ai_agent_address <> ALL($5::text[]), true)
    ORDER BY o.due_at
    LIMIT $1
    FOR UPDATE OF o SKIP LOCKED
), claimed AS (
    -- Re-checked in the statement that changes the row (issue 8, item 3): the
    -- row is locked by due, and a row changed since the snapshot is re-evaluated
    -- on its latest version (READ COMMITTED), so a row completed, released or
    -- re-scheduled meanwhile is never claimed.
    UPDATE outbox o SET due_at = now() + $2::interval, lease_token = $3, held = false, parked = false
    FROM due WHERE o.message_id = due.message_id AND NOT due.behind AND o.due_at <= now()
    RETURNING o.message_id, o.route, o.gate, o.order_seq
), parked AS (
    UPDATE outbox o SET due_at = now() + $4::interval, parked = true
    FROM due WHERE o.message_id = due.message_id AND due.behind AND o.due_at <= now()
    RETURNING o.message_id
)
SELECT m.message_id, m.ai_agent_address, coalesce(m.destination_type, ''), coalesce(m.destination_name, ''),
       m.payload, coalesce(m.sender_id, ''), coalesce(m.correlation_id, ''), coalesce(m.sender_message_id, ''),
       coalesce(m.traceparent, ''), m.accepted_at, m.attempts, c.route, m.agent_secrets,
       coalesce(m.ordering_key, ''), m.expires_at, coalesce(m.order_seq, 0), c.gate, false
FROM claimed c JOIN messages m ON m.message_id = c.message_id
UNION ALL
SELECT p.message_id, '', '', '', NULL::bytea, '', '', '', '', now(), 0, false, false, '', NULL::timestamptz, 0, false, true
FROM parked p`

// Claim leases up to limit due rows (fresh rows nobody holds, retries whose time has
// come, rows whose lease expired, heads of ordering keys) to a new token for lease,
// on the database clock. The claim commits at once: no transaction stays open
// across delivery.
func (s *Store) Claim(ctx context.Context, limit int, lease time.Duration) ([]Claimed, error) {
	out, _, _, err := s.claim(ctx, limit, lease, nil)
	return out, err
}

// claim is Claim that also reports how many rows it looked at (claimed or parked),
// so a sweep knows whether more may be due, and the ids it parked. It leaves the
// rows of the agents in skip where they are.
func (s *Store) claim(ctx context.Context, limit int, lease time.Duration, skip []string) ([]Claimed, int, []uuid.UUID, error) {
	token := uuid.New()
	if skip == nil {
		skip = []string{} // an empty array, not NULL: ALL over NULL skips everything
	}
	rows, err := s.pool.Query(ctx, claimSQL, limit, lease, token, parkFor, skip)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("error claiming outbox rows: %w", err)
	}
	var out []Claimed
	var parked []uuid.UUID
	for rows.Next() {
		c := Claimed{Token: token, Swept: true}
		var expires pgtype.Timestamptz
		var isParked bool
		var seq int64
		if err := rows.Scan(&c.ID, &c.Address, &c.DestType, &c.DestName, &c.Payload, &c.SenderID, &c.CorrelationID,
			&c.SenderMessageID, &c.Traceparent, &c.AcceptedAt, &c.Attempts, &c.Route, &c.AgentSecrets,
			&c.OrderingKey, &expires, &seq, &c.Gate, &isParked); err != nil {
			rows.Close()
			return nil, 0, nil, fmt.Errorf("error claiming outbox rows: %w", err)
		}
		if isParked {
			parked = append(parked, c.ID)
			continue
		}
		if expires.Valid {
			c.ExpiresAt = expires.Time
		}
		c.OrderSeq = uint64(seq)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, nil, fmt.Errorf("error claiming outbox rows: %w", err)
	}
	if len(parked) > 0 {
		if _, err := s.unparkHeads(ctx, parked); err != nil {
			return out, len(out) + len(parked), parked, err
		}
	}
	return out, len(out) + len(parked), parked, nil
}

// Outcome kinds of a finished claim.
type Kind int

// The outcomes.
const (
	Delivered Kind = iota + 1 // the inbox confirmed
	Failed                    // a failed attempt: retry after Delay, or dead-letter
	Dead                      // a failed attempt that dead-letters at once (Reason)
	Wait                      // no attempt made (breaker open, CAMS down): try again after Delay
	Release                   // no attempt made (shutting down): due again at once
	Rejected                  // routing afresh rejected it (Reason)
	Hold                      // no attempt: the agent is INACTIVE with inactivePolicy HOLD; look again after Delay (hold.go)
	Expire                    // no attempt: dead-letter at once with Reason (EXPIRED, or AGENT_INACTIVE after HOLD_MAX_AGE)
)

// Result is what became of one claimed row.
type Result struct {
	ID       uuid.UUID
	Token    uuid.UUID
	Kind     Kind
	At       time.Time     // when the attempt started
	Duration time.Duration // how long it took
	Delay    time.Duration // Failed, Wait: when to try again
	Reason   string        // Dead, Rejected
	Error    string        // Failed, Dead, Rejected
	// Address and OrderingKey name a keyed row's key, so that recording its
	// result can claim the key's next row in the same transaction (DESIGN §5a).
	Address, OrderingKey string
}

const deliveredSQL = `
WITH r AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::int[]) AS r(id, token, at, dur)
), d AS (
    -- Carry the holder's own values on: joining r again by id alone would also
    -- match a stale result for the same row in this batch.
    DELETE FROM outbox o USING r WHERE o.message_id = r.id AND o.lease_token = r.token
    RETURNING o.message_id, r.at, r.dur
), m AS (
    UPDATE messages m SET status = 'DELIVERED', reason = NULL, last_error = NULL, attempts = m.attempts + 1,
           delivered_at = d.at + d.dur * interval '1 millisecond', finished_at = now()
    FROM d
    WHERE m.message_id = d.message_id
    RETURNING m.message_id, m.attempts, d.at, d.dur
)
INSERT INTO delivery_attempts (message_id, attempt, at, outcome, error, duration_ms)
SELECT m.message_id, m.attempts, m.at, 'DELIVERED', NULL, m.dur FROM m
RETURNING message_id`

const failedSQL = `
WITH r AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::int[], $5::bigint[], $6::text[], $7::text[])
        AS r(id, token, at, dur, delay_ms, reason, err)
), held AS (
    -- The holder's own result travels with the row: joining r again by id alone
    -- would also match a stale result for the same row in this batch.
    SELECT o.message_id, r.at, r.dur, r.delay_ms, r.reason, r.err
    FROM outbox o JOIN r ON o.message_id = r.id AND o.lease_token = r.token
    FOR UPDATE OF o
), m AS (
    UPDATE messages m SET attempts = m.attempts + 1, last_error = held.err,
           status = CASE WHEN held.reason <> '' OR m.attempts + 1 >= $8 THEN 'DEAD_LETTERED' ELSE 'PENDING' END,
           reason = CASE WHEN held.reason <> '' THEN held.reason WHEN m.attempts + 1 >= $8 THEN 'MAX_ATTEMPTS_EXCEEDED' END,
           finished_at = CASE WHEN held.reason <> '' OR m.attempts + 1 >= $8 THEN now() END
    FROM held
    WHERE m.message_id = held.message_id
    RETURNING m.message_id, m.attempts, m.status, m.reason, m.ai_agent_address, held.at, held.dur, held.delay_ms, held.err
), h AS (
    INSERT INTO delivery_attempts (message_id, attempt, at, outcome, error, duration_ms)
    SELECT m.message_id, m.attempts, m.at, CASE WHEN m.status = 'PENDING' THEN 'FAILED' ELSE m.status END, m.err, m.dur
    FROM m
), gone AS (
    DELETE FROM outbox o USING m WHERE o.message_id = m.message_id AND m.status <> 'PENDING'
), f AS (
    INSERT INTO failures (message_id, status, reason, ai_agent_address)
    SELECT message_id, status, reason, ai_agent_address FROM m WHERE status <> 'PENDING'
    ON CONFLICT (message_id) DO UPDATE SET status = excluded.status, reason = excluded.reason, failed_at = now()
), again AS (
    UPDATE outbox o SET due_at = now() + m.delay_ms * interval '1 millisecond', lease_token = NULL
    FROM m
    WHERE o.message_id = m.message_id AND m.status = 'PENDING'
)
SELECT message_id, status FROM m`

const waitSQL = `
UPDATE outbox o SET due_at = now() + r.delay_ms * interval '1 millisecond', lease_token = NULL
FROM unnest($1::uuid[], $2::uuid[], $3::bigint[]) AS r(id, token, delay_ms)
WHERE o.message_id = r.id AND o.lease_token = r.token`

const rejectedSQL = `
WITH r AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[]) AS r(id, token, reason, err)
), d AS (
    -- Carry the holder's own values on (not a stale result for the same row).
    DELETE FROM outbox o USING r WHERE o.message_id = r.id AND o.lease_token = r.token
    RETURNING o.message_id, r.reason, r.err
), m AS (
    UPDATE messages m SET status = 'REJECTED', reason = d.reason, last_error = d.err, finished_at = now()
    FROM d
    WHERE m.message_id = d.message_id
    RETURNING m.message_id, m.reason, m.ai_agent_address
)
INSERT INTO failures (message_id, status, reason, ai_agent_address)
SELECT message_id, 'REJECTED', reason, ai_agent_address FROM m
ON CONFLICT (message_id) DO UPDATE SET status = excluded.status, reason = excluded.reason, failed_at = now()
RETURNING message_id`

// Complete records a batch of results in one round trip. Each result applies only if
// its claim still holds the row; stale ones (the lease expired and another claim took
// the row) are ignored, which is what makes a slow or dead dispatcher harmless.
// It returns the final statuses of the rows it changed (PENDING for retries).
//
// One bad row cannot fail the batch (DESIGN §2, issue 8): error texts are made
// storable first (truncate), and should the batch still fail for a data reason
// (IsDataError), it is split in halves until the good results are written; a single
// result that still fails is written once more with its error text replaced, and if
// even that fails it is left out (absent from the returned map: its lease expires
// and the row is claimed again). Any other error (Postgres unreachable, a timeout)
// is returned as is, with the statuses of the parts already committed; applying a
// result twice is harmless, so the caller may retry the whole batch.
func (s *Store) Complete(ctx context.Context, results []Result, maxAttempts int) (map[uuid.UUID]string, error) {
	final := make(map[uuid.UUID]string, len(results))
	err := s.completeSplit(ctx, results, maxAttempts, final, nil)
	return final, err
}

// CompleteNext is Complete that also claims, in the same transaction, the next row
// of every key a keyed result let go of (DESIGN §5a: the successor of a terminal
// message goes out without waiting for a sweep). The successors are leased for
// lease to one new token and returned; the caller must deliver them or let their
// lease run out. A row is claimed only if it is the head of its key and due (it
// passed the order gate: ordergate.go), as the sweep would claim it.
func (s *Store) CompleteNext(ctx context.Context, results []Result, maxAttempts int, lease time.Duration) (map[uuid.UUID]string, []Claimed, error) {
	final := make(map[uuid.UUID]string, len(results))
	next := &successors{token: uuid.New(), lease: lease}
	err := s.completeSplit(ctx, results, maxAttempts, final, next)
	return final, next.claimed, err
}

// unstorableError is what a result's error text becomes when the row still fails
// with its own text made storable.
const unstorableError = "(the error text of this attempt could not be stored)"

func (s *Store) completeSplit(ctx context.Context, results []Result, maxAttempts int, final map[uuid.UUID]string, next *successors) error {
	err := s.completeOnce(ctx, results, maxAttempts, final, next)
	if err == nil || !IsDataError(err) || len(results) == 0 {
		return err
	}
	if len(results) > 1 {
		half := len(results) / 2
		if err := s.completeSplit(ctx, results[:half], maxAttempts, final, next); err != nil {
			return err
		}
		return s.completeSplit(ctx, results[half:], maxAttempts, final, next)
	}
	r := results[0]
	if r.Error == unstorableError {
		return nil // left out: see Complete
	}
	r.Error = unstorableError
	return s.completeSplit(ctx, []Result{r}, maxAttempts, final, next)
}

// completeOnce writes results in one transaction and adds their final statuses to
// final only once it committed.
func (s *Store) completeOnce(ctx context.Context, results []Result, maxAttempts int, final map[uuid.UUID]string, next *successors) error {
	var (
		dl delivered
		fl failed
		wt waiting
		rj rejected
	)
	for _, r := range results {
		switch r.Kind {
		case Delivered:
			dl.add(r)
		case Failed, Dead:
			fl.add(r)
		case Wait, Release:
			wt.add(r)
		case Rejected:
			rj.add(r)
		}
	}
	// Results are written without waiting for the WAL flush: losing the last few
	// of them to a Postgres crash (not a process crash) only means those rows are
	// claimed again after their lease and delivered once more — at-least-once, the
	// contract's promise — while the commit no longer waits for the disk once per
	// batch. The takeover, which decides the ack, stays fully synchronous.
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SET LOCAL synchronous_commit = off")
	got := make(map[uuid.UUID]string, len(results))
	if len(dl.ids) > 0 {
		b.Queue(deliveredSQL, dl.ids, dl.tokens, dl.at, dl.dur).Query(func(rows pgx.Rows) error {
			return collect(rows, got, StatusDelivered)
		})
	}
	if len(fl.ids) > 0 {
		b.Queue(failedSQL, fl.ids, fl.tokens, fl.at, fl.dur, fl.delay, fl.reason, fl.err, maxAttempts).Query(func(rows pgx.Rows) error {
			return collect(rows, got, "")
		})
	}
	if len(wt.ids) > 0 {
		b.Queue(waitSQL, wt.ids, wt.tokens, wt.delay)
	}
	if len(rj.ids) > 0 {
		b.Queue(rejectedSQL, rj.ids, rj.tokens, rj.reason, rj.err).Query(func(rows pgx.Rows) error {
			return collect(rows, got, StatusRejected)
		})
	}
	queueAgentAware(b, results, got)
	if b.Len() == 2 {
		return nil
	}
	var claimed []Claimed
	if next != nil {
		queueSuccessors(b, results, next, &claimed)
	}
	b.Queue("COMMIT")
	// A failed statement aborts the transaction; pgxpool discards a connection
	// returned mid-transaction, so nothing leaks into the next use.
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("error recording delivery results: %w", err)
	}
	maps.Copy(final, got)
	if next != nil {
		next.claimed = append(next.claimed, claimed...)
	}
	return nil
}

// IsDataError reports whether err is Postgres refusing the data of a statement
// rather than failing to run it: SQLSTATE class 22 (data exception: U+0000 or
// invalid UTF-8 in text, a value out of range) or 23 (integrity constraint
// violation). Retrying the same statement fails again; splitting the batch lets
// the other rows through. Connection and timeout errors are not data errors.
func IsDataError(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	class := pgErr.SQLState()[:2]
	return class == "22" || class == "23"
}

func collect(rows pgx.Rows, into map[uuid.UUID]string, status string) error {
	for rows.Next() {
		var id uuid.UUID
		st := status
		var err error
		if status == "" {
			err = rows.Scan(&id, &st)
		} else {
			err = rows.Scan(&id)
		}
		if err != nil {
			return err
		}
		into[id] = st
	}
	return rows.Err()
}

type delivered struct {
	ids, tokens []uuid.UUID
	at          []time.Time
	dur         []int32
}

func (d *delivered) add(r Result) {
	d.ids, d.tokens = append(d.ids, r.ID), append(d.tokens, r.Token)
	d.at, d.dur = append(d.at, r.At), append(d.dur, ms32(r.Duration))
}

type failed struct {
	delivered
	delay       []int64
	reason, err []string
}

func (f *failed) add(r Result) {
	f.delivered.add(r)
	reason := ""
	if r.Kind == Dead {
		reason = r.Reason
		if reason == "" {
			reason = ReasonMaxAttempts
		}
	}
	f.delay, f.reason, f.err = append(f.delay, r.Delay.Milliseconds()), append(f.reason, reason), append(f.err, truncate(r.Error))
}

type waiting struct {
	ids, tokens []uuid.UUID
	delay       []int64
}

func (w *waiting) add(r Result) {
	delay := r.Delay
	if r.Kind == Release {
		delay = 0
	}
	w.ids, w.tokens, w.delay = append(w.ids, r.ID), append(w.tokens, r.Token), append(w.delay, delay.Milliseconds())
}

type rejected struct {
	ids, tokens []uuid.UUID
	reason, err []string
}

func (j *rejected) add(r Result) {
	j.ids, j.tokens = append(j.ids, r.ID), append(j.tokens, r.Token)
	j.reason, j.err = append(j.reason, r.Reason), append(j.err, truncate(r.Error))
}

func ms32(d time.Duration) int32 {
	ms := d.Milliseconds()
	if ms > 1<<31-1 {
		ms = 1<<31 - 1
	}
	return int32(ms)
}

// maxErrorBytes bounds a stored error text (before the ellipsis).
const maxErrorBytes = 1000

// truncate makes an error text storable and small: outside text (an inbox's error
// body or headers, a NATS error, a CAMS answer) may hold U+0000 or invalid UTF-8,
// and a cut at a byte limit may split a multi-byte character, any of which would
// fail the batched statement carrying it (DESIGN §2). Cut at a rune boundary.
func truncate(s string) string { return pgtext.Clean(s, maxErrorBytes) }

const setRouteSQL = `
WITH held AS (
    UPDATE outbox SET route = false WHERE message_id = $1 AND lease_token = $2 RETURNING message_id
)
UPDATE messages m SET destination_type = $3, destination_name = $4, agent_secrets = $5
FROM held WHERE m.message_id = held.message_id`

// ErrLeaseLost means the claim no longer holds the row.
var ErrLeaseLost = errors.New("outbox lease lost")

// SetRoute stores the destination a fresh lookup found for a replayed message.
func (s *Store) SetRoute(ctx context.Context, id, token uuid.UUID, destType, destName string, agentSecrets bool) error {
	tag, err := s.pool.Exec(ctx, setRouteSQL, id, token, destType, destName, agentSecrets)
	if err != nil {
		return fmt.Errorf("error storing the route of %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrLeaseLost
	}
	return nil
}

// ReleaseAll hands every row held by tokens back, due at once (shutdown).
func (s *Store) ReleaseAll(ctx context.Context, tokens []uuid.UUID) (int64, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE outbox SET due_at = now(), lease_token = NULL WHERE lease_token = ANY($1)`, tokens)
	if err != nil {
		return 0, fmt.Errorf("error releasing outbox rows: %w", err)
	}
	return tag.RowsAffected(), nil
}
