package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/delivery"
	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
)

// DESIGN §5a, ordergate.go (regate): keyed rows left by a gate — their replica
// died after its acks, before its gate passed them — come due after the lease and
// are claimed by another replica's sweep. The head rule alone would send the first
// of them although the key's first message is still in the stream, not taken
// over; the sweep hands them to its own gate instead, which holds them (renewing
// their leases) until that message is taken over. A real JetStream stream and
// consumer give the ack floor and the stream's keys, as in the router.
func TestSweptLeftoversOfAGateKeepOrder(t *testing.T) {
	f := newStoreFixture(t)
	ctx := context.Background()
	_, js := natstest.Start(t).Connect(t)
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "REGATE", Subjects: []string{"regate.>"}})
	require.NoError(t, err)
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "router", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)

	const addr, key, n = "agent-r@example.com", "k", 5
	for i := range n {
		body := fmt.Sprintf(`{"aiAgentAddress":%q,"orderingKey":%q,"i":%d}`, addr, key, i)
		_, err := js.Publish(ctx, "regate.in", []byte(body))
		require.NoError(t, err)
	}
	// The router's consumer: every message but the first is taken over and acked
	// (by a replica that then died); the first is still in the stream.
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	require.Len(t, msgs, n)
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = pendingRecord(addr)
		recs[i].OrderingKey, recs[i].OrderSeq = key, uint64(i+1)
	}
	const lease = time.Second
	f.takeover(lease, recs[1:]...)
	for _, m := range msgs[1:] {
		require.NoError(t, m.DoubleAck(ctx))
	}

	var mu sync.Mutex
	var order []string
	d := runDispatcher(t, Config{
		Store:        f.store,
		Lease:        lease,
		PollInterval: 50 * time.Millisecond,
		AckFloor: func(ctx context.Context) (uint64, error) {
			info, err := cons.Info(ctx)
			if err != nil {
				return 0, err
			}
			return info.AckFloor.Stream, nil
		},
		StreamKey: func(ctx context.Context, seq uint64) (string, string, error) {
			m, err := st.GetMsg(ctx, seq)
			if err != nil {
				return "", "", err
			}
			var env struct {
				Address string `json:"aiAgentAddress"`
				Key     string `json:"orderingKey"`
			}
			if err := json.Unmarshal(m.Data, &env); err != nil {
				return "", "", err
			}
			return env.Address, env.Key, nil
		},
		Deliverer: inboxFunc(func(_ context.Context, dl *delivery.Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, dl.MessageID)
			return nil
		}),
	})

	// The leftovers come due, are swept, and wait: their leases are renewed while
	// the first message is in the stream.
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return counterValue(t, d.am.gateRenewed) >= 1 || len(order) > 0
	}, 20*time.Second, 10*time.Millisecond)
	mu.Lock()
	require.Empty(t, order, "a leftover of a gate went out before the first message of its key was taken over")
	mu.Unlock()

	// The first message is redelivered and taken over here: all go, in order.
	f.takeover(lease, recs[0])
	require.NoError(t, msgs[0].DoubleAck(ctx))
	d.Handoff(ctx, d.NewJob(Claimed{
		ID: recs[0].ID, Address: addr, DestType: recs[0].DestType, DestName: recs[0].DestName, Payload: recs[0].Payload,
		AcceptedAt: recs[0].AcceptedAt, OrderingKey: key, OrderSeq: 1,
	}, time.Now(), nil, true))
	require.Eventually(t, func() bool { return f.countOutbox(`true`) == 0 }, 20*time.Second, 10*time.Millisecond)
	want := make([]string, n)
	for i, r := range recs {
		want[i] = r.ID.String()
	}
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, want, order)
	require.Zero(t, counterValue(t, d.am.gateReleased), "the gate could always tell")
}
