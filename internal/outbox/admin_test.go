package outbox

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// deadLettered takes r over and fails it for good with reason after attempts
// attempts, returning it DEAD_LETTERED with that history.
func (f *storeFixture) deadLettered(r Record, reason string, attempts int) {
	f.t.Helper()
	token := f.takeover(time.Hour, r)
	for i := 1; i < attempts; i++ {
		if i > 1 {
			token = f.claimOne(r.ID, time.Hour).Token
		}
		f.complete(attempts, Result{ID: r.ID, Token: token, Kind: Failed, At: time.Now(), Error: "try"})
	}
	if attempts > 1 {
		token = f.claimOne(r.ID, time.Hour).Token
	}
	final := f.complete(attempts, Result{ID: r.ID, Token: token, Kind: Dead, Reason: reason, At: time.Now(), Error: "last"})
	require.Equal(f.t, StatusDeadLettered, final[r.ID])
}

// delivered takes r over and delivers it on the fast path.
func (f *storeFixture) delivered(r Record) {
	f.t.Helper()
	token := f.takeover(time.Hour, r)
	final := f.complete(10, Result{ID: r.ID, Token: token, Kind: Delivered, At: time.Now()})
	require.Equal(f.t, StatusDelivered, final[r.ID])
}

func (f *storeFixture) setReceivedAgo(id uuid.UUID, ago time.Duration) {
	f.t.Helper()
	f.exec(`UPDATE messages SET received_at = now() - $2::interval WHERE message_id = $1`, id, ago)
}

// --- Get ---------------------------------------------------------------------

func TestAdminGetUnknownIsNotFound(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	_, err := f.store.Get(f.ctx, uuid.New())
	require.ErrorIs(t, err, ErrNotFound)
}

func TestAdminGetShowsHistoryInOrder(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	r, token := f.takenOver()
	t0 := time.Now().Add(-time.Minute)

	f.complete(10, Result{ID: r.ID, Token: token, Kind: Failed, At: t0, Duration: 10 * time.Millisecond, Error: "HTTP 500"})
	c := f.claimOne(r.ID, time.Hour)
	f.complete(10, Result{ID: r.ID, Token: c.Token, Kind: Failed, At: t0.Add(time.Second), Duration: 20 * time.Millisecond, Error: "HTTP 503"})
	c = f.claimOne(r.ID, time.Hour)
	f.complete(10, Result{ID: r.ID, Token: c.Token, Kind: Delivered, At: t0.Add(2 * time.Second), Duration: 30 * time.Millisecond})

	v, err := f.store.Get(f.ctx, r.ID)
	require.NoError(t, err)
	require.Equal(t, r.ID, v.MessageID)
	require.Equal(t, r.Address, v.AIAgentAddress)
	require.Equal(t, StatusDelivered, v.Status)
	require.Nil(t, v.Reason)
	require.Nil(t, v.LastError, "a delivery clears the last error")
	require.Equal(t, &Destination{Type: r.DestType, Name: r.DestName}, v.Destination)
	require.Equal(t, 3, v.Attempts)
	require.Equal(t, time.UTC, v.ReceivedAt.Location())
	require.True(t, micros(r.AcceptedAt).Equal(v.AcceptedAt))
	require.NotNil(t, v.DeliveredAt)
	require.True(t, micros(t0).Add(2*time.Second+30*time.Millisecond).Equal(*v.DeliveredAt))
	require.Equal(t, "CRM_System", *v.SenderID)
	require.Equal(t, "corr-1", *v.CorrelationID)
	require.Equal(t, "crm-msg-1", *v.SenderMsgID)
	require.Nil(t, v.RawBase64)

	require.Len(t, v.History, 3)
	for i, a := range v.History {
		require.Equal(t, i+1, a.Attempt)
		require.Equal(t, (i+1)*10, a.DurationMs)
		require.True(t, micros(t0).Add(time.Duration(i)*time.Second).Equal(a.At))
		require.Equal(t, time.UTC, a.At.Location())
	}
	require.Equal(t, []string{"FAILED", "FAILED", StatusDelivered}, []string{v.History[0].Outcome, v.History[1].Outcome, v.History[2].Outcome})
	require.Equal(t, "HTTP 500", *v.History[0].Error)
	require.Equal(t, "HTTP 503", *v.History[1].Error)
	require.Nil(t, v.History[2].Error)
}

func TestAdminGetInvalidMessageShowsRawBase64(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	raw := []byte("not json \x00\xff\xfe at all")
	r := Record{ID: uuid.New(), Status: StatusRejected, Reason: "INVALID_MESSAGE", LastError: "invalid JSON",
		Raw: raw, AcceptedAt: time.Now()}
	f.takeover(time.Hour, r)

	v, err := f.store.Get(f.ctx, r.ID)
	require.NoError(t, err)
	require.Equal(t, StatusRejected, v.Status)
	require.Equal(t, "INVALID_MESSAGE", *v.Reason)
	require.Equal(t, "invalid JSON", *v.LastError)
	require.Nil(t, v.Destination)
	require.Nil(t, v.DeliveredAt)
	require.NotNil(t, v.FinishedAt)
	require.NotNil(t, v.History)
	require.Empty(t, v.History)
	require.NotNil(t, v.RawBase64)
	got, err := base64.StdEncoding.DecodeString(*v.RawBase64)
	require.NoError(t, err)
	require.True(t, bytes.Equal(raw, got))
}

// --- List --------------------------------------------------------------------

func TestAdminListNewestFirstWithFilters(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	pendA := pendingRecord("agent-a@example.com")
	delivA := pendingRecord("agent-a@example.com")
	rejB := rejectedRecord("agent-b@example.com", "AGENT_NOT_FOUND")
	deadB := pendingRecord("agent-b@example.com")
	pendB := pendingRecord("agent-b@example.com")
	f.takeover(time.Hour, pendA, rejB, pendB)
	f.delivered(delivA)
	f.deadLettered(deadB, "DESTINATION_GONE", 1)
	// Received one minute apart, pendA oldest.
	order := []Record{pendB, deadB, rejB, delivA, pendA} // newest first
	for i, r := range order {
		f.setReceivedAgo(r.ID, time.Duration(i+1)*time.Minute)
	}

	list := func(flt Filter) []uuid.UUID {
		t.Helper()
		flt.Limit = 100
		items, next, err := f.store.List(f.ctx, flt)
		require.NoError(t, err)
		require.Empty(t, next)
		out := []uuid.UUID{}
		for _, v := range items {
			require.Nil(t, v.History, "list items carry no history")
			out = append(out, v.MessageID)
		}
		return out
	}
	require.Equal(t, ids(order), list(Filter{}))
	require.Equal(t, []uuid.UUID{pendB.ID, pendA.ID}, list(Filter{Status: StatusPending}))
	require.Equal(t, []uuid.UUID{delivA.ID}, list(Filter{Status: StatusDelivered}))
	require.Equal(t, []uuid.UUID{rejB.ID}, list(Filter{Status: StatusRejected}))
	require.Equal(t, []uuid.UUID{deadB.ID}, list(Filter{Status: StatusDeadLettered}))
	require.Equal(t, []uuid.UUID{delivA.ID, pendA.ID}, list(Filter{Address: "agent-a@example.com"}))
	require.Equal(t, []uuid.UUID{pendB.ID}, list(Filter{Status: StatusPending, Address: "agent-b@example.com"}))
	require.Empty(t, list(Filter{Address: "agent-nobody@example.com"}))
	require.Empty(t, list(Filter{Status: "BOGUS"}))

	// Items are the single view without history.
	items, _, err := f.store.List(f.ctx, Filter{Status: StatusDeadLettered, Limit: 10})
	require.NoError(t, err)
	require.Len(t, items, 1)
	require.Equal(t, "DESTINATION_GONE", *items[0].Reason)
	require.Equal(t, 1, items[0].Attempts)
	require.Equal(t, &Destination{Type: deadB.DestType, Name: deadB.DestName}, items[0].Destination)
}

func TestAdminListCursorVisitsEveryRowOnce(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	// Three takeovers: rows of one batch share received_at, so the pages must
	// break ties by messageId.
	var all []Record
	for _, n := range []int{10, 10, 5} {
		batch := pendingRecords(n, "agent-a@example.com")
		f.takeover(time.Hour, batch...)
		all = append(all, batch...)
	}
	other := pendingRecord("agent-other@example.com")
	f.takeover(time.Hour, other)

	for _, flt := range []Filter{{}, {Address: "agent-a@example.com"}, {Status: StatusPending, Address: "agent-a@example.com"}} {
		t.Run(fmt.Sprintf("%+v", flt), func(t *testing.T) {
			want := len(all)
			if flt.Address == "" {
				want++
			}
			seen := map[uuid.UUID]bool{}
			var prev *View
			pages := 0
			flt.Limit = 10
			for {
				items, next, err := f.store.List(f.ctx, flt)
				require.NoError(t, err)
				pages++
				require.LessOrEqual(t, len(items), 10)
				for i := range items {
					v := items[i]
					require.False(t, seen[v.MessageID], "%s listed twice", v.MessageID)
					seen[v.MessageID] = true
					if prev != nil {
						newer := prev.ReceivedAt.After(v.ReceivedAt) ||
							prev.ReceivedAt.Equal(v.ReceivedAt) && bytes.Compare(prev.MessageID[:], v.MessageID[:]) > 0
						require.True(t, newer, "newest first: %s before %s", prev.MessageID, v.MessageID)
					}
					prev = &v
				}
				if next == "" {
					break
				}
				require.Len(t, items, 10, "only the last page is short")
				flt.Cursor = next
			}
			require.Len(t, seen, want)
			require.Equal(t, (want+9)/10, pages)
			for _, r := range all {
				require.True(t, seen[r.ID])
			}
		})
	}
}

func TestAdminListBadCursor(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	for _, c := range []string{"garbage!", "AAAA", base64.RawURLEncoding.EncodeToString(make([]byte, 25))} {
		_, _, err := f.store.List(f.ctx, Filter{Cursor: c, Limit: 10})
		require.ErrorIs(t, err, ErrBadCursor, "cursor %q", c)
	}
}

// --- Replay ------------------------------------------------------------------

func TestAdminReplay(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	rej := rejectedRecord("agent-a@example.com", "AGENT_INACTIVE")
	f.takeover(time.Hour, rej)
	dead := pendingRecord("agent-b@example.com")
	f.deadLettered(dead, ReasonMaxAttempts, 2)

	for _, r := range []Record{rej, dead} {
		historyBefore := f.history(r.ID)
		require.NoError(t, f.store.Replay(f.ctx, r.ID))

		f.requireFreshPending(r.ID)
		o := f.mustOutbox(r.ID)
		require.True(t, o.Route, "routed afresh")
		require.Nil(t, o.Token)
		require.LessOrEqual(t, o.DueIn, time.Duration(0), "due at once")
		_, failed := f.failure(r.ID)
		require.False(t, failed)
		require.Equal(t, historyBefore, f.history(r.ID), "history is kept")
	}
	require.Len(t, f.history(dead.ID), 2)

	claimed := map[uuid.UUID]Claimed{}
	for _, c := range f.claimN(2, time.Hour) {
		claimed[c.ID] = c
	}
	require.True(t, claimed[rej.ID].Route)
	require.True(t, claimed[dead.ID].Route)
	require.Zero(t, claimed[dead.ID].Attempts)

	// Failing again after a replay records a new failure, replayable again.
	c := claimed[rej.ID]
	require.Equal(t, map[uuid.UUID]string{rej.ID: StatusRejected},
		f.complete(10, Result{ID: rej.ID, Token: c.Token, Kind: Rejected, Reason: "AGENT_NOT_FOUND"}))
	fr, ok := f.failure(rej.ID)
	require.True(t, ok)
	require.Equal(t, "AGENT_NOT_FOUND", fr.Reason)
	require.NoError(t, f.store.Replay(f.ctx, rej.ID))
	require.Equal(t, StatusPending, f.message(rej.ID).Status)
}

func TestAdminReplayRefusesOtherStatuses(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	pending := pendingRecord("agent-a@example.com")
	f.takeover(time.Hour, pending)
	delivered := pendingRecord("agent-a@example.com")
	f.delivered(delivered)
	before := f.snapshot()

	err := f.store.Replay(f.ctx, pending.ID)
	require.ErrorIs(t, err, ErrNotReplayable)
	require.ErrorContains(t, err, StatusPending)
	err = f.store.Replay(f.ctx, delivered.ID)
	require.ErrorIs(t, err, ErrNotReplayable)
	require.ErrorContains(t, err, StatusDelivered)
	require.ErrorIs(t, f.store.Replay(f.ctx, uuid.New()), ErrNotFound)
	require.Equal(t, before, f.snapshot())
}

func TestAdminReplayTwiceIsHarmless(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	r := f.replayedRejection()
	after := f.snapshot()

	// The message is PENDING now: a second replay is refused and changes nothing.
	require.ErrorIs(t, f.store.Replay(f.ctx, r.ID), ErrNotReplayable)
	require.Equal(t, after, f.snapshot())
	n, err := f.store.ReplayMatching(f.ctx, Filter{})
	require.NoError(t, err)
	require.Zero(t, n)
	require.Equal(t, after, f.snapshot())
}

func TestAdminReplayMatching(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		filter func(since time.Time) Filter
		want   []string
	}{
		{"all", func(time.Time) Filter { return Filter{} }, []string{"rejA", "rejB", "goneA", "maxB"}},
		{"rejected", func(time.Time) Filter { return Filter{Status: StatusRejected} }, []string{"rejA", "rejB"}},
		{"dead", func(time.Time) Filter { return Filter{Status: StatusDeadLettered} }, []string{"goneA", "maxB"}},
		{"address", func(time.Time) Filter { return Filter{Address: "agent-a@example.com"} }, []string{"rejA", "goneA"}},
		{"reason", func(time.Time) Filter { return Filter{Reason: "DESTINATION_GONE"} }, []string{"goneA"}},
		{"since", func(s time.Time) Filter { return Filter{Since: s} }, []string{"rejA", "rejB", "goneA"}},
		{"status+address", func(time.Time) Filter {
			return Filter{Status: StatusDeadLettered, Address: "agent-b@example.com"}
		}, []string{"maxB"}},
		{"all filters", func(s time.Time) Filter {
			return Filter{Status: StatusRejected, Address: "agent-b@example.com", Reason: "AGENT_INACTIVE", Since: s}
		}, []string{"rejB"}},
		{"no match", func(time.Time) Filter { return Filter{Reason: "CONFIG_ERROR"} }, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newStoreFixture(t)
			recs := map[string]Record{
				"rejA":  rejectedRecord("agent-a@example.com", "AGENT_NOT_FOUND"),
				"rejB":  rejectedRecord("agent-b@example.com", "AGENT_INACTIVE"),
				"goneA": pendingRecord("agent-a@example.com"),
				"maxB":  pendingRecord("agent-b@example.com"),
				"pend":  pendingRecord("agent-a@example.com"),
				"deliv": pendingRecord("agent-b@example.com"),
			}
			f.takeover(time.Hour, recs["rejA"], recs["rejB"], recs["pend"])
			f.deadLettered(recs["goneA"], "DESTINATION_GONE", 1)
			f.deadLettered(recs["maxB"], ReasonMaxAttempts, 2)
			f.delivered(recs["deliv"])
			// maxB reached its status two hours ago.
			f.exec(`UPDATE failures SET failed_at = now() - interval '2 hours' WHERE message_id = $1`, recs["maxB"].ID)
			statusBefore := map[string]string{}
			for name, r := range recs {
				statusBefore[name] = f.message(r.ID).Status
			}

			n, err := f.store.ReplayMatching(f.ctx, tc.filter(time.Now().Add(-time.Hour)))
			require.NoError(t, err)
			require.Equal(t, len(tc.want), n)

			replayed := map[string]bool{}
			for _, name := range tc.want {
				replayed[name] = true
			}
			for name, r := range recs {
				m := f.message(r.ID)
				if replayed[name] {
					require.Equal(t, StatusPending, m.Status, name)
					require.Zero(t, m.Attempts, name)
					require.True(t, f.mustOutbox(r.ID).Route, name)
					continue
				}
				require.Equal(t, statusBefore[name], m.Status, name)
				if name != "pend" {
					f.requireNoOutbox(r.ID)
				}
			}
		})
	}
}

func TestAdminReplayMatchingManyBatches(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	const n = 4500 // more than two of ReplayMatching's batches
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = rejectedRecord("agent-a@example.com", "AGENT_NOT_FOUND")
	}
	f.takeover(time.Hour, recs...)
	got, err := f.store.ReplayMatching(f.ctx, Filter{Status: StatusRejected})
	require.NoError(t, err)
	require.Equal(t, n, got)
	st, err := f.store.Stats(f.ctx)
	require.NoError(t, err)
	require.EqualValues(t, n, st.Pending)
	require.Zero(t, st.Rejected)
}

// --- Purge / Stats -----------------------------------------------------------

func TestAdminPurgeRemovesOnlyOldFinishedMessages(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	oldDelivered, oldRejected, oldDead := pendingRecord("agent-a@example.com"), rejectedRecord("agent-a@example.com", "AGENT_NOT_FOUND"), pendingRecord("agent-a@example.com")
	oldPending, newDelivered := pendingRecord("agent-a@example.com"), pendingRecord("agent-a@example.com")
	f.delivered(oldDelivered)
	f.takeover(time.Hour, oldRejected, oldPending)
	f.deadLettered(oldDead, "DESTINATION_GONE", 1)
	f.delivered(newDelivered)
	old := []uuid.UUID{oldDelivered.ID, oldRejected.ID, oldDead.ID, oldPending.ID}
	f.exec(`UPDATE messages SET received_at = received_at - interval '10 days',
	    finished_at = finished_at - interval '10 days' WHERE message_id = ANY($1)`, old)

	cutoff := time.Now().Add(-7 * 24 * time.Hour)
	// The limit bounds one call; the caller repeats until nothing is left.
	n, err := f.store.Purge(f.ctx, cutoff, 2)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	n, err = f.store.Purge(f.ctx, cutoff, 2)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, err = f.store.Purge(f.ctx, cutoff, 2)
	require.NoError(t, err)
	require.Zero(t, n)

	for _, id := range []uuid.UUID{oldDelivered.ID, oldRejected.ID, oldDead.ID} {
		require.False(t, f.messageExists(id))
		require.Empty(t, f.history(id))
		_, failed := f.failure(id)
		require.False(t, failed)
		_, err := f.store.Get(f.ctx, id)
		require.ErrorIs(t, err, ErrNotFound)
	}
	// PENDING is never purged, however old; recent finished messages stay.
	require.Equal(t, StatusPending, f.message(oldPending.ID).Status)
	f.mustOutbox(oldPending.ID)
	require.Equal(t, StatusDelivered, f.message(newDelivered.ID).Status)
	require.Len(t, f.history(newDelivered.ID), 1)
}

func TestAdminStats(t *testing.T) {
	t.Parallel()
	f := newStoreFixture(t)
	st, err := f.store.Stats(f.ctx)
	require.NoError(t, err)
	require.Equal(t, Stats{}, st)

	pend := pendingRecords(3, "agent-a@example.com")
	f.takeover(time.Hour, pend...)
	f.takeover(time.Hour, rejectedRecord("agent-a@example.com", "AGENT_NOT_FOUND"), rejectedRecord("agent-b@example.com", "CONFIG_ERROR"))
	f.deadLettered(pendingRecord("agent-c@example.com"), "DESTINATION_GONE", 1)
	f.delivered(pendingRecord("agent-d@example.com"))

	st, err = f.store.Stats(f.ctx)
	require.NoError(t, err)
	require.EqualValues(t, 3, st.Pending)
	require.EqualValues(t, 2, st.Rejected)
	require.EqualValues(t, 1, st.DeadLettered)
	require.Zero(t, st.OldestDueAge, "leased rows are not overdue")

	f.exec(`UPDATE outbox SET due_at = now() - interval '90 seconds' WHERE message_id = $1`, pend[0].ID)
	f.exec(`UPDATE outbox SET due_at = now() - interval '10 seconds' WHERE message_id = $1`, pend[1].ID)
	st, err = f.store.Stats(f.ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, st.OldestDueAge, 90*time.Second)
	require.Less(t, st.OldestDueAge, time.Hour)
}
