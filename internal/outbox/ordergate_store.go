package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// The order gate's Postgres side (ordergate.go, DESIGN §5a): the claims of the
// gate and of a key's next row, the renewal and hand-back of gated rows' leases,
// and the look for earlier messages of a key.

// successors collects the rows a CompleteNext claimed.
type successors struct {
	token   uuid.UUID
	lease   time.Duration
	claimed []Claimed
}

// successorSQL claims the head of each key named by $1/$2, if it is due (it passed
// the order gate, or was woken by the trigger of migration 0002 when the row that
// led the key left the outbox in this same transaction). Runs after the statements
// that applied the batch's results. A head locked by a claim elsewhere is waited
// for and then re-checked on its latest version (READ COMMITTED): claimed
// meanwhile, it is no longer due.
const successorSQL = `
WITH k AS (
    SELECT DISTINCT addr, key FROM unnest($1::text[], $2::text[]) AS k(addr, key)
), heads AS (
    SELECT h.message_id FROM k CROSS JOIN LATERAL (
        SELECT o.message_id, o.due_at FROM outbox o
        WHERE o.ai_agent_address = k.addr AND o.ordering_key = k.key
        ORDER BY o.order_seq, o.message_id
        LIMIT 1) h
    WHERE h.due_at <= now()
), c AS (
    UPDATE outbox o SET due_at = now() + $3::interval, lease_token = $4, held = false, parked = false
    FROM heads WHERE o.message_id = heads.message_id AND o.due_at <= now()
    RETURNING o.message_id, o.route, o.gate
)
SELECT m.message_id, m.ai_agent_address, coalesce(m.destination_type, ''), coalesce(m.destination_name, ''),
       m.payload, coalesce(m.sender_id, ''), coalesce(m.correlation_id, ''), coalesce(m.sender_message_id, ''),
       coalesce(m.traceparent, ''), m.accepted_at, m.attempts, c.route, m.agent_secrets,
       coalesce(m.ordering_key, ''), m.expires_at, coalesce(m.order_seq, 0), c.gate
FROM c JOIN messages m ON m.message_id = c.message_id`

// queueSuccessors adds successorSQL for the keys of results to a Complete batch.
func queueSuccessors(b *pgx.Batch, results []Result, next *successors, into *[]Claimed) {
	var addrs, keys []string
	for _, r := range results {
		// Wait and Release keep their rows, and so their keys: no successor. (A
		// Release makes its row due at once, and the claim below would take it
		// straight back: at shutdown, round and round until Stop's deadline.)
		if r.OrderingKey != "" && r.Kind != Wait && r.Kind != Release {
			addrs, keys = append(addrs, r.Address), append(keys, r.OrderingKey)
		}
	}
	if len(keys) == 0 {
		return
	}
	b.Queue(successorSQL, addrs, keys, next.lease, next.token).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			c := Claimed{Token: next.token, Swept: true}
			var expires pgtype.Timestamptz
			var seq int64
			if err := rows.Scan(&c.ID, &c.Address, &c.DestType, &c.DestName, &c.Payload, &c.SenderID, &c.CorrelationID,
				&c.SenderMessageID, &c.Traceparent, &c.AcceptedAt, &c.Attempts, &c.Route, &c.AgentSecrets,
				&c.OrderingKey, &expires, &seq, &c.Gate); err != nil {
				return err
			}
			if expires.Valid {
				c.ExpiresAt = expires.Time
			}
			c.OrderSeq = uint64(seq)
			*into = append(*into, c)
		}
		return rows.Err()
	})
}

// claimGatedSQL claims the rows $1 (keyed rows that passed the order gate) that are
// heads of their key, and parks those behind their head, as claimSQL does for due
// rows. Only rows nobody holds and nothing else has moved on (not claimed by the
// sweep after the lease, not parked, not held) are looked at; rows locked by
// another transaction right now are skipped and reported as neither.
const claimGatedSQL = `
WITH due AS (
    SELECT o.message_id,
           EXISTS (
               SELECT 1 FROM outbox p
               WHERE p.ai_agent_address = o.ai_agent_address AND p.ordering_key = o.ordering_key
                 AND p.ordering_key IS NOT NULL
                 AND (p.order_seq, p.message_id) < (o.order_seq, o.message_id)) AS behind
    FROM outbox o
    WHERE o.message_id = ANY($1) AND o.lease_token IS NULL AND NOT o.parked AND NOT o.held
    FOR UPDATE OF o SKIP LOCKED
), claimed AS (
    UPDATE outbox o SET due_at = now() + $2::interval, lease_token = $3, gate = false
    FROM due WHERE o.message_id = due.message_id AND NOT due.behind AND o.lease_token IS NULL
    RETURNING o.message_id
), parked AS (
    UPDATE outbox o SET due_at = now() + $4::interval, parked = true, gate = false
    FROM due WHERE o.message_id = due.message_id AND due.behind AND o.lease_token IS NULL
    RETURNING o.message_id
)
SELECT message_id, false FROM claimed
UNION ALL
SELECT message_id, true FROM parked`

// claimGated claims, for lease to a new token, those of ids that are heads of their
// key, parks the others that wait behind their head, and returns the token, the
// claimed ids and the ids it looked at (claimed or parked). An id not looked at is
// locked elsewhere, gone, or already moved on.
func (s *Store) claimGated(ctx context.Context, ids []uuid.UUID, lease time.Duration) (uuid.UUID, map[uuid.UUID]bool, map[uuid.UUID]bool, []uuid.UUID, error) {
	token := uuid.New()
	rows, err := s.pool.Query(ctx, claimGatedSQL, ids, lease, token, parkFor)
	if err != nil {
		return token, nil, nil, nil, fmt.Errorf("error claiming keyed rows: %w", err)
	}
	claimed, looked := map[uuid.UUID]bool{}, map[uuid.UUID]bool{}
	var parked []uuid.UUID
	for rows.Next() {
		var id uuid.UUID
		var isParked bool
		if err := rows.Scan(&id, &isParked); err != nil {
			rows.Close()
			return token, nil, nil, nil, fmt.Errorf("error claiming keyed rows: %w", err)
		}
		looked[id] = true
		if isParked {
			parked = append(parked, id)
		} else {
			claimed[id] = true
		}
	}
	if err := rows.Err(); err != nil {
		return token, nil, nil, nil, fmt.Errorf("error claiming keyed rows: %w", err)
	}
	if len(parked) > 0 {
		if _, err := s.unparkHeads(ctx, parked); err != nil {
			return token, claimed, looked, parked, err
		}
	}
	return token, claimed, looked, parked, nil
}

// renewGatedSQL renews the lease of gated rows ($1) the gate still holds: rows
// nobody claimed, parked or held meanwhile, and not due yet (a row already due may
// be on its way to another replica's sweep; the gate lets go of it).
const renewGatedSQL = `
UPDATE outbox SET due_at = now() + $2::interval
WHERE message_id = ANY($1) AND lease_token IS NULL AND NOT parked AND NOT held AND due_at > now()
RETURNING message_id`

// renewGated renews, for lease from now on the database clock, the rows of ids
// still waiting at a gate (renewGatedSQL), and reports which it renewed.
func (s *Store) renewGated(ctx context.Context, ids []uuid.UUID, lease time.Duration) (map[uuid.UUID]bool, error) {
	renewed, err := s.queryIDs(ctx, "renewing gated rows", renewGatedSQL, ids, lease)
	if err != nil {
		return nil, err
	}
	out := make(map[uuid.UUID]bool, len(renewed))
	for _, id := range renewed {
		out[id] = true
	}
	return out, nil
}

// releaseToGateSQL gives up the leases ($2) of rows ($1) claimed by the sweep or as
// successors, so the order gate claims them when they pass (claimGatedSQL): not
// leased, they come due after $3 should this process die meanwhile.
const releaseToGateSQL = `
UPDATE outbox o SET lease_token = NULL, due_at = now() + $3::interval
FROM unnest($1::uuid[], $2::uuid[]) AS r(id, token)
WHERE o.message_id = r.id AND o.lease_token = r.token
RETURNING o.message_id`

// releaseToGate gives up the leases tokens[i] of rows ids[i] (releaseToGateSQL)
// and returns the rows it released; a row whose lease passed to another claim
// meanwhile is not.
func (s *Store) releaseToGate(ctx context.Context, ids, tokens []uuid.UUID, lease time.Duration) ([]uuid.UUID, error) {
	return s.queryIDs(ctx, "releasing keyed rows to the order gate", releaseToGateSQL, ids, tokens, lease)
}

// takenOverSQL returns those of the stream sequences $3 at which a message of
// (address $1, key $2) is recorded (DESIGN §5a: its place in the key is then known
// to the head rule). One probe of messages_key_seq_idx (migration 0004) each.
const takenOverSQL = `
SELECT u.seq FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(addr, key, seq)
WHERE EXISTS (SELECT 1 FROM messages m
              WHERE m.ai_agent_address = u.addr AND m.ordering_key = u.key AND m.order_seq = u.seq)`

// takenOver reports which of seqs[i] (messages of addrs[i], keys[i]) are recorded.
func (s *Store) takenOver(ctx context.Context, addrs, keys []string, seqs []int64) (map[int64]bool, error) {
	rows, err := s.pool.Query(ctx, takenOverSQL, addrs, keys, seqs)
	if err != nil {
		return nil, fmt.Errorf("error looking for earlier messages of keys: %w", err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("error looking for earlier messages of keys: %w", err)
	}
	in := make(map[int64]bool, len(found))
	for _, seq := range found {
		in[seq] = true
	}
	return in, nil
}
