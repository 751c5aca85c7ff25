package router_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/consumer"
	"github.com/msgrouter/msgrouter/internal/router"
)

// holdFirst wraps the takeover handler: the first delivery of message 0 of each key
// that verdict names gets that verdict instead of being taken over (as if its
// replica died, or CAMS failed for it); every other message is handled as usual.
func holdFirst(verdict map[string]consumer.Action) func(consumer.Handler) consumer.Handler {
	held := func(m jetstream.Msg) (consumer.Action, bool) {
		var env struct {
			Payload struct {
				K string `json:"k"`
				I int    `json:"i"`
			} `json:"payload"`
		}
		meta, err := m.Metadata()
		if err != nil || json.Unmarshal(m.Data(), &env) != nil || env.Payload.I != 0 || meta.NumDelivered > 1 {
			return consumer.Action{}, false
		}
		a, ok := verdict[env.Payload.K]
		return a, ok
	}
	return func(h consumer.Handler) consumer.Handler {
		return func(ctx context.Context, msgs []jetstream.Msg) []consumer.Action {
			out := make([]consumer.Action, len(msgs))
			var rest []jetstream.Msg
			var at []int
			for i, m := range msgs {
				if a, ok := held(m); ok {
					out[i] = a
					continue
				}
				rest, at = append(rest, m), append(at, i)
			}
			if len(rest) > 0 {
				for k, a := range h(ctx, rest) {
					out[at[k]] = a
				}
			}
			return out
		}
	}
}

// DESIGN §5a, issue 12 item 1: order holds when the first message of a key is
// taken over late — its batch was in a replica killed before it committed (not
// acked: JetStream redelivers it after AckWait), or CAMS could not route it (Nak'd
// with a delay) — while the later messages of its key are taken over at once. The
// later ones wait at the order gate (the consumer's ack floor) instead of going
// first; other keys and unkeyed messages are not held by it beyond the gate.
func TestLateTakeoverKeepsOrder(t *testing.T) {
	t.Parallel()
	fc := newAgentCAMS(t)
	e := setup(t, map[string]string{"CAMS_API_URL": fc.srv.URL, "BREAKER_FAILURES": "1000"}, router.Options{
		AckWait: 5 * time.Second,
		WrapHandler: holdFirst(map[string]consumer.Action{
			"killed": {Verdict: consumer.Skip},                               // as if its replica died: back after AckWait
			"nakked": {Verdict: consumer.Nak, Delay: 700 * time.Millisecond}, // as if CAMS failed for it
		}),
	})
	srv, log := orderedInbox(t, 0, nil)
	fc.set("late", mapping.TypeHTTPEndpoint, srv.URL, mapping.StatusActive, "")
	fc.set("other", mapping.TypeHTTPEndpoint, srv.URL, mapping.StatusActive, "")
	const n = 8
	var ids, free []string
	var killed0 string
	for i := range n {
		for _, k := range []string{"killed", "nakked"} {
			id := uuid.NewString()
			ids = append(ids, id)
			if k == "killed" && i == 0 {
				killed0 = id
			}
			e.publish(keyed("late", k, i, time.Time{}), id)
		}
		id := uuid.NewString()
		free = append(free, id)
		e.publish(keyed("other", "free", i, time.Time{}), id)
	}
	// Another agent's key has no message among those held back: it does not wait
	// for them (the gate reads the stream messages holding the floor back).
	for _, id := range free {
		e.waitStatus(id, "DELIVERED")
	}
	code, _ := e.get(killed0)
	require.Equal(t, http.StatusNotFound, code, "another key waited for the message held back (redelivered only after AckWait, 5s)")
	for _, id := range ids {
		e.waitStatus(id, "DELIVERED")
	}
	want := make([]int, n)
	for i := range want {
		want[i] = i
	}
	require.Equal(t, want, log.of("killed"), "a message redelivered after AckWait went after later messages of its key")
	require.Equal(t, want, log.of("nakked"), "a Nak'd message went after later messages of its key")
	require.Equal(t, want, log.of("free"))
}

// DESIGN §5a, ordergate.go: order holds when the first message of a key is held up
// before its takeover for longer than the lease (its Nak delay here; a long CAMS
// outage for its address, or a backlog in front of its redelivery, in life). The
// later messages of its key are taken over at once and wait at the order gate,
// which renews their rows' leases instead of leaving them to the sweep, whose head
// rule cannot know of a message still in the stream.
func TestHeldUpPastTheLeaseKeepsOrder(t *testing.T) {
	t.Parallel()
	fc := newAgentCAMS(t)
	const lease = 2 * time.Second
	e := setup(t, map[string]string{"CAMS_API_URL": fc.srv.URL, "BREAKER_FAILURES": "1000"}, router.Options{
		Lease: lease,
		// As if CAMS failed for it: back after three leases.
		WrapHandler: holdFirst(map[string]consumer.Action{"slow": {Verdict: consumer.Nak, Delay: 3 * lease}}),
	})
	srv, log := orderedInbox(t, 0, nil)
	fc.set("slow", mapping.TypeHTTPEndpoint, srv.URL, mapping.StatusActive, "")
	const n = 5
	var ids []string
	for i := range n {
		id := uuid.NewString()
		ids = append(ids, id)
		e.publish(keyed("slow", "slow", i, time.Time{}), id)
	}
	for _, id := range ids {
		e.waitStatus(id, "DELIVERED")
	}
	require.Equal(t, []int{0, 1, 2, 3, 4}, log.of("slow"), "later messages of a key went first when its first was held up past the lease")
}
