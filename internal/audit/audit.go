// Package audit reconciles what JetStream accepted with what the router recorded
// (DESIGN §8.1 checked from outside, §10 `routerctl audit`): every message of the
// ROUTER_MESSAGES stream since a point in time must have a record in Postgres once
// a grace period has passed, and no record should stay PENDING too long.
//
// It reads the stream with an ordered, ephemeral consumer (AckNone, deleted when
// the read ends): the router's durable consumer "router" is never touched, so an
// audit cannot ack, delay or redeliver anything. It reads the durable consumer's
// info only, to tell a message the router still owes (above its ack floor) from one
// it acked.
//
// Memory is bounded whatever the stream holds: messages are read in chunks
// (Config.ChunkSize ids, 10,000 by default); each chunk's messageIds are derived
// exactly as the router derives them (message.DirectID with message.StoredIdentity) and
// checked against Postgres with one `WHERE message_id = ANY($1)` query; only counts
// and at most Config.MaxListed ids per category are kept.
package audit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/msgrouter/msgrouter/internal/message"
	"github.com/msgrouter/msgrouter/internal/stream"
)

// Defaults of Config (DESIGN §10: `routerctl audit [--since 1h]`).
const (
	DefaultSince            = time.Hour
	DefaultGrace            = time.Minute
	DefaultPendingThreshold = 5 * time.Minute
	DefaultChunkSize        = 10_000
	DefaultMaxListed        = 1_000
)

// Config is one audit.
type Config struct {
	// Since is how far back the stream is read (by JetStream storage time).
	// Defaults to 1h.
	Since time.Duration
	// Grace is how long a stream message may go unrecorded before it counts as
	// missing: the takeover normally takes milliseconds, but a batch in flight or
	// a short CAMS outage holds messages back for a while. Zero means none; the
	// CLI and the router pass DefaultGrace (1m) unless told otherwise.
	Grace time.Duration
	// PendingThreshold: a record PENDING for longer than this since acceptance is
	// reported as stuck (held messages, reason AGENT_INACTIVE, are counted apart:
	// DESIGN §5a lets them wait up to HOLD_MAX_AGE). Defaults to 5m.
	PendingThreshold time.Duration
	// ChunkSize is how many stream messages are checked per Postgres query; it
	// bounds the audit's memory. Defaults to 10,000.
	ChunkSize int
	// MaxListed caps the ids listed per category (counts stay exact). Defaults to
	// 1,000.
	MaxListed int
	// IdleTimeout ends the stream read when no message arrives for this long
	// before the last sequence is reached (messages removed meanwhile by the
	// stream's limits). Defaults to 5s.
	IdleTimeout time.Duration
	// Now is the clock (tests). Defaults to time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	c.Since = cmp.Or(c.Since, DefaultSince)
	c.PendingThreshold = cmp.Or(c.PendingThreshold, DefaultPendingThreshold)
	c.ChunkSize = cmp.Or(c.ChunkSize, DefaultChunkSize)
	c.MaxListed = cmp.Or(c.MaxListed, DefaultMaxListed)
	c.IdleTimeout = cmp.Or(c.IdleTimeout, 5*time.Second)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Missing is a stream message Postgres does not know after the grace period.
type Missing struct {
	MessageID  uuid.UUID `json:"messageId"`
	Sequence   uint64    `json:"sequence"`
	Subject    string    `json:"subject"`
	AcceptedAt time.Time `json:"acceptedAt"`
	// Acked is true when the router's durable consumer had acked the message (its
	// ack floor was past it) before Postgres was asked: the router let go of a
	// message it never recorded. False: the router still owes it (not taken over
	// yet, e.g. while CAMS is down) or the ack floor was not known.
	Acked bool `json:"acked"`
}

// Stuck is a record PENDING longer than the threshold.
type Stuck struct {
	MessageID      uuid.UUID `json:"messageId"`
	AIAgentAddress string    `json:"aiAgentAddress"`
	Reason         string    `json:"reason,omitempty"`
	Attempts       int       `json:"attempts"`
	AcceptedAt     time.Time `json:"acceptedAt"`
}

// Report is the outcome of one audit. Counts are exact; the id lists hold at most
// Config.MaxListed entries each (Truncated says when more were found).
type Report struct {
	StartedAt        time.Time `json:"startedAt"`
	FinishedAt       time.Time `json:"finishedAt"`
	Since            time.Time `json:"since"`
	Grace            string    `json:"grace"`
	PendingThreshold string    `json:"pendingThreshold"`
	Stream           string    `json:"stream"`
	// FirstSequence and LastSequence bound what was read (0 when nothing was).
	FirstSequence uint64 `json:"firstSequence"`
	LastSequence  uint64 `json:"lastSequence"`
	// StreamMessages counts the stream messages read.
	StreamMessages int64 `json:"streamMessages"`
	// ByStatus counts the read stream messages whose record exists, by the
	// record's status (a message published twice under one id counts twice).
	ByStatus map[string]int64 `json:"byStatus"`
	// InGrace counts stream messages without a record yet, younger than Grace.
	InGrace int64 `json:"inGrace"`
	// Missing counts stream messages without a record after Grace; MissingAcked
	// those of them the router's consumer had already acked (lost for sure).
	Missing      int64     `json:"missing"`
	MissingAcked int64     `json:"missingAcked"`
	MissingIDs   []Missing `json:"missingMessages"`
	// StuckPending counts records PENDING longer than the threshold (all of
	// Postgres, not only the window: a message stuck since yesterday matters).
	StuckPending int64   `json:"stuckPending"`
	StuckIDs     []Stuck `json:"stuckPendingMessages"`
	// Held counts PENDING records waiting for an INACTIVE agent (reason
	// AGENT_INACTIVE, DESIGN §5a) longer than the threshold; not stuck.
	Held int64 `json:"held"`
	// Truncated is true when an id list was cut at MaxListed.
	Truncated bool `json:"truncated"`
}

// OK is true when nothing accepted is unaccounted for: no missing message. (Stuck
// PENDING messages are reported but are not a loss: DESIGN §10 exits 1 only when
// something is missing.)
func (r *Report) OK() bool { return r.Missing == 0 }

// Queries. message_id is the primary key, so each chunk is one index probe per id;
// the outbox holds exactly the PENDING messages (migrations/router/0001), so the
// stuck query never scans the whole messages table.
const (
	knownQuery = `SELECT message_id, status FROM messages WHERE message_id = ANY($1)`
	stuckQuery = `
SELECT m.message_id, m.ai_agent_address, coalesce(m.reason, ''), m.attempts, m.accepted_at
FROM outbox o JOIN messages m USING (message_id)
WHERE m.status = 'PENDING' AND m.accepted_at < $1
ORDER BY m.accepted_at`
)

// Run audits the stream against the records. It fails (no report) when the
// stream cannot be read or Postgres cannot answer; a report with Missing > 0 is a
// successful audit that found a gap.
func Run(ctx context.Context, js jetstream.JetStream, db *pgxpool.Pool, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	now := cfg.Now()
	r := &Report{
		StartedAt: now, Since: now.Add(-cfg.Since), Grace: cfg.Grace.String(),
		PendingThreshold: cfg.PendingThreshold.String(), Stream: stream.Name, ByStatus: map[string]int64{},
	}
	if err := scanStream(ctx, js, db, cfg, r); err != nil {
		return nil, err
	}
	if err := findStuck(ctx, db, cfg, r); err != nil {
		return nil, err
	}
	r.FinishedAt = cfg.Now()
	return r, nil
}

type pending struct {
	id      uuid.UUID
	seq     uint64
	subject string
	at      time.Time
}

func scanStream(ctx context.Context, js jetstream.JetStream, db *pgxpool.Pool, cfg Config, r *Report) error {
	st, err := js.Stream(ctx, stream.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil // nothing was ever accepted (or the stream is gone: the report says 0 read)
	}
	if err != nil {
		return fmt.Errorf("error reading stream %s: %w", stream.Name, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("error reading stream %s: %w", stream.Name, err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 || last == 0 {
		return nil
	}
	// The durable consumer's ack floor, read before each chunk's Postgres query:
	// the router acks only after its commit, so a message at or below a floor read
	// before the query, and absent from the answer, was acked without a record.
	durable, derr := st.Consumer(ctx, stream.ConsumerName)
	ackFloor := func() uint64 {
		if derr != nil {
			return 0
		}
		ci, err := durable.Info(ctx)
		if err != nil {
			return 0
		}
		return ci.AckFloor.Stream
	}

	start := r.Since
	if m, err := st.GetMsg(ctx, last); err == nil && m.Time.Before(start) {
		return nil // nothing accepted inside the window: no need to wait for an empty read
	}
	oc, err := js.OrderedConsumer(ctx, stream.Name, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &start,
		// A name of its own per audit (several audits may overlap: routerctl and the
		// router's schedule), so they never update each other's consumer.
		InactiveThreshold: time.Minute, NamePrefix: "msgrouter-audit-" + uuid.NewString()[:8],
	})
	if err != nil {
		return fmt.Errorf("error creating the audit's ordered consumer on %s: %w", stream.Name, err)
	}
	it, err := oc.Messages(jetstream.PullMaxMessages(min(cfg.ChunkSize, 1000)))
	if err != nil {
		return fmt.Errorf("error reading stream %s: %w", stream.Name, err)
	}
	defer func() {
		it.Stop()
		// Gone at once rather than after InactiveThreshold (best effort).
		if ci := oc.CachedInfo(); ci != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = js.DeleteConsumer(dctx, stream.Name, ci.Name)
			cancel()
		}
	}()

	chunk := make([]pending, 0, cfg.ChunkSize)
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		err := checkChunk(ctx, db, cfg, r, chunk, ackFloor())
		chunk = chunk[:0]
		return err
	}
	for {
		msg, err := it.Next(jetstream.NextMaxWait(cfg.IdleTimeout))
		if errors.Is(err, nats.ErrTimeout) {
			break // the rest of the range was removed by the stream's limits meanwhile
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("error reading stream %s: %w", stream.Name, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			continue
		}
		seq := meta.Sequence.Stream
		if seq > last {
			break // accepted after the audit started
		}
		if r.FirstSequence == 0 {
			r.FirstSequence = seq
		}
		r.LastSequence = seq
		r.StreamMessages++
		chunk = append(chunk, pending{id: messageID(msg, message.StoredIdentity(meta.Stream, meta.Timestamp), seq), seq: seq, subject: msg.Subject(), at: meta.Timestamp})
		if len(chunk) == cfg.ChunkSize {
			if err := flush(); err != nil {
				return err
			}
		}
		if seq == last {
			break
		}
	}
	return flush()
}

// messageID derives a stream message's id the way the router's takeover does
// (internal/router/takeover.go: message.Parse, then message.DirectID with the
// message's StoredIdentity, which every replica and the audit read from the
// message's own metadata). The body is parsed only when the id can depend on it.
func messageID(msg jetstream.Msg, identity string, seq uint64) uuid.UUID {
	hdr := msg.Headers().Get(jetstream.MsgIDHeader)
	var env *message.Envelope
	if hdr == "" {
		env, _ = message.Parse(msg.Data())
	}
	return message.DirectID(hdr, env, identity, seq)
}

func checkChunk(ctx context.Context, db *pgxpool.Pool, cfg Config, r *Report, chunk []pending, ackFloor uint64) error {
	ids := make([]uuid.UUID, len(chunk))
	for i, p := range chunk {
		ids[i] = p.id
	}
	rows, err := db.Query(ctx, knownQuery, ids)
	if err != nil {
		return fmt.Errorf("error looking records up: %w", err)
	}
	known := make(map[uuid.UUID]string, len(chunk))
	for rows.Next() {
		var id uuid.UUID
		var status string
		if err := rows.Scan(&id, &status); err != nil {
			rows.Close()
			return fmt.Errorf("error looking records up: %w", err)
		}
		known[id] = status
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("error looking records up: %w", err)
	}
	graceEnd := cfg.Now().Add(-cfg.Grace)
	for _, p := range chunk {
		if status, ok := known[p.id]; ok {
			r.ByStatus[status]++
			continue
		}
		if p.at.After(graceEnd) {
			r.InGrace++
			continue
		}
		r.Missing++
		acked := p.seq <= ackFloor
		if acked {
			r.MissingAcked++
		}
		if len(r.MissingIDs) < cfg.MaxListed {
			r.MissingIDs = append(r.MissingIDs, Missing{MessageID: p.id, Sequence: p.seq, Subject: p.subject, AcceptedAt: p.at.UTC(), Acked: acked})
		} else {
			r.Truncated = true
		}
	}
	return nil
}

func findStuck(ctx context.Context, db *pgxpool.Pool, cfg Config, r *Report) error {
	rows, err := db.Query(ctx, stuckQuery, cfg.Now().Add(-cfg.PendingThreshold))
	if err != nil {
		return fmt.Errorf("error looking for stuck PENDING records: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var s Stuck
		if err := rows.Scan(&s.MessageID, &s.AIAgentAddress, &s.Reason, &s.Attempts, &s.AcceptedAt); err != nil {
			return fmt.Errorf("error looking for stuck PENDING records: %w", err)
		}
		if s.Reason == "AGENT_INACTIVE" {
			r.Held++
			continue
		}
		r.StuckPending++
		if len(r.StuckIDs) < cfg.MaxListed {
			s.AcceptedAt = s.AcceptedAt.UTC()
			r.StuckIDs = append(r.StuckIDs, s)
		} else {
			r.Truncated = true
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("error looking for stuck PENDING records: %w", err)
	}
	return nil
}
