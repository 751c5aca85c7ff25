package delivery

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
)

// TestNATSErrorsTellNoStreamFromNoLeader: issue 9 — while an inbox stream has no
// leader the failure is transient and its text must not claim that no stream
// captures the subject; a subject no stream captures says so.
func TestNATSErrorsTellNoStreamFromNoLeader(t *testing.T) {
	t.Parallel()
	cl := natstest.StartCluster(t, 3)
	_, js := cl.Connect(t)
	_, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "INBOXES", Subjects: []string{"agents.>"}, Replicas: 3})
	require.NoError(t, err)
	n := NewNATS(js)

	d := fullDelivery()
	d.DestType, d.DestName = "NATS_SUBJECT", "nowhere.inbox"
	err = n.Deliver(t.Context(), d)
	require.ErrorContains(t, err, "no stream captures the subject")
	require.False(t, Classify(err).Permanent)

	d.DestName = "agents.sales.inbox"
	require.NoError(t, n.Deliver(t.Context(), d))

	// The stream loses its quorum (two of three nodes gone): it has no leader.
	cl.Servers[0].Shutdown()
	cl.Servers[1].Shutdown()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		d.MessageID = "0192f0c4-0000-7000-9000-000000000002"
		err = n.Deliver(ctx, d)
		cancel()
		if err != nil {
			break
		}
		require.True(t, time.Now().Before(deadline), "deliveries kept succeeding without quorum")
	}
	e := Classify(err)
	require.False(t, e.Permanent, "an election or a lost quorum is transient: %v", err)
	require.NotContains(t, err.Error(), "no stream captures the subject", "the stream exists")
	t.Log(err)
}
