package outbox

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/msgrouter/msgrouter/internal/breaker"
	"github.com/msgrouter/msgrouter/internal/delivery"
)

// Backpressure (lanes.go, issue 11): tests of waiting for room, congestion and
// Stop, on a real Postgres with fake inboxes. Lanes run one worker (Concurrency 1)
// and a queue of 1024, so a stuck first delivery makes a lane full on demand.

const laneQueue = 1024 // max(1024, 16×Concurrency) with Concurrency 1

// twoAgents takes over and claims nA rows for agent A (inbox agents.a.inbox) and nB
// for agent B (agents.b.inbox).
func twoAgents(f *storeFixture, nA, nB int) (a, b []Claimed) {
	f.t.Helper()
	recs := pendingRecords(nA, "agent-a@example.com")
	for i := range recs {
		recs[i].DestName = "agents.a.inbox"
	}
	recsB := pendingRecords(nB, "agent-b@example.com")
	for i := range recsB {
		recsB[i].DestName = "agents.b.inbox"
	}
	f.takeover(time.Hour, append(recs, recsB...)...)
	f.exec(`UPDATE outbox SET due_at = now()`)
	claimed := f.claimN(nA+nB, 2*time.Minute)
	for _, c := range claimed {
		if c.DestName == "agents.a.inbox" {
			a = append(a, c)
		} else {
			b = append(b, c)
		}
	}
	require.Len(f.t, a, nA)
	require.Len(f.t, b, nB)
	return a, b
}

// stuckA is a fake inbox where agent A's first delivery hangs until release is
// closed (or the attempt is cancelled) and every other A delivery waits behind it
// in A's lane; B's deliveries are reported on deliveredB at once.
type stuckA struct {
	entered    chan struct{}
	release    chan struct{}
	deliveredB chan string
	callsA     atomic.Int64
	callsB     atomic.Int64
}

func newStuckA(nB int) *stuckA {
	return &stuckA{entered: make(chan struct{}, 1), release: make(chan struct{}), deliveredB: make(chan string, nB)}
}

func (s *stuckA) Deliver(ctx context.Context, d *delivery.Delivery) error {
	if d.DestName == "agents.b.inbox" {
		s.callsB.Add(1)
		s.deliveredB <- d.MessageID
		return nil
	}
	if s.callsA.Add(1) == 1 {
		s.entered <- struct{}{}
		select {
		case <-s.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// jobsOf wraps claimed rows as jobs claimed now.
func jobsOf(d *Dispatcher, cs []Claimed) []*Job {
	now := time.Now()
	out := make([]*Job, len(cs))
	for i, c := range cs {
		out[i] = d.NewJob(c, now, nil, true)
	}
	return out
}

// fillA makes A's lane full: its one worker stuck on the first job, its queue full.
func fillA(t *testing.T, d *Dispatcher, inbox *stuckA, jobs []*Job) {
	t.Helper()
	d.Handoff(context.Background(), jobs[0])
	<-inbox.entered
	d.Handoff(context.Background(), jobs[1:1+laneQueue]...) // room for all: returns at once
}

// receiveB waits for n deliveries to B.
func receiveB(t *testing.T, inbox *stuckA, n int) {
	t.Helper()
	for range n {
		select {
		case <-inbox.deliveredB:
		case <-time.After(20 * time.Second):
			t.Fatal("agent B's messages were not delivered while A's inbox was stuck")
		}
	}
}

// A Handoff waiting for room in agent A's full lane never holds back agent B's jobs
// of the same call: they are queued first and delivered while it still waits.
func TestHandoffWaitingForOneLaneDoesNotDelayOthers(t *testing.T) {
	f := newStoreFixture(t)
	const overflow, nB = 3, 5
	a, b := twoAgents(f, 1+laneQueue+overflow, nB)
	inbox := newStuckA(nB)
	d := runDispatcher(t, Config{Store: f.store, Concurrency: 1, LaneWait: time.Hour, Deliverer: inbox})
	jobsA := jobsOf(d, a)
	fillA(t, d, inbox, jobsA)

	// A's overflow first in the call, B's jobs after it.
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		d.Handoff(context.Background(), append(jobsA[1+laneQueue:], jobsOf(d, b)...)...)
	}()
	receiveB(t, inbox, nB)
	select {
	case <-returned:
		t.Fatal("Handoff returned while A's lane was still full (it cannot congest within an hour)")
	default:
	}

	close(inbox.release)
	select {
	case <-returned:
	case <-time.After(20 * time.Second):
		t.Fatal("Handoff did not return once A's lane had room")
	}
	require.Eventually(t, func() bool { return f.countOutbox(`true`) == 0 }, 30*time.Second, 10*time.Millisecond)
	require.EqualValues(t, 1+laneQueue+overflow, inbox.callsA.Load())
	require.EqualValues(t, nB, inbox.callsB.Load())
	require.Zero(t, counterValue(t, d.m.waits.WithLabelValues("lane_full")))
	require.Zero(t, counterValue(t, d.m.waits.WithLabelValues("lane_congested")))
}

// A lane that does not take a Handoff's jobs within LaneWait (a stuck inbox) is
// congested: the waiting jobs go back to the outbox (lane_congested, no attempt);
// while it stays congested, its new jobs go back at once, without waiting, B's are
// delivered, and the sweep leaves A's due rows in the outbox while it claims B's.
// Once A's inbox moves again and its lane drains to half, the congestion ends, the
// sweep claims A's rows and everything is delivered: nothing lost.
func TestStuckInboxCongestsItsLaneOnly(t *testing.T) {
	f := newStoreFixture(t)
	const overflow, later, nB = 4, 3, 6
	a, b := twoAgents(f, 1+laneQueue+overflow+later, nB)
	inbox := newStuckA(nB)
	d := runDispatcher(t, Config{Store: f.store, Concurrency: 1, LaneWait: 200 * time.Millisecond, Deliverer: inbox})
	jobsA := jobsOf(d, a)
	fillA(t, d, inbox, jobsA)

	// The overflow waits LaneWait, then A's lane is congested and it goes back.
	overflowJobs := jobsA[1+laneQueue : 1+laneQueue+overflow]
	d.Handoff(context.Background(), overflowJobs...)
	require.EqualValues(t, 1, counterValue(t, d.m.congestions))
	require.EqualValues(t, 1, histogramCount(t, d.m.laneWait))
	require.Eventually(t, func() bool {
		return counterValue(t, d.m.waits.WithLabelValues("lane_congested")) == overflow &&
			f.countOutbox(`lease_token IS NULL`) == overflow
	}, 10*time.Second, 10*time.Millisecond)
	for _, j := range overflowJobs {
		o := f.mustOutbox(j.ID)
		require.LessOrEqual(t, o.DueIn, congestedWait)
		require.Zero(t, f.message(j.ID).Attempts, "waiting for a lane is not an attempt")
	}

	// Congested: A's new jobs go back at once (no wait: the histogram does not
	// move), B's of the same call are delivered.
	d.Handoff(context.Background(), append(jobsOf(d, b[:nB/2]), jobsA[1+laneQueue+overflow:]...)...)
	require.EqualValues(t, 1, histogramCount(t, d.m.laneWait), "no wait on a congested lane")
	receiveB(t, inbox, nB/2)
	require.Eventually(t, func() bool {
		return counterValue(t, d.m.waits.WithLabelValues("lane_congested")) == overflow+later &&
			f.countOutbox(`lease_token IS NULL`) == overflow+later // their Wait results written
	}, 10*time.Second, 10*time.Millisecond)

	// The sweep skips A's rows, due now, and claims B's.
	for _, c := range b[nB/2:] {
		f.exec(`UPDATE outbox SET due_at = now(), lease_token = NULL WHERE message_id = $1`, c.ID)
	}
	f.exec(`UPDATE outbox SET due_at = now() WHERE lease_token IS NULL`)
	require.Equal(t, nB-nB/2, d.sweepOnce(context.Background()), "only B's rows are claimed")
	receiveB(t, inbox, nB-nB/2)
	require.Equal(t, overflow+later, f.countOutbox(`lease_token IS NULL`), "A's rows stay in the outbox")

	// A's inbox moves again: its lane drains, the congestion ends and the sweep
	// (poked) claims A's rows. Every message is delivered, none lost.
	close(inbox.release)
	require.Eventually(t, func() bool { return f.countOutbox(`true`) == 0 }, 30*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return inbox.callsA.Load() == int64(len(a)) }, 10*time.Second, 10*time.Millisecond)
	for _, c := range a {
		require.Equal(t, StatusDelivered, f.message(c.ID).Status)
	}
	d.mu.Lock()
	require.False(t, d.lanes[breaker.Key("NATS_SUBJECT", "agents.a.inbox")].congested.Load(), "the episode ended")
	d.mu.Unlock()
	require.Zero(t, counterValue(t, d.m.waits.WithLabelValues("lane_full")))
}

// Stop while a Handoff waits for room: the Handoff returns at once and its jobs are
// released (due at once, no attempt), so another replica can take them; Stop
// returns (bounded by its context when the stuck delivery never ends), and nothing
// is lost.
func TestStopWhileHandoffWaits(t *testing.T) {
	// Not parallel: goleak compares against the goroutines running before it.
	for _, tc := range []struct {
		name string
		// stuck: the first delivery never ends by itself; Stop's context (1 s)
		// cuts it short. Otherwise the test lets it finish once Stop has begun.
		stuck bool
	}{{"inbox released after Stop began", false}, {"inbox stuck, Stop bounded by its context", true}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newStoreFixture(t)
			const overflow = 5
			claimed := claimedRows(f, 1+laneQueue+overflow, 2*time.Minute)
			ignore := goleak.IgnoreCurrent()
			inbox := newStuckA(0)
			d := New(Config{Store: f.store, Breakers: breaker.NewSet(breaker.Settings{}), Concurrency: 1,
				Timeout: time.Minute, Lease: 2 * time.Minute, PollInterval: time.Hour, LaneWait: time.Hour,
				Deliverer: inboxFunc(func(ctx context.Context, del *delivery.Delivery) error {
					return inbox.Deliver(ctx, del) // every row is A's
				})})
			require.NoError(t, d.Start(context.Background()))
			jobs := jobsOf(d, claimed)
			fillA(t, d, inbox, jobs)
			returned := make(chan struct{})
			go func() {
				defer close(returned)
				d.Handoff(context.Background(), jobs[1+laneQueue:]...)
			}()
			require.Eventually(t, func() bool { return gaugeValue(t, d.m.laneWaiters) == 1 }, 10*time.Second, time.Millisecond)

			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if !tc.stuck {
				ctx = context.Background()
			}
			stopped := make(chan error, 1)
			start := time.Now()
			go func() { stopped <- d.Stop(ctx) }()
			select {
			case <-returned:
			case <-time.After(10 * time.Second):
				t.Fatal("the waiting Handoff did not return when Stop began")
			}
			overflowIDs := make([]uuid.UUID, 0, overflow)
			for _, c := range claimed[1+laneQueue:] {
				overflowIDs = append(overflowIDs, c.ID)
			}
			if !tc.stuck {
				// The waiting jobs are released while the delivery in flight still runs.
				require.Eventually(t, func() bool {
					return f.countOutbox(`lease_token IS NULL AND message_id = ANY($1)`, overflowIDs) == overflow
				}, 10*time.Second, 10*time.Millisecond)
				close(inbox.release)
			}
			var err error
			select {
			case err = <-stopped:
			case <-time.After(15 * time.Second):
				t.Fatal("Stop did not return")
			}
			if tc.stuck {
				require.Less(t, time.Since(start), 4*time.Second, "Stop is bounded by its context (1 s) plus the time to abandon a call")
			} else {
				require.NoError(t, err)
				require.Equal(t, StatusDelivered, f.message(claimed[0].ID).Status)
			}
			goleak.VerifyNone(t, ignore)

			// Nothing lost: every other row is still PENDING with no attempt, in
			// the outbox — released (due now) or, when Stop gave up before writing,
			// held by its claim until the lease ends.
			for _, c := range claimed[1:] {
				m := f.message(c.ID)
				require.Equal(t, StatusPending, m.Status)
				require.Zero(t, m.Attempts)
				o := f.mustOutbox(c.ID)
				if o.Token == nil {
					require.LessOrEqual(t, o.DueIn, time.Duration(0), "released: due now")
				}
			}
			if !tc.stuck {
				require.Zero(t, f.countOutbox(`lease_token IS NOT NULL`), "every job handed back")
			}
			f.requireNoOrphans()
		})
	}
}
