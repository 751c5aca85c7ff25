package outbox

import (
	"context"
	"errors"
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
	d := &Dispatcher{log: slog.New(slog.DiscardHandler), cfg: Config{StreamKey: func(ctx context.Context, seq uint64) (string, string, error) {
		mu.Lock()
		reads = append(reads, seq)
		mu.Unlock()
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return "", "", ErrNoStreamMessage
		}
		if err != nil {
			return "", "", err
		}
		return "agent@example.com", string(m.Data), nil
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
