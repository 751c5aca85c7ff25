package outbox

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/pgtext"
)

// Issue 8, item 1 (DESIGN §2): an HTTP inbox answering 500 with ~3 KB of non-ASCII
// text used to be cut inside a multi-byte character; the batched result write then
// failed for every result in the batch, and the failing message's attempts never
// grew. Error texts are now made storable, and the whole batch lands.
func TestCompleteStoresHostileErrorTexts(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	recs := pendingRecords(4, "agent")
	token := f.takeover(time.Minute, recs...)
	now := time.Now()
	body := "HTTP 500 " + strings.Repeat("ошибка сервера ", 200) // ~3 KB, 2-byte runes at odd offsets
	require.False(t, utf8.ValidString(body[:maxErrorBytes]), "the old byte cut splits a character")
	final := f.complete(10,
		Result{ID: recs[0].ID, Token: token, Kind: Failed, At: now, Delay: time.Millisecond, Error: body},
		Result{ID: recs[1].ID, Token: token, Kind: Failed, At: now, Delay: time.Millisecond, Error: "bad\x00body\xff\xfe"},
		Result{ID: recs[2].ID, Token: token, Kind: Dead, Reason: "DESTINATION_GONE", At: now, Error: "gone: \x00"},
		Result{ID: recs[3].ID, Token: token, Kind: Delivered, At: now},
	)
	require.Equal(t, map[uuid.UUID]string{recs[0].ID: StatusPending, recs[1].ID: StatusPending,
		recs[2].ID: StatusDeadLettered, recs[3].ID: StatusDelivered}, final)

	m := f.message(recs[0].ID)
	require.Equal(t, 1, m.Attempts, "the attempt is counted, so the message can dead-letter")
	require.True(t, pgtext.Valid(*m.LastError))
	require.True(t, strings.HasSuffix(*m.LastError, pgtext.Ellipsis))
	require.LessOrEqual(t, len(*m.LastError), maxErrorBytes+len(pgtext.Ellipsis))
	require.True(t, strings.HasPrefix(body, strings.TrimSuffix(*m.LastError, pgtext.Ellipsis)))
	require.Equal(t, "bad\uFFFDbody\uFFFD", *f.message(recs[1].ID).LastError)
	require.Equal(t, "gone: \uFFFD", *f.message(recs[2].ID).LastError)
	require.Equal(t, StatusDelivered, f.message(recs[3].ID).Status)
	require.NotNil(t, f.history(recs[0].ID)[0].Error)

	// The same text until the last attempt: the message dead-letters.
	for attempt := 2; attempt <= 3; attempt++ {
		var results []Result
		for _, c := range f.claimN(2, time.Minute) { // recs[0] and recs[1]
			results = append(results, Result{ID: c.ID, Token: c.Token, Kind: Failed, At: time.Now(), Delay: time.Millisecond, Error: body})
		}
		f.complete(3, results...)
	}
	m = f.message(recs[0].ID)
	require.Equal(t, StatusDeadLettered, m.Status)
	require.Equal(t, ReasonMaxAttempts, *m.Reason)
	require.Equal(t, 3, m.Attempts)
}

// A batch statement that Postgres refuses for a data reason is split: the good
// results land, and the bad one is written with its error text replaced. The data
// error is real (a trigger refusing one row with SQLSTATE 22000), since every text
// the store writes is already made storable.
func TestCompleteSplitsABatchAroundABadRow(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	f.exec(`CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
	    IF NEW.error LIKE 'poison%' THEN
	        RAISE EXCEPTION 'refused for the test' USING ERRCODE = '22000';
	    END IF;
	    RETURN NEW;
	END $$`)
	f.exec(`CREATE TRIGGER refuse_poison BEFORE INSERT ON delivery_attempts FOR EACH ROW EXECUTE FUNCTION refuse_poison()`)
	recs := pendingRecords(9, "agent")
	token := f.takeover(time.Minute, recs...)
	now := time.Now()
	var results []Result
	for i, r := range recs {
		res := Result{ID: r.ID, Token: token, Kind: Delivered, At: now}
		switch i {
		case 4:
			res = Result{ID: r.ID, Token: token, Kind: Failed, At: now, Delay: time.Millisecond, Error: "poison body"}
		case 7:
			res = Result{ID: r.ID, Token: token, Kind: Failed, At: now, Delay: time.Millisecond, Error: "HTTP 500"}
		}
		results = append(results, res)
	}
	final := f.complete(10, results...)
	require.Len(t, final, 9, "every result was recorded")
	for i, r := range recs {
		m := f.message(r.ID)
		switch i {
		case 4:
			require.Equal(t, StatusPending, m.Status)
			require.Equal(t, 1, m.Attempts, "the attempt still counts")
			require.Equal(t, unstorableError, *m.LastError)
		case 7:
			require.Equal(t, "HTTP 500", *m.LastError)
		default:
			require.Equal(t, StatusDelivered, m.Status, "batch-mate %d", i)
		}
	}

	// A row refused whatever its text is left out (its lease expires and it is
	// claimed again); the others still land.
	f.exec(`CREATE OR REPLACE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
	    IF NEW.message_id = '` + recs[4].ID.String() + `' THEN
	        RAISE EXCEPTION 'refused for the test' USING ERRCODE = '22000';
	    END IF;
	    RETURN NEW;
	END $$`)
	more := pendingRecords(2, "agent")
	token2 := f.takeover(time.Minute, more...)
	c := f.claimOne(recs[4].ID, time.Minute)
	final = f.complete(10,
		Result{ID: more[0].ID, Token: token2, Kind: Delivered, At: now},
		Result{ID: c.ID, Token: c.Token, Kind: Delivered, At: now},
		Result{ID: more[1].ID, Token: token2, Kind: Failed, At: now, Delay: time.Millisecond, Error: "x"},
	)
	require.Equal(t, map[uuid.UUID]string{more[0].ID: StatusDelivered, more[1].ID: StatusPending}, final)
	require.Equal(t, c.Token, *f.mustOutbox(c.ID).Token, "still leased: claimed again after the lease")
}

// IsDataError tells Postgres refusing the data (split the batch) from Postgres not
// answering (retry the batch).
func TestIsDataError(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	_, err := f.pool.Exec(f.ctx, `SELECT $1::text`, "a\x00b")
	require.Error(t, err)
	require.True(t, IsDataError(err), "U+0000: %v", err)
	_, err = f.pool.Exec(f.ctx, `SELECT $1::text`, "a\xffb")
	require.True(t, IsDataError(err), "invalid UTF-8: %v", err)
	_, err = f.pool.Exec(f.ctx, `INSERT INTO messages (message_id, ai_agent_address, status, accepted_at) VALUES ($1, 'a', 'BOGUS', now())`, uuid.New())
	require.True(t, IsDataError(err), "check violation: %v", err)
	_, err = f.pool.Exec(f.ctx, `SELEC 1`)
	require.Error(t, err)
	require.False(t, IsDataError(err), "a syntax error is not the data's fault")

	dead, err := pgxpool.New(f.ctx, "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	require.NoError(t, err)
	defer dead.Close()
	_, err = NewStore(dead).Complete(f.ctx, []Result{{ID: uuid.New(), Token: uuid.New(), Kind: Delivered, At: time.Now()}}, 10)
	require.Error(t, err)
	require.False(t, IsDataError(err), "an unreachable Postgres is transient: %v", err)
	ctx, cancel := context.WithCancel(f.ctx)
	cancel()
	_, err = f.store.Complete(ctx, []Result{{ID: uuid.New(), Token: uuid.New(), Kind: Delivered, At: time.Now()}}, 10)
	require.Error(t, err)
	require.False(t, IsDataError(err))
}
