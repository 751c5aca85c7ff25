package delivery

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
)

func natsSetup(t testing.TB) (*NATS, jetstream.Stream) {
	t.Helper()
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	stream, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name:     "INBOXES",
		Subjects: []string{"agents.>"},
	})
	require.NoError(t, err)
	return NewNATS(js), stream
}

func TestNATSDuplicateIsSuccess(t *testing.T) {
	t.Parallel()
	n, stream := natsSetup(t)
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
	n, stream := natsSetup(t)
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
	n, _ := natsSetup(b)
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
