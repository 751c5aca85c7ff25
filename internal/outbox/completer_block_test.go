package outbox

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/breaker"
	"github.com/msgrouter/msgrouter/internal/delivery"
)

// A completer whose result write claims a key's successor for a lane that does not
// take it (congested here, or full) must not send the successor's result to
// d.results: with that channel full and every completer doing the same, nobody
// drains it — the dispatcher stops for good and Stop never returns. Postgres being
// slow is exactly when results pile up and lanes fill and congest. Not parallel: it
// runs the dispatcher without completers (the package variable), so that the
// channel stays full.
func TestCompleterNeverBlocksOnATurnedAwaySuccessor(t *testing.T) {
	f := newStoreFixture(t)
	const addr = "agent-completer@example.com"
	recs := keyedRecords(addr, "k", 2)
	f.takeover(time.Hour, recs...)
	token, claimed, _, _, err := f.store.claimGated(f.ctx, []uuid.UUID{recs[0].ID, recs[1].ID}, time.Minute)
	require.NoError(t, err)
	require.True(t, claimed[recs[0].ID])
	require.False(t, claimed[recs[1].ID], "the successor is parked behind its head")

	saved := completers
	completers = 0
	t.Cleanup(func() { completers = saved })
	d := New(Config{Store: f.store, Breakers: breaker.NewSet(breaker.Settings{}), Timeout: time.Minute,
		Lease: 2 * time.Minute, PollInterval: time.Hour, Concurrency: 1,
		Deliverer: inboxFunc(func(context.Context, *delivery.Delivery) error { return nil })})
	require.NoError(t, d.Start(context.Background()))

	// The successor's lane is congested; the results channel is full.
	d.mu.Lock()
	l := d.newLane(breaker.Key(recs[1].DestType, recs[1].DestName))
	l.congested.Store(true)
	d.mu.Unlock()
	filler := &Job{Claimed: Claimed{ID: uuid.New()}, deadline: time.Now().Add(time.Minute)}
	for range cap(d.results) {
		d.results <- done{Result: Result{Kind: Release}, job: filler}
	}

	head := d.NewJob(Claimed{ID: recs[0].ID, Token: token, Address: addr, OrderingKey: "k",
		DestType: recs[0].DestType, DestName: recs[0].DestName}, time.Now(), nil, false)
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		d.write([]done{{Result: Result{ID: recs[0].ID, Token: token, Kind: Delivered, At: time.Now(),
			Address: addr, OrderingKey: "k"}, job: head}})
	}()
	select {
	case <-wrote:
	case <-time.After(time.Minute):
		go func() { // let the blocked completer go, so the test ends
			for range d.results {
			}
		}()
		t.Fatal("the completer blocked sending a turned-away successor's result to the full results channel")
	}
	// Drain the filler so Stop can close the channel.
	for range cap(d.results) {
		<-d.results
	}
	require.NoError(t, d.Stop(context.Background()))

	require.Equal(t, StatusDelivered, f.message(recs[0].ID).Status)
	o := f.mustOutbox(recs[1].ID)
	require.Nil(t, o.Token, "the successor's lease is given back")
	require.Greater(t, o.DueIn, time.Duration(0), "the successor waits in the outbox (lane_congested)")
}
