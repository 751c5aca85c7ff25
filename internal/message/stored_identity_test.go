package message_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/message"
)

// A sequence reused by a recreated or rebuilt stream (even one with the same
// creation time) names a message stored at another time: another id. The same
// stored message, seen by any replica or redelivered, keeps its id (DESIGN §3).
func TestStoredIdentitySeparatesIncarnations(t *testing.T) {
	t.Parallel()
	stored := time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC)
	first := message.DirectID("", nil, message.StoredIdentity("ROUTER_MESSAGES", stored), 1)
	require.Equal(t, first, message.DirectID("", nil, message.StoredIdentity("ROUTER_MESSAGES", stored.In(time.FixedZone("x", 3600))), 1),
		"the same stored message, whatever the local time zone")
	require.NotEqual(t, first, message.DirectID("", nil, message.StoredIdentity("ROUTER_MESSAGES", stored.Add(time.Nanosecond)), 1),
		"sequence 1 of a rebuilt stream")
	require.NotEqual(t, first, message.DirectID("", nil, message.StoredIdentity("ROUTER_MESSAGES", stored), 2))
	require.NotEqual(t, first, message.DirectID("", nil, message.StoredIdentity("OTHER", stored), 1))
}
