package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/delivery"
	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
)

// ordergate.go readKeys: "no message" at a sequence above the last message read
// is not remembered — the sequence may be written later (a job from a stream since
// recreated reads past the new stream's end), and a message written there must be
// waited for like any other. Below the last message read, "no message" (deleted)
// is remembered. A real JetStream stream, read as the router reads it.
func TestReadKeysForgetsTheStreamsEnd(t *testing.T) {
	ctx := context.Background()
	_, js := natstest.Start(t).Connect(t)
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "READKEYS", Subjects: []string{"readkeys.>"}})
	require.NoError(t, err)
	publish := func(key string) {
		_, err := js.Publish(ctx, "readkeys.in", []byte(key))
		require.NoError(t, err)
	}
	var mu sync.Mutex // readKeys reads concurrently
	var reads []uint64
	streamKey := StreamKeyOf(st, func(data []byte) (string, string, error) { return "agent@example.com", string(data), nil })
	d := &Dispatcher{log: slog.New(slog.DiscardHandler), cfg: Config{StreamKey: func(ctx context.Context, seq uint64) (string, string, error) {
		mu.Lock()
		reads = append(reads, seq)
		mu.Unlock()
		return streamKey(ctx, seq)
	}}}
	publish("a")
	publish("b")
	publish("gone")
	publish("c")
	require.NoError(t, st.DeleteMsg(ctx, 3))

	require.True(t, d.readKeys(ctx, 0, 7)) // seqs 1..6; the stream ends at 4
	require.Equal(t, map[uint64]string{1: "agent@example.com\x00a", 2: "agent@example.com\x00b", 3: "", 4: "agent@example.com\x00c"}, d.gate.keys,
		"seq 3 (deleted) is remembered as no message; 5 and 6 (past the end) are not")
	publish("d")
	publish("e")
	reads = nil
	require.True(t, d.readKeys(ctx, 0, 7))
	slices.Sort(reads)
	require.Equal(t, []uint64{5, 6}, reads, "only what was not remembered is read again")
	require.Equal(t, "agent@example.com\x00e", d.gate.keys[6])
}

// ordergate.go: while the ack floor cannot be read (NATS down, the consumer gone),
// the gate cannot tell; a keyed job then passes at its lease deadline on the head
// rule alone, as on any doubt, instead of going round gate → lease → sweep →
// gate for as long as NATS is away (found in review: it did, before the gate
// looked at deadlines without a floor).
func TestUnreadableAckFloorReleasesAtTheDeadline(t *testing.T) {
	f := newStoreFixture(t)
	ctx := context.Background()
	const addr, key = "agent-nf@example.com", "k"
	r := pendingRecord(addr)
	r.OrderingKey, r.OrderSeq = key, 1
	const lease = time.Second
	f.takeover(lease, r)

	var mu sync.Mutex
	delivered := false
	d := runDispatcher(t, Config{
		Store:        f.store,
		Lease:        lease,
		PollInterval: 50 * time.Millisecond,
		AckFloor:     func(context.Context) (uint64, error) { return 0, context.DeadlineExceeded },
		StreamKey:    func(context.Context, uint64) (string, string, error) { return "", "", context.DeadlineExceeded },
		Deliverer: inboxFunc(func(context.Context, *delivery.Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			delivered = true
			return nil
		}),
	})
	d.Handoff(ctx, d.NewJob(Claimed{
		ID: r.ID, Address: addr, DestType: r.DestType, DestName: r.DestName, Payload: r.Payload,
		AcceptedAt: r.AcceptedAt, OrderingKey: key, OrderSeq: 1,
	}, time.Now(), nil, true))
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return delivered
	}, 8*lease, 10*time.Millisecond, "a keyed message with nothing before it is not delivered after 8 leases while the ack floor is unreadable (released: %v)", counterValue(t, d.am.gateReleased))
	require.Equal(t, 1.0, counterValue(t, d.am.gateReleased), "counted as let through on a doubt")
}

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
		StreamKey: StreamKeyOf(st, func(data []byte) (string, string, error) {
			var env struct {
				Address string `json:"aiAgentAddress"`
				Key     string `json:"orderingKey"`
			}
			err := json.Unmarshal(data, &env)
			return env.Address, env.Key, err
		}),
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
