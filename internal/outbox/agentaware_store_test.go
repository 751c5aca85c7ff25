package outbox

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// DESIGN §6, issue 8 item 9: an attempt whose result was discarded because its lease
// had passed to another claim is still in the message's history, as SUPERSEDED, and
// the current claim's attempt counts as usual.
func TestSupersededAttemptInHistory(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	r := pendingRecord("agent-a@example.com")
	stale := f.takeover(50*time.Millisecond, r)
	cur := f.claimOne(r.ID, time.Hour) // the first lease lapsed: another replica holds the row
	t0 := time.Now().Add(-time.Second).Truncate(time.Millisecond)
	f.complete(10,
		Result{ID: r.ID, Token: stale, Kind: Delivered, At: t0, Duration: 30 * time.Millisecond},
		Result{ID: r.ID, Token: cur.Token, Kind: Failed, At: t0.Add(500 * time.Millisecond), Duration: 5 * time.Millisecond, Delay: time.Hour, Error: "HTTP 503"},
	)
	v, err := f.store.Get(f.ctx, r.ID)
	require.NoError(t, err)
	require.Equal(t, StatusPending, v.Status)
	require.Equal(t, 1, v.Attempts, "only the current claim's attempt counts")
	require.Len(t, v.History, 2)
	require.Equal(t, OutcomeSuperseded, v.History[0].Outcome)
	require.True(t, t0.Equal(v.History[0].At))
	require.Equal(t, 30, v.History[0].DurationMs)
	require.Equal(t, "FAILED", v.History[1].Outcome)
}

// Hold keeps the row PENDING with reason AGENT_INACTIVE, marks it held, counts no
// attempt; ReleaseHeld makes it due at once; Expire dead-letters without an attempt.
func TestHoldReleaseExpire(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	r := pendingRecord("agent-h@example.com")
	tok := f.takeover(time.Hour, r)
	f.complete(10, Result{ID: r.ID, Token: tok, Kind: Hold, Delay: time.Hour})
	m := f.message(r.ID)
	require.Equal(t, StatusPending, m.Status)
	require.Equal(t, ReasonAgentInactive, *m.Reason)
	require.Zero(t, m.Attempts)
	n, err := f.store.HeldCount(f.ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	require.True(t, f.mustOutbox(r.ID).DueIn > 59*time.Minute)
	f.requireNothingClaimed(time.Minute, "a held row waits")

	released, err := f.store.ReleaseHeld(f.ctx, "agent-h@example.com")
	require.NoError(t, err)
	require.Equal(t, 1, released)
	c := f.claimOne(r.ID, time.Minute)
	n, err = f.store.HeldCount(f.ctx)
	require.NoError(t, err)
	require.Zero(t, n, "a claim clears the held mark")

	final := f.complete(10, Result{ID: r.ID, Token: c.Token, Kind: Expire, Reason: ReasonExpired, Error: "expired"})
	require.Equal(t, StatusDeadLettered, final[r.ID])
	m = f.message(r.ID)
	require.Equal(t, ReasonExpired, *m.Reason)
	require.Zero(t, m.Attempts, "expiry is not an attempt")
	f.requireNoOutbox(r.ID)
	fr, ok := f.failure(r.ID)
	require.True(t, ok)
	require.Equal(t, ReasonExpired, fr.Reason)
}

// The claim takes only the head of each key; the rest of the key waits, other keys
// and unkeyed rows do not.
func TestClaimOnlyHeadsOfKeys(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	var recs []Record
	for i, key := range []string{"a", "a", "a", "b", "b", ""} {
		r := pendingRecord("agent-k@example.com")
		r.OrderingKey, r.OrderSeq = key, uint64(10-i) // sequences need not follow insertion order
		recs = append(recs, r)
	}
	f.takeover(time.Hour, recs...)
	f.exec(`UPDATE outbox SET due_at = now(), lease_token = NULL`)
	got := map[string]uint64{}
	claimed, err := f.store.Claim(f.ctx, 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, claimed, 3)
	for _, c := range claimed {
		for _, r := range recs {
			if r.ID == c.ID {
				require.NotContains(t, got, r.OrderingKey+"|", "one row per key")
				got[r.OrderingKey+"|"] = r.OrderSeq
			}
		}
	}
	require.Equal(t, map[string]uint64{"a|": 8, "b|": 6, "|": 5}, got, "the lowest sequence of each key, and the unkeyed row")

	// The rows behind the heads were parked, so claims stop scanning them ...
	var parked int
	require.NoError(t, f.pool.QueryRow(f.ctx, `SELECT count(*) FROM outbox WHERE parked AND due_at > now() + interval '10 seconds'`).Scan(&parked))
	require.Equal(t, 3, parked)
	f.requireNothingClaimed(time.Minute)
	// ... until the head of their key leaves the outbox: then the next one is due
	// at once (the trigger), and it is the next in sequence.
	var headA Claimed
	for _, c := range claimed {
		if c.OrderingKey == "a" {
			headA = c
		}
	}
	final := f.complete(10, Result{ID: headA.ID, Token: headA.Token, Kind: Delivered, At: time.Now()})
	require.Equal(t, StatusDelivered, final[headA.ID])
	next, err := f.store.Claim(f.ctx, 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, next, 1)
	require.Equal(t, recs[1].ID, next[0].ID, "seq 9 follows seq 8")
}

// Issue 11: the history check of supersededSQL stays an index probe in the plan
// Postgres keeps for a prepared statement (pgx prepares it once per connection),
// even when that plan was made while delivery_attempts was empty. With NOT EXISTS
// the generic plan was a hash anti join over a sequential scan of the whole history
// table, run for every delivered batch.
func TestSupersededGenericPlanProbesTheIndex(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	conn, err := f.pool.Acquire(f.ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(f.ctx, "SET plan_cache_mode = force_generic_plan")
	require.NoError(t, err)
	defer func() { _, _ = conn.Exec(f.ctx, "RESET plan_cache_mode") }()
	_, err = conn.Exec(f.ctx, "PREPARE superseded_plan AS "+supersededSQL)
	require.NoError(t, err)
	defer func() { _, _ = conn.Exec(f.ctx, "DEALLOCATE superseded_plan") }()
	rows, err := conn.Query(f.ctx, "EXPLAIN EXECUTE superseded_plan(NULL, NULL, NULL, NULL)")
	require.NoError(t, err)
	var plan strings.Builder
	for rows.Next() {
		var line string
		require.NoError(t, rows.Scan(&line))
		plan.WriteString(line + "\n")
	}
	require.NoError(t, rows.Err())
	require.NotContains(t, plan.String(), "Seq Scan on delivery_attempts", plan.String())
	require.Contains(t, plan.String(), "delivery_attempts_message_idx", plan.String())
}
