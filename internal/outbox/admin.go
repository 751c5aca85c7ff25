package outbox

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// ErrNotFound means no message has that id.
var ErrNotFound = errors.New("message not found")

// ErrNotReplayable means the message is not REJECTED or DEAD_LETTERED.
var ErrNotReplayable = errors.New("message is not REJECTED or DEAD_LETTERED")

// Attempt is one delivery attempt of a message's history.
type Attempt struct {
	Attempt    int       `json:"attempt"`
	At         time.Time `json:"at"`
	Outcome    string    `json:"outcome"`
	Error      *string   `json:"error"`
	DurationMs int       `json:"durationMs"`
}

// Destination is where a message is routed.
type Destination struct {
	Type string `json:"type"`
	Name string `json:"name"`
}

// View is a message as the admin API shows it.
type View struct {
	MessageID      uuid.UUID    `json:"messageId"`
	AIAgentAddress string       `json:"aiAgentAddress"`
	Status         string       `json:"status"`
	Reason         *string      `json:"reason"`
	Destination    *Destination `json:"destination"`
	Attempts       int          `json:"attempts"`
	LastError      *string      `json:"lastError"`
	ReceivedAt     time.Time    `json:"receivedAt"`
	AcceptedAt     time.Time    `json:"timestampPublished"`
	DeliveredAt    *time.Time   `json:"deliveredAt"`
	FinishedAt     *time.Time   `json:"finishedAt,omitempty"`
	SenderID       *string      `json:"senderId,omitempty"`
	CorrelationID  *string      `json:"correlationId,omitempty"`
	SenderMsgID    *string      `json:"senderProvidedMessageId,omitempty"`
	OrderingKey    *string      `json:"orderingKey,omitempty"` // DESIGN §5a, §6
	ExpiresAt      *time.Time   `json:"expiresAt,omitempty"`   // DESIGN §5a, §6
	History        []Attempt    `json:"history,omitempty"`
	RawBase64      *string      `json:"rawMessageBase64,omitempty"`
	receivedCursor time.Time
}

const viewColumns = `m.message_id, m.ai_agent_address, m.status, m.reason, m.destination_type, m.destination_name,
    m.attempts, m.last_error, m.received_at, m.accepted_at, m.delivered_at, m.finished_at, m.sender_id,
    m.correlation_id, m.sender_message_id, m.ordering_key, m.expires_at`

func scanView(row pgx.Row, raw *[]byte) (View, error) {
	var v View
	var dtype, dname *string
	dest := []any{&v.MessageID, &v.AIAgentAddress, &v.Status, &v.Reason, &dtype, &dname, &v.Attempts, &v.LastError,
		&v.ReceivedAt, &v.AcceptedAt, &v.DeliveredAt, &v.FinishedAt, &v.SenderID, &v.CorrelationID, &v.SenderMsgID,
		&v.OrderingKey, &v.ExpiresAt}
	if raw != nil {
		dest = append(dest, raw)
	}
	if err := row.Scan(dest...); err != nil {
		return v, err
	}
	if dtype != nil && dname != nil {
		v.Destination = &Destination{Type: *dtype, Name: *dname}
	}
	v.receivedCursor = v.ReceivedAt
	v.ReceivedAt = v.ReceivedAt.UTC()
	v.AcceptedAt = v.AcceptedAt.UTC()
	for _, t := range []*time.Time{v.DeliveredAt, v.FinishedAt, v.ExpiresAt} {
		if t != nil {
			*t = t.UTC()
		}
	}
	return v, nil
}

// Get returns a message with its full attempt history.
func (s *Store) Get(ctx context.Context, id uuid.UUID) (View, error) {
	var raw []byte
	v, err := scanView(s.pool.QueryRow(ctx, "SELECT "+viewColumns+", m.raw FROM messages m WHERE m.message_id = $1", id), &raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return v, ErrNotFound
	}
	if err != nil {
		return v, fmt.Errorf("error reading message %s: %w", id, err)
	}
	if raw != nil {
		enc := base64.StdEncoding.EncodeToString(raw)
		v.RawBase64 = &enc
	}
	rows, err := s.pool.Query(ctx, `SELECT attempt, at, outcome, error, duration_ms FROM delivery_attempts
		WHERE message_id = $1 ORDER BY at, attempt`, id)
	if err != nil {
		return v, fmt.Errorf("error reading the history of %s: %w", id, err)
	}
	v.History, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Attempt, error) {
		var a Attempt
		err := r.Scan(&a.Attempt, &a.At, &a.Outcome, &a.Error, &a.DurationMs)
		a.At = a.At.UTC()
		return a, err
	})
	if err != nil {
		return v, fmt.Errorf("error reading the history of %s: %w", id, err)
	}
	if v.History == nil {
		v.History = []Attempt{}
	}
	return v, nil
}

// Filter selects messages for List and bulk replay.
type Filter struct {
	Status  string // "" = any
	Address string // "" = any
	// OrderingKey selects messages with that senderMetadata.orderingKey; "" = any
	// (DESIGN §5a).
	OrderingKey string
	Reason      string // bulk replay only
	Since       time.Time
	Until       time.Time // bulk replay: failed before this (database clock)
	Limit       int
	Cursor      string
}

// ErrBadCursor means a cursor did not come from List.
var ErrBadCursor = errors.New("invalid cursor")

func encodeCursor(t time.Time, id uuid.UUID) string {
	b := make([]byte, 8, 24)
	binary.BigEndian.PutUint64(b, uint64(t.UnixMicro()))
	b = append(b, id[:]...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(c string) (time.Time, uuid.UUID, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) != 24 {
		return time.Time{}, uuid.UUID{}, ErrBadCursor
	}
	id, _ := uuid.FromBytes(b[8:])
	return time.UnixMicro(int64(binary.BigEndian.Uint64(b))), id, nil
}

// List returns messages newest first, and the cursor of the next page ("" on the
// last page).
func (s *Store) List(ctx context.Context, f Filter) ([]View, string, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	var where []string
	var args []any
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	from := "messages m"
	switch f.Status {
	case "":
	case StatusPending:
		// The outbox holds exactly the pending messages.
		from = "messages m JOIN outbox o ON o.message_id = m.message_id"
		where = append(where, "m.status = 'PENDING'")
	default:
		where = append(where, "m.status = "+arg(f.Status))
	}
	if f.Address != "" {
		where = append(where, "m.ai_agent_address = "+arg(f.Address))
	}
	if f.OrderingKey != "" {
		where = append(where, "m.ordering_key = "+arg(f.OrderingKey))
	}
	if f.Cursor != "" {
		t, id, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		where = append(where, fmt.Sprintf("(m.received_at, m.message_id) < (%s, %s)", arg(t), arg(id)))
	}
	q := "SELECT " + viewColumns + " FROM " + from
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY m.received_at DESC, m.message_id DESC LIMIT " + arg(f.Limit+1)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("error listing messages: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (View, error) { return scanView(r, nil) })
	if err != nil {
		return nil, "", fmt.Errorf("error listing messages: %w", err)
	}
	next := ""
	if len(items) > f.Limit {
		items = items[:f.Limit]
		last := items[len(items)-1]
		next = encodeCursor(last.receivedCursor, last.MessageID)
	}
	return items, next, nil
}

// replaySQL moves failed messages back to PENDING with an outbox row that asks for a
// fresh CAMS lookup. Candidates come from failures (not messages.status), which keeps
// the scan cheap; but the candidates are a snapshot, so the statement that changes a
// message re-checks every condition on the message row itself (issue 8, item 3): a
// message replayed, delivered, re-failed or purged since the snapshot is left alone.
// In READ COMMITTED an UPDATE that meets a row changed by a transaction that
// committed after its snapshot re-evaluates its WHERE clause on the new version
// (PostgreSQL docs, "Transaction Isolation", 13.2.1), so the re-check sees the
// latest state. messages.finished_at equals failures.failed_at (both are now() of
// the transaction that failed the message).
//
// Lock order is messages, then failures, then outbox: the same as Purge
// (messages, failures), so a replay and a purge never deadlock. The failures row
// goes only with the message that was really moved back to PENDING.
//
// An expired message is never replayed (DESIGN §5a). A keyed message goes to the
// back of its key: after every pending message of the key, in its old order among
// the messages replayed together (DESIGN §5a).
const replaySQL = `
WITH picked AS (
    SELECT message_id FROM failures
    WHERE ($1::uuid IS NULL OR message_id = $1)
      AND ($2::text = '' OR status = $2)
      AND ($3::text = '' OR ai_agent_address = $3)
      AND ($4::text = '' OR reason = $4)
      AND ($5::timestamptz IS NULL OR failed_at >= $5)
      AND ($7::timestamptz IS NULL OR failed_at < $7)
      AND NOT EXISTS (SELECT 1 FROM messages x WHERE x.message_id = failures.message_id AND x.expires_at <= now())
    ORDER BY failed_at
    LIMIT $6
), m AS (
    UPDATE messages SET status = 'PENDING', reason = NULL, attempts = 0, last_error = NULL,
           finished_at = NULL, delivered_at = NULL
    FROM picked
    WHERE messages.message_id = picked.message_id
      AND messages.status IN ('REJECTED', 'DEAD_LETTERED')
      AND ($2::text = '' OR messages.status = $2)
      AND ($3::text = '' OR messages.ai_agent_address = $3)
      AND ($4::text = '' OR messages.reason = $4)
      AND ($5::timestamptz IS NULL OR messages.finished_at >= $5)
      AND ($7::timestamptz IS NULL OR messages.finished_at < $7)
      AND (messages.expires_at IS NULL OR messages.expires_at > now())
    RETURNING messages.message_id, messages.ai_agent_address, messages.ordering_key, messages.order_seq, messages.expires_at
), f AS (
    DELETE FROM failures USING m WHERE failures.message_id = m.message_id
), ob AS (
    INSERT INTO outbox (message_id, due_at, route, ai_agent_address, ordering_key, order_seq, expires_at)
    SELECT m.message_id, now(), true, m.ai_agent_address, m.ordering_key,
           CASE WHEN m.ordering_key IS NOT NULL THEN
               greatest(coalesce((SELECT max(o.order_seq) FROM outbox o
                                  WHERE o.ai_agent_address = m.ai_agent_address AND o.ordering_key = m.ordering_key), 0),
                        coalesce(m.order_seq, 0))
               + row_number() OVER (PARTITION BY m.ai_agent_address, m.ordering_key ORDER BY m.order_seq, m.message_id)
           END,
           m.expires_at
    FROM m
    ON CONFLICT (message_id) DO NOTHING
)
SELECT (SELECT count(*) FROM picked), (SELECT count(*) FROM m)`

// Replay routes a REJECTED or DEAD_LETTERED message afresh: PENDING, attempts reset,
// same messageId, fresh CAMS lookup before its next delivery.
func (s *Store) Replay(ctx context.Context, id uuid.UUID) error {
	_, n, err := s.replay(ctx, &id, Filter{}, 1)
	if err != nil {
		return err
	}
	if n == 1 {
		return nil
	}
	var status string
	err = s.pool.QueryRow(ctx, "SELECT status FROM messages WHERE message_id = $1", id).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("error reading message %s: %w", id, err)
	}
	var expired bool
	if err := s.pool.QueryRow(ctx, "SELECT coalesce(expires_at <= now(), false) FROM messages WHERE message_id = $1", id).Scan(&expired); err == nil && expired {
		return fmt.Errorf("%w: it expired (senderMetadata.expiresAt has passed)", ErrNotReplayable)
	}
	return fmt.Errorf("%w: it is %s", ErrNotReplayable, status)
}

// ReplayMatching replays every failed message matching f, in batches, and returns
// how many it replayed. Only messages that failed before the call are replayed, so
// one that fails again while the replay runs is not replayed twice.
func (s *Store) ReplayMatching(ctx context.Context, f Filter) (int, error) {
	var started time.Time
	if err := s.pool.QueryRow(ctx, "SELECT now()").Scan(&started); err != nil {
		return 0, fmt.Errorf("error replaying messages: %w", err)
	}
	f.Until = started
	total := 0
	for {
		// Stop when nothing was picked, not when nothing was replayed: a batch
		// whose candidates were all replayed meanwhile by someone else replays 0.
		picked, n, err := s.replay(ctx, nil, f, 2000)
		total += n
		if err != nil || picked == 0 {
			return total, err
		}
	}
}

// replay runs replaySQL once: how many candidates it picked, how many it replayed.
func (s *Store) replay(ctx context.Context, id *uuid.UUID, f Filter, limit int) (picked, replayed int, err error) {
	var since, until *time.Time
	if !f.Since.IsZero() {
		since = &f.Since
	}
	if !f.Until.IsZero() {
		until = &f.Until
	}
	err = s.pool.QueryRow(ctx, replaySQL, id, f.Status, f.Address, f.Reason, since, limit, until).Scan(&picked, &replayed)
	if err != nil {
		return 0, 0, fmt.Errorf("error replaying messages: %w", err)
	}
	return picked, replayed, nil
}

// purgeSQL deletes up to $2 messages that finished before $1, with their history
// and failure rows. The candidates are a snapshot; the DELETE re-checks on the
// message row itself that it is still finished, and finished before the cutoff, so
// a message replayed (PENDING again, with an outbox row) or finished anew since the
// snapshot is kept (issue 8, item 3: purge racing with replay left a 404 and an
// orphan outbox row). READ COMMITTED re-evaluates the DELETE's WHERE clause on the
// latest committed version of a row changed after the snapshot (PostgreSQL docs,
// 13.2.1). History and failure rows go only with the messages really deleted. Lock
// order: messages, then failures (as replaySQL). The received_at bound lets the
// scan use its index: a message finishes after it is received.
const purgeSQL = `
WITH old AS (
    SELECT message_id FROM messages
    WHERE received_at < $1 AND finished_at < $1 AND status <> 'PENDING'
    ORDER BY received_at LIMIT $2
), gone AS (
    DELETE FROM messages m USING old
    WHERE m.message_id = old.message_id
      AND m.status IN ('DELIVERED', 'REJECTED', 'DEAD_LETTERED') AND m.finished_at < $1
    RETURNING m.message_id
), h AS (
    DELETE FROM delivery_attempts d USING gone WHERE d.message_id = gone.message_id
), f AS (
    DELETE FROM failures f USING gone WHERE f.message_id = gone.message_id
)
SELECT (SELECT count(*) FROM old), (SELECT count(*) FROM gone)`

// Purge deletes up to limit finished messages (and their history) that finished
// before cutoff, and returns how many it deleted. A message that changed state
// since it was picked (replayed, finished again) is kept.
func (s *Store) Purge(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	_, n, err := s.purge(ctx, cutoff, limit)
	return n, err
}

// purge runs purgeSQL once: how many candidates it picked, how many it deleted.
func (s *Store) purge(ctx context.Context, cutoff time.Time, limit int) (picked, deleted int, err error) {
	if err := s.pool.QueryRow(ctx, purgeSQL, cutoff, limit).Scan(&picked, &deleted); err != nil {
		return 0, 0, fmt.Errorf("error purging old messages: %w", err)
	}
	return picked, deleted, nil
}

// Stats are the outbox gauges.
type Stats struct {
	Pending      int64
	OldestDueAge time.Duration // how late the most overdue row is; 0 when none is due
	DeadLettered int64
	Rejected     int64
}

// Stats reads the outbox gauges.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	var ageSec float64
	err := s.pool.QueryRow(ctx, `SELECT
        (SELECT count(*) FROM outbox),
        coalesce(extract(epoch FROM now() - (SELECT min(due_at) FROM outbox WHERE due_at <= now())), 0),
        (SELECT count(*) FROM failures WHERE status = 'DEAD_LETTERED'),
        (SELECT count(*) FROM failures WHERE status = 'REJECTED')`).Scan(&st.Pending, &ageSec, &st.DeadLettered, &st.Rejected)
	if err != nil {
		return st, fmt.Errorf("error reading outbox stats: %w", err)
	}
	st.OldestDueAge = time.Duration(ageSec * float64(time.Second))
	return st, nil
}
