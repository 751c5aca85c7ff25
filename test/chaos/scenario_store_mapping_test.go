package chaos

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/apiclient"
	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/message"
)

// Direct messages carry no id of any kind and go only to inboxes the harness reads.
func TestMarkDirect(t *testing.T) {
	t.Parallel()
	read, ghost := &agent{address: "a", weight: 99, arrivals: newArrivals()}, &agent{address: "g", weight: 1}
	msgs := newBatch("run", "sc", 200, []*agent{read, ghost})
	markDirect(msgs, 10)
	n := 0
	for _, m := range msgs {
		if !m.direct {
			continue
		}
		n++
		require.Same(t, read, m.agent)
		require.Empty(t, m.wantID)
		env, err := message.Parse(m.body)
		require.NoError(t, err)
		require.Empty(t, env.SenderProvidedMessageID())
		require.JSONEq(t, string(m.payload), string(env.Payload))
	}
	require.InDelta(t, 20, n, 1)
}

// A direct message that was PubAck'd but never arrived is lost; one that arrived is
// judged like any other once its id is known.
func TestJudgeDirect(t *testing.T) {
	t.Parallel()
	in := newArrivals()
	a := &agent{address: "a", weight: 1, expect: statusDelivered, arrivals: in}
	msgs := newBatch("run", "direct", 3, []*agent{a})
	markDirect(msgs, 1)
	now := time.Now()
	for _, m := range msgs[:2] {
		m.acceptedAt = now
	}
	in.record("id-0", msgs[0].payload)
	var h harness
	h.resolveDirect(context.Background(), newChecker(func() []string { return nil }), msgs, now)
	require.Equal(t, "id-0", msgs[0].acceptedID())
	msgs[0].status, msgs[0].terminalAt = statusDelivered, now
	res := Result{}
	h.judge(&res, msgs, now)
	res = res.done()
	require.Equal(t, 2, res.Accepted, "the third was never published")
	require.Equal(t, 1, res.Delivered)
	require.Equal(t, 1, res.Lost)
	require.False(t, res.Passed)
}

// The fake CAMS fails for chosen addresses only, and mappings can be deleted, set
// INACTIVE or moved.
func TestFakeCAMSPerAddress(t *testing.T) {
	t.Parallel()
	c, client := startFakeCAMS(t)
	c.register("a@x", mapping.TypeNATSSubject, "agents.a")
	c.register("b@x", mapping.TypeNATSSubject, "agents.b")
	ctx := context.Background()

	c.setSick([]string{"a@x"}, true)
	_, err := client.GetAgent(ctx, "a@x")
	requireStatus(t, err, 500)
	_, err = client.GetAgent(ctx, "b@x")
	require.NoError(t, err, "other addresses are answered")
	c.setSick([]string{"a@x"}, false)
	_, err = client.GetAgent(ctx, "a@x")
	require.NoError(t, err)

	c.setStatus("a@x", mapping.StatusInactive)
	m, err := client.GetAgent(ctx, "a@x")
	require.NoError(t, err)
	require.Equal(t, mapping.StatusInactive, m.Status)
	c.register("b@x", mapping.TypeHTTPEndpoint, "http://127.0.0.1:1/new")
	m, err = client.GetAgent(ctx, "b@x")
	require.NoError(t, err)
	require.Equal(t, "http://127.0.0.1:1/new", m.InboxName)
	c.unregister("b@x")
	_, err = client.GetAgent(ctx, "b@x")
	require.True(t, apiclient.IsNotFound(err), "%v", err)
}
