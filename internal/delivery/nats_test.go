package delivery

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
)

// natsSetup starts a JetStream server with a stream INBOXES on agents.> and
// returns the server, a NATS Deliverer on it and the stream.
func natsSetup(t testing.TB) (*natstest.Server, *NATS, jetstream.Stream) {
	t.Helper()
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	stream, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name:     "INBOXES",
		Subjects: []string{"agents.>"},
	})
	require.NoError(t, err)
	return srv, NewNATS(js), stream
}

func TestNATSDuplicateIsSuccess(t *testing.T) {
	t.Parallel()
	_, n, stream := natsSetup(t)
	d := fullDelivery()
	d.DestType, d.DestName = "NATS_SUBJECT", "agents.dup.inbox"
	require.NoError(t, n.Deliver(t.Context(), d))
	require.NoError(t, n.Deliver(t.Context(), d), "a redelivery deduplicated by Nats-Msg-Id is delivered")
	info, err := stream.Info(t.Context())
	require.NoError(t, err)
	require.Equal(t, uint64(1), info.State.Msgs, "the inbox holds the message once")
}

func TestNATSConcurrentDeliveries(t *testing.T) {
	t.Parallel()
	_, n, stream := natsSetup(t)
	var g errgroup.Group
	g.SetLimit(32)
	const total = 500
	for i := range total {
		g.Go(func() error {
			d := fullDelivery()
			d.MessageID = fmt.Sprintf("0192f0c4-0000-7000-9000-%012d", i)
			d.DestType, d.DestName = "NATS_SUBJECT", fmt.Sprintf("agents.c%d.inbox", i%7)
			return n.Deliver(t.Context(), d)
		})
	}
	require.NoError(t, g.Wait())
	info, err := stream.Info(t.Context())
	require.NoError(t, err)
	require.Equal(t, uint64(total), info.State.Msgs)
}

// BenchmarkNATSDeliverParallel measures Deliver called from many goroutines on one
// connection, the dispatcher's pattern.
func BenchmarkNATSDeliverParallel(b *testing.B) {
	_, n, _ := natsSetup(b)
	d := fullDelivery()
	d.DestType, d.DestName = "NATS_SUBJECT", "agents.bench.inbox"
	b.SetParallelism(16)
	b.ReportAllocs()
	var seq atomicCounter
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			dd := *d
			dd.MessageID = fmt.Sprintf("bench-%d", seq.next())
			if err := n.Deliver(b.Context(), &dd); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) next() int64 { return c.n.Add(1) }

// A negative PubAck is a failed attempt, never a success: the inbox stream refuses
// the message (it is full, DiscardNew), and Deliver says so, retryably, with the
// stream's reason.
func TestNATSNegativePubAckFails(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	stream, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: "FULL", Subjects: []string{"agents.full.>"}, MaxMsgs: 1, Discard: jetstream.DiscardNew,
	})
	require.NoError(t, err)
	n := NewNATS(js)
	d := fullDelivery()
	d.DestType, d.DestName = "NATS_SUBJECT", "agents.full.inbox"
	require.NoError(t, n.Deliver(t.Context(), d))
	d.MessageID = "0192f0c4-0000-7000-9000-000000000002"
	err = n.Deliver(t.Context(), d)
	require.Error(t, err, "the stream refused the message")
	require.ErrorContains(t, err, "maximum messages exceeded")
	require.False(t, Classify(err).Permanent, "a full inbox is transient: %v", err)
	info, err := stream.Info(t.Context())
	require.NoError(t, err)
	require.Equal(t, uint64(1), info.State.Msgs)
}

// Deliveries in flight when the NATS server restarts: a nil from Deliver means the
// inbox stream holds the message (it survives the restart), and the failed ones,
// retried as the dispatcher retries them, end up stored exactly once. Nothing is
// lost between the asynchronous publish and its PubAck.
func TestNATSOutageMidWindowLosesNothing(t *testing.T) {
	t.Parallel()
	srv, n, stream := natsSetup(t)

	const total = 3000
	id := func(i int) string { return fmt.Sprintf("0192f0c4-0000-7000-9000-%012d", i) }
	deliver := func(i int) error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		d := fullDelivery()
		d.MessageID = id(i)
		d.DestType, d.DestName = "NATS_SUBJECT", fmt.Sprintf("agents.o%d.inbox", i%5)
		return n.Deliver(ctx, d)
	}
	var (
		g        errgroup.Group
		done     atomic.Int64
		failedMu sync.Mutex
		failed   []int
	)
	g.SetLimit(64)
	restarted := false
	for i := range total {
		if !restarted && done.Load() >= total/3 {
			// Up to 64 publishes are in flight, awaiting their PubAck.
			srv.Restart(t)
			restarted = true
		}
		g.Go(func() error {
			defer done.Add(1)
			if err := deliver(i); err != nil {
				failedMu.Lock()
				failed = append(failed, i)
				failedMu.Unlock()
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	require.True(t, restarted)
	t.Logf("failed attempts around the restart: %d of %d", len(failed), total)
	// The dispatcher retries a failed attempt until it succeeds.
	for _, i := range failed {
		require.Eventually(t, func() bool { return deliver(i) == nil }, 30*time.Second, 50*time.Millisecond)
	}
	info, err := stream.Info(t.Context())
	require.NoError(t, err)
	require.Equal(t, uint64(total), info.State.Msgs, "every message stored exactly once")
	seen := map[string]bool{}
	c, err := stream.OrderedConsumer(t.Context(), jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	for range total {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		require.NoError(t, err)
		seen[m.Headers().Get(jetstream.MsgIDHeader)] = true
	}
	for i := range total {
		require.True(t, seen[id(i)], "message %d is in the inbox", i)
	}
}
