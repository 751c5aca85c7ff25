package outbox

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// keyedRecords is n pending records for address of the one ordering key, in
// order (sequences 1 to n).
func keyedRecords(address, key string, n int) []Record {
	recs := pendingRecords(n, address)
	for i := range recs {
		recs[i].OrderingKey, recs[i].OrderSeq = key, uint64(i+1)
	}
	return recs
}

// DESIGN §5a, ordergate.go: keyed rows taken over are not claimable by the sweep
// until the lease; the gate's claim takes the heads among them and parks the rest.
func TestClaimGatedTakesHeadsOnly(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	var recs []Record
	var ids []uuid.UUID
	for i, key := range []string{"a", "a", "b"} {
		r := pendingRecord("agent-g@example.com")
		r.OrderingKey, r.OrderSeq = key, uint64(i+1)
		recs, ids = append(recs, r), append(ids, r.ID)
	}
	f.takeover(time.Hour, recs...)
	f.requireNothingClaimed(time.Minute, "keyed rows wait for the gate, not the sweep")
	gate := func(id uuid.UUID) (g bool) {
		require.NoError(t, f.pool.QueryRow(f.ctx, `SELECT gate FROM outbox WHERE message_id = $1`, id).Scan(&g))
		return g
	}
	require.True(t, gate(recs[0].ID), "a keyed row taken over is at a gate (migration 0004)")

	_, claimed, looked, _, err := f.store.claimGated(f.ctx, ids, time.Minute)
	require.NoError(t, err)
	require.Equal(t, map[uuid.UUID]bool{recs[0].ID: true, recs[2].ID: true}, claimed, "the head of a and of b")
	require.True(t, looked[recs[1].ID], "the second of a was looked at (parked)")
	var parked bool
	require.NoError(t, f.pool.QueryRow(f.ctx, `SELECT parked FROM outbox WHERE message_id = $1`, recs[1].ID).Scan(&parked))
	require.True(t, parked)
	for _, r := range recs {
		require.False(t, gate(r.ID), "claimed or parked at the gate: passed, never sent through one again (regate)")
	}

	// Claimed rows are not claimed twice.
	_, again, _, _, err := f.store.claimGated(f.ctx, ids, time.Minute)
	require.NoError(t, err)
	require.Empty(t, again)
}

// DESIGN §5a: recording the result that frees a key claims the key's next row in
// the same transaction; a retry (the key still held) claims nothing, and a row still
// at the gate (not due) is not claimed.
func TestCompleteNextClaimsSuccessor(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	const addr = "agent-n@example.com"
	recs := keyedRecords(addr, "k", 3)
	f.takeover(time.Hour, recs[:2]...)
	token, claimed, _, _, err := f.store.claimGated(f.ctx, []uuid.UUID{recs[0].ID, recs[1].ID}, time.Minute)
	require.NoError(t, err)
	require.True(t, claimed[recs[0].ID])
	// The third arrives later and still waits at the gate (due only after its lease).
	f.takeover(time.Hour, recs[2])

	res := func(kind Kind) Result {
		return Result{ID: recs[0].ID, Token: token, Kind: kind, At: time.Now(), Delay: time.Hour, Error: "x", Address: addr, OrderingKey: "k"}
	}
	_, next, err := f.store.CompleteNext(f.ctx, []Result{res(Failed)}, 10, time.Minute)
	require.NoError(t, err)
	require.Empty(t, next, "a retry keeps its key")
	// The head retries later: claim it again as the sweep would, then deliver it.
	f.exec(`UPDATE outbox SET due_at = now() WHERE message_id = $1`, recs[0].ID)
	again, err := f.store.Claim(f.ctx, 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, again, 1)
	require.Equal(t, recs[0].ID, again[0].ID)
	token = again[0].Token
	final, next, err := f.store.CompleteNext(f.ctx, []Result{res(Delivered)}, 10, time.Minute)
	require.NoError(t, err)
	require.Equal(t, StatusDelivered, final[recs[0].ID])
	require.Len(t, next, 1, "the parked successor is claimed with the result")
	require.Equal(t, recs[1].ID, next[0].ID)
	require.Equal(t, uint64(2), next[0].OrderSeq)
	require.Equal(t, "k", next[0].OrderingKey)
	require.NotEqual(t, uuid.Nil, next[0].Token)

	// Its result frees the key again, but the third is still at the gate.
	final, next, err = f.store.CompleteNext(f.ctx, []Result{{ID: recs[1].ID, Token: next[0].Token, Kind: Delivered, At: time.Now(),
		Address: addr, OrderingKey: "k"}}, 10, time.Minute)
	require.NoError(t, err)
	require.Equal(t, StatusDelivered, final[recs[1].ID])
	require.Empty(t, next, "a row still at the order gate is not claimed")
}

// ordergate.go queueSuccessors: a Release (shutdown: due again at once) or a Wait
// keeps its row and so its key; the write claims no successor — above all not the
// released row itself, which a shutting-down dispatcher would turn away and
// release again, round and round (found in review).
func TestReleaseClaimsNoSuccessor(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	const addr = "agent-rl@example.com"
	r := pendingRecord(addr)
	r.OrderingKey, r.OrderSeq = "k", 1
	f.takeover(time.Hour, r)
	token, claimed, _, _, err := f.store.claimGated(f.ctx, []uuid.UUID{r.ID}, time.Minute)
	require.NoError(t, err)
	require.True(t, claimed[r.ID])
	for _, kind := range []Kind{Release, Wait} {
		_, next, err := f.store.CompleteNext(f.ctx, []Result{{ID: r.ID, Token: token, Kind: kind, At: time.Now(), Address: addr, OrderingKey: "k"}}, 10, time.Minute)
		require.NoError(t, err)
		require.Empty(t, next, "kind %d claimed a successor", kind)
		// Claimed again for the next kind, as the sweep would.
		f.exec(`UPDATE outbox SET due_at = now(), lease_token = $2 WHERE message_id = $1`, r.ID, token)
	}
}
