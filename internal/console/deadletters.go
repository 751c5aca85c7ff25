package console

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/msgrouter/msgrouter/internal/httpapi"
)

// deadLetters lists failed messages (REJECTED and DEAD_LETTERED, not replayed) with
// the filters of POST /v1/dead-letters/replay (DESIGN §6), so the console shows
// exactly what a bulk replay with the same filter would replay, and how many.
type deadLetters struct {
	pool *pgxpool.Pool
}

// DeadLetter is one item of GET /v1/dead-letters.
type DeadLetter struct {
	MessageID      uuid.UUID `json:"messageId"`
	AIAgentAddress string    `json:"aiAgentAddress"`
	Status         string    `json:"status"`
	Reason         string    `json:"reason"`
	FailedAt       time.Time `json:"failedAt"`
	Attempts       int       `json:"attempts"`
	LastError      *string   `json:"lastError"`
	ReceivedAt     time.Time `json:"receivedAt"`
}

// DeadLetterPage is the body of GET /v1/dead-letters. Count is how many failed
// messages match the filter in all (at most CountLimit): what a bulk replay with
// the same filter would replay now.
type DeadLetterPage struct {
	Items      []DeadLetter `json:"items"`
	NextCursor *string      `json:"nextCursor"`
	Count      int64        `json:"count"`
	CountLimit int64        `json:"countLimit"`
}

type dlFilter struct {
	status, address, reason string
	since                   *time.Time
	limit                   int
	cursorAt                *time.Time
	cursorID                uuid.UUID
}

const dlWhere = `($1::text = '' OR f.status = $1)
      AND ($2::text = '' OR f.ai_agent_address = $2)
      AND ($3::text = '' OR f.reason = $3)
      AND ($4::timestamptz IS NULL OR f.failed_at >= $4)`

func parseDLFilter(r *http.Request) (dlFilter, error) {
	q := r.URL.Query()
	f := dlFilter{status: q.Get("status"), address: q.Get("aiAgentAddress"), reason: q.Get("reason"), limit: 50}
	switch f.status {
	case "", "DEAD_LETTERED", "REJECTED":
	default:
		return f, errors.New("status must be DEAD_LETTERED or REJECTED (or absent for both)")
	}
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return f, errors.New("since must be an RFC 3339 time like 2026-11-28T15:04:05Z")
		}
		f.since = &t
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 500 {
			return f, errors.New("limit must be a whole number from 1 to 500")
		}
		f.limit = n
	}
	if c := q.Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil || len(b) != 24 {
			return f, errBadCursor
		}
		t := time.UnixMicro(int64(binary.BigEndian.Uint64(b)))
		f.cursorAt = &t
		f.cursorID, _ = uuid.FromBytes(b[8:])
	}
	return f, nil
}

func dlCursor(t time.Time, id uuid.UUID) string {
	b := make([]byte, 8, 24)
	binary.BigEndian.PutUint64(b, uint64(t.UnixMicro()))
	return base64.RawURLEncoding.EncodeToString(append(b, id[:]...))
}

func (d *deadLetters) read(ctx context.Context, f dlFilter) (DeadLetterPage, error) {
	p := DeadLetterPage{Items: []DeadLetter{}, CountLimit: CountLimit}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	args := []any{f.status, f.address, f.reason, f.since, f.limit + 1}
	q := `SELECT f.message_id, f.ai_agent_address, f.status, f.reason, f.failed_at, m.attempts, m.last_error, m.received_at
    FROM failures f JOIN messages m ON m.message_id = f.message_id
    WHERE ` + dlWhere
	if f.cursorAt != nil {
		args = append(args, *f.cursorAt, f.cursorID)
		q += ` AND (f.failed_at, f.message_id) < ($6, $7)`
	}
	q += ` ORDER BY f.failed_at DESC, f.message_id DESC LIMIT $5`
	rows, err := d.pool.Query(ctx, q, args...)
	if err != nil {
		return p, err
	}
	var cursorAt []time.Time
	p.Items, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeadLetter, error) {
		var x DeadLetter
		err := r.Scan(&x.MessageID, &x.AIAgentAddress, &x.Status, &x.Reason, &x.FailedAt, &x.Attempts, &x.LastError, &x.ReceivedAt)
		cursorAt = append(cursorAt, x.FailedAt)
		x.FailedAt, x.ReceivedAt = x.FailedAt.UTC(), x.ReceivedAt.UTC()
		return x, err
	})
	if err != nil {
		return p, err
	}
	if p.Items == nil {
		p.Items = []DeadLetter{}
	}
	if len(p.Items) > f.limit {
		p.Items = p.Items[:f.limit]
		last := p.Items[f.limit-1]
		c := dlCursor(cursorAt[f.limit-1], last.MessageID)
		p.NextCursor = &c
	}
	err = d.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM failures f WHERE `+dlWhere+` LIMIT $5) c`,
		f.status, f.address, f.reason, f.since, CountLimit).Scan(&p.Count)
	return p, err
}

func (d *deadLetters) list(w http.ResponseWriter, r *http.Request) {
	f, err := parseDLFilter(r)
	if err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeInvalidRequest, err.Error())
		return
	}
	p, err := d.read(r.Context(), f)
	if err != nil {
		httpapi.WriteError(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable,
			fmt.Sprintf("cannot read the message store: %s", strings.TrimSpace(err.Error())))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, p)
}
