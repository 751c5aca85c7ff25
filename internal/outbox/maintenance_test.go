package outbox

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Maintenance racing with state changes (issue 8, item 3). Each test makes the race
// deterministic: the concurrent change runs in a transaction the test holds open,
// the maintenance statement starts (takes its snapshot) and blocks on that change's
// row lock, then the change commits and the maintenance statement finishes. The
// statement must re-check the state in the statement that changes it, not act on
// its snapshot.

// held begins a transaction the test commits when it chooses.
func (f *storeFixture) held() pgx.Tx {
	f.t.Helper()
	tx, err := f.pool.Begin(f.ctx)
	require.NoError(f.t, err)
	f.t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return tx
}

// blocked reports whether a session of this database waits on a lock.
func (f *storeFixture) blocked() bool {
	var n int
	err := f.pool.QueryRow(f.ctx, `SELECT count(*) FROM pg_stat_activity
	    WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
	return err == nil && n > 0
}

// waitBlocked waits until a session of this database waits on a lock.
func (f *storeFixture) waitBlocked() {
	f.t.Helper()
	require.Eventually(f.t, f.blocked, 10*time.Second, 5*time.Millisecond,
		"the maintenance statement never blocked on the concurrent change")
}

// replayIn runs the single-message replay statement inside tx.
func replayIn(t testing.TB, tx pgx.Tx, id uuid.UUID) {
	t.Helper()
	var picked, replayed int
	require.NoError(t, tx.QueryRow(context.Background(), replaySQL, id, "", "", "", nil, 1, nil).Scan(&picked, &replayed))
	require.Equal(t, 1, replayed)
}

// claimIn claims every due row inside tx with a fresh token.
func claimIn(t testing.TB, tx pgx.Tx, lease time.Duration) uuid.UUID {
	t.Helper()
	token := uuid.New()
	execIn(t, tx, claimSQL, 100, lease, token, 30*time.Second, []string{})
	return token
}

// execIn runs a row-returning statement inside tx and discards its rows.
func execIn(t testing.TB, tx pgx.Tx, sql string, args ...any) {
	t.Helper()
	rows, err := tx.Query(context.Background(), sql, args...)
	require.NoError(t, err)
	rows.Close()
	require.NoError(t, rows.Err())
}

// inBackground runs call on a goroutine of its own and returns the channel its
// result arrives on; an error fails t (named by what).
func inBackground[T any](t testing.TB, what string, call func() (T, error)) <-chan T {
	out := make(chan T, 1)
	go func() {
		v, err := call()
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
		out <- v
	}()
	return out
}

// oldDeadLetter is a message dead-lettered ten days ago: old enough to purge.
func (f *storeFixture) oldDeadLetter() Record {
	f.t.Helper()
	dead := pendingRecord("agent-a@example.com")
	f.deadLettered(dead, "DESTINATION_GONE", 1)
	f.ageFinished(dead.ID, 10*24*time.Hour)
	return dead
}

// replayedRejection is a message rejected at routing, then replayed: PENDING,
// its outbox row due with the route flag set.
func (f *storeFixture) replayedRejection() Record {
	f.t.Helper()
	r := rejectedRecord("agent-a@example.com", "AGENT_NOT_FOUND")
	f.takeover(time.Hour, r)
	require.NoError(f.t, f.store.Replay(f.ctx, r.ID))
	return r
}

// leaseExpired is a message taken over whose claim's lease has run out, with the
// token of that claim.
func (f *storeFixture) leaseExpired() (Record, uuid.UUID) {
	f.t.Helper()
	r, token := f.takenOver()
	f.expireLease(r.ID)
	return r, token
}

// takenOver is a message taken over, with the token of its claim (an hour's
// lease).
func (f *storeFixture) takenOver() (Record, uuid.UUID) {
	f.t.Helper()
	r := pendingRecord("agent-a@example.com")
	return r, f.takeover(time.Hour, r)
}

// requireNothingClaimed claims with the lease given and requires that nothing
// was due.
func (f *storeFixture) requireNothingClaimed(lease time.Duration, msgAndArgs ...any) {
	f.t.Helper()
	got, err := f.store.Claim(f.ctx, 10, lease)
	require.NoError(f.t, err)
	require.Empty(f.t, got, msgAndArgs...)
}

// requireFreshPending requires id's record to be PENDING as if new: no attempt,
// no reason, no error, not finished, not delivered. It returns the record.
func (f *storeFixture) requireFreshPending(id uuid.UUID) msgRow {
	f.t.Helper()
	m := f.message(id)
	require.Equal(f.t, StatusPending, m.Status)
	require.Zero(f.t, m.Attempts)
	require.Nil(f.t, m.Reason)
	require.Nil(f.t, m.LastError)
	require.Nil(f.t, m.FinishedAt)
	require.Nil(f.t, m.DeliveredAt)
	return m
}

// expireLease makes id's row due now, as if its claim's lease had run out.
func (f *storeFixture) expireLease(id uuid.UUID) {
	f.t.Helper()
	f.exec(`UPDATE outbox SET due_at = now() - interval '1 second' WHERE message_id = $1`, id)
}

// requireNoOrphans checks the outbox holds exactly the PENDING messages.
func (f *storeFixture) requireNoOrphans() {
	f.t.Helper()
	var orphans, unqueued int
	require.NoError(f.t, f.pool.QueryRow(f.ctx, `SELECT
	    (SELECT count(*) FROM outbox o WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.message_id = o.message_id)),
	    (SELECT count(*) FROM messages m WHERE m.status = 'PENDING' AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = m.message_id))`).
		Scan(&orphans, &unqueued))
	require.Zero(f.t, orphans, "outbox rows without a message")
	require.Zero(f.t, unqueued, "PENDING messages without an outbox row")
}

func (f *storeFixture) ageFinished(id uuid.UUID, ago time.Duration) {
	f.t.Helper()
	f.exec(`UPDATE messages SET received_at = received_at - $2::interval, finished_at = finished_at - $2::interval
	    WHERE message_id = $1`, id, ago)
	f.exec(`UPDATE failures SET failed_at = failed_at - $2::interval WHERE message_id = $1`, id, ago)
}

// The regression of issue 8, item 3: the purge picked an old failure, a replay made
// it PENDING (answered 202), then the purge deleted it: GET 404 and an orphan outbox
// row claimed forever.
func TestPurgeRacingReplayKeepsTheMessage(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	dead := f.oldDeadLetter()
	other := rejectedRecord("agent-a@example.com", "AGENT_NOT_FOUND")
	f.takeover(time.Hour, other)
	f.ageFinished(other.ID, 10*24*time.Hour)

	tx := f.held()
	replayIn(t, tx, dead.ID)
	purged := inBackground(t, "purge", func() (int, error) { return f.store.Purge(f.ctx, time.Now().Add(-7*24*time.Hour), 1000) })
	f.waitBlocked()
	require.NoError(t, tx.Commit(f.ctx))
	require.Equal(t, 1, <-purged, "only the message nobody replayed is purged")

	v, err := f.store.Get(f.ctx, dead.ID)
	require.NoError(t, err, "the replay answered 202: the message must still be there")
	require.Equal(t, StatusPending, v.Status)
	require.Len(t, v.History, 1, "its history is kept")
	require.True(t, f.mustOutbox(dead.ID).Route)
	require.False(t, f.messageExists(other.ID))
	f.requireNoOrphans()
	// And it is delivered normally afterwards.
	c := f.claimOne(dead.ID, time.Hour)
	require.Equal(t, map[uuid.UUID]string{dead.ID: StatusDelivered},
		f.complete(10, Result{ID: dead.ID, Token: c.Token, Kind: Delivered, At: time.Now()}))
}

// A message replayed, claimed and delivered again after the purge's snapshot has
// finished anew: it is not old any more and stays.
func TestPurgeRacingReplayAndCompletionKeepsTheMessage(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	dead := f.oldDeadLetter()

	tx := f.held()
	replayIn(t, tx, dead.ID)
	token := claimIn(t, tx, time.Hour)
	execIn(t, tx, deliveredSQL, []uuid.UUID{dead.ID}, []uuid.UUID{token}, []time.Time{time.Now()}, []int32{5})

	purged := inBackground(t, "purge", func() (int, error) { return f.store.Purge(f.ctx, time.Now().Add(-7*24*time.Hour), 1000) })
	f.waitBlocked()
	require.NoError(t, tx.Commit(f.ctx))
	require.Zero(t, <-purged)

	v, err := f.store.Get(f.ctx, dead.ID)
	require.NoError(t, err)
	require.Equal(t, StatusDelivered, v.Status)
	require.Len(t, v.History, 2, "both attempts are kept")
	f.requireNoOrphans()
}

// A bulk replay picks a failure; meanwhile a single replay and a delivery finish
// the message. The bulk replay must not make the delivered message PENDING again.
func TestReplayMatchingRacingReplayAndCompletion(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	dead := pendingRecord("agent-a@example.com")
	f.deadLettered(dead, "DESTINATION_GONE", 1)

	tx := f.held()
	replayIn(t, tx, dead.ID)
	token := claimIn(t, tx, time.Hour)
	execIn(t, tx, deliveredSQL, []uuid.UUID{dead.ID}, []uuid.UUID{token}, []time.Time{time.Now()}, []int32{5})

	replayed := inBackground(t, "replay", func() (int, error) { return f.store.ReplayMatching(f.ctx, Filter{}) })
	// The bulk replay waits on the held change (or skips past it): either way it
	// must never act on its stale snapshot.
	require.Eventually(t, func() bool { return len(replayed) > 0 || f.blocked() }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, tx.Commit(f.ctx))
	require.Zero(t, <-replayed)
	require.Equal(t, StatusDelivered, f.message(dead.ID).Status)
	f.requireNoOutbox(dead.ID)
	_, failed := f.failure(dead.ID)
	require.False(t, failed)
	f.requireNoOrphans()
}

// A claim running while a completion re-schedules an expired-lease row skips the
// row (SKIP LOCKED), and after the completion commits it sees the new due time: the
// completed row is never claimed on its old, stale due time.
func TestClaimRacingCompletion(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	r, token := f.leaseExpired()

	tx := f.held()
	// The old holder's result arrives late but still holds the row: retry in 1 h.
	execIn(t, tx, failedSQL, []uuid.UUID{r.ID}, []uuid.UUID{token}, []time.Time{time.Now()}, []int32{5},
		[]int64{time.Hour.Milliseconds()}, []string{""}, []string{"boom"}, 10)

	f.requireNothingClaimed(time.Minute, "a row being completed is not claimed")
	require.NoError(t, tx.Commit(f.ctx))
	f.requireNothingClaimed(time.Minute, "the completion re-scheduled it an hour ahead")
	o := f.mustOutbox(r.ID)
	require.Nil(t, o.Token)
	require.Greater(t, o.DueIn, 50*time.Minute)
	require.Equal(t, 1, f.message(r.ID).Attempts)
}

// A replay inserting an outbox row while a claim runs: the claim does not see the
// uncommitted row; once committed, the row is claimed with its route flag.
func TestClaimRacingReplay(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	rej := rejectedRecord("agent-a@example.com", "AGENT_NOT_FOUND")
	f.takeover(time.Hour, rej)

	tx := f.held()
	replayIn(t, tx, rej.ID)
	f.requireNothingClaimed(time.Minute)
	require.NoError(t, tx.Commit(f.ctx))
	c := f.claimOne(rej.ID, time.Minute)
	require.True(t, c.Route)
	f.requireNoOrphans()
}

// A shutdown's ReleaseAll for an old token races with another replica's claim of
// the same row after the lease expired: the release waits for the claim and then
// leaves the new holder's row alone.
func TestReleaseAllRacingClaim(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	r, old := f.leaseExpired()

	tx := f.held()
	newToken := claimIn(t, tx, time.Hour)
	released := inBackground(t, "release", func() (int64, error) { return f.store.ReleaseAll(f.ctx, []uuid.UUID{old}) })
	f.waitBlocked()
	require.NoError(t, tx.Commit(f.ctx))
	require.Zero(t, <-released)
	o := f.mustOutbox(r.ID)
	require.NotNil(t, o.Token)
	require.Equal(t, newToken, *o.Token, "the new holder keeps the row")
	require.Greater(t, o.DueIn, 50*time.Minute)
}

// The other order: the purge deletes a message first, a replay of it arrives while
// the purge is uncommitted. The replay waits, then finds nothing: 404, and no
// orphan outbox row is left behind.
func TestReplayRacingPurge(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	dead := f.oldDeadLetter()

	tx := f.held()
	var picked, deleted int
	require.NoError(t, tx.QueryRow(f.ctx, purgeSQL, time.Now().Add(-7*24*time.Hour), 1000).Scan(&picked, &deleted))
	require.Equal(t, 1, deleted)
	replayed := make(chan error, 1)
	go func() { replayed <- f.store.Replay(f.ctx, dead.ID) }()
	f.waitBlocked()
	require.NoError(t, tx.Commit(f.ctx))
	require.ErrorIs(t, <-replayed, ErrNotFound)
	require.False(t, f.messageExists(dead.ID))
	f.requireNoOutbox(dead.ID)
	f.requireNoOrphans()
}
