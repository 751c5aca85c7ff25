package chaos

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// markOrdered keys a share of the messages of agents with an inbox, a few keys per
// agent, numbered in batch order; judgeOrder counts first arrivals that come after
// a later message of their key, and ignores duplicates and gaps.
func TestOrderedTraffic(t *testing.T) {
	t.Parallel()
	in := newArrivals()
	a := &agent{address: "a", weight: 1, expect: statusDelivered, arrivals: in}
	ghost := &agent{address: "ghost", weight: 1, expect: statusRejected}
	msgs := newBatch("run", "ord", 60, []*agent{a, ghost})
	markOrdered("ord", msgs)
	byKey := map[string][]*tracked{}
	for _, m := range msgs {
		if m.ord == nil {
			continue
		}
		require.Equal(t, a, m.agent, "only agents that get deliveries have keyed messages")
		key, kseq, ok := keyedBody(m.payload)
		require.True(t, ok)
		require.Equal(t, m.ord.key, key)
		require.Equal(t, len(byKey[key]), kseq, "kseq counts the key's messages in batch order")
		require.Contains(t, string(m.body), `"orderingKey":"`+key+`"`)
		byKey[key] = append(byKey[key], m)
	}
	require.Len(t, byKey, orderedKeys)

	deliver := func(m *tracked) {
		m.accepted(m.wantID)
		m.acceptedAt = time.Now()
		in.record(m.wantID, m.payload)
	}
	keys := []string{"ord-a0-k0", "ord-a0-k1", "ord-a0-k2"}
	k0, k1 := byKey[keys[0]], byKey[keys[1]]
	for _, m := range k0 { // in order, with a duplicate and a gap: fine
		if m.ord.kseq == 2 {
			m.accepted(m.wantID)
			continue // dead-lettered: never arrives
		}
		deliver(m)
	}
	deliver(k0[0]) // a redelivery of a message that arrived already
	deliver(k1[1]) // out of order: 1 before 0
	deliver(k1[0])
	deliver(k1[2])
	var res Result
	judgeOrder(&res, msgs)
	require.Equal(t, 1, res.OutOfOrder)
	require.Len(t, res.Problems, 1)
	require.Contains(t, res.Problems[0], "key ord-a0-k1 of a arrived out of acceptance order: [1 0 2]")
	require.False(t, res.done().Passed)
}
