package cams

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/delivery"
)

// Every header the router sets on an HTTP delivery (DESIGN §5) is one inboxAuth
// may not use: the list cannot fall behind the deliverer.
func TestReservedHeadersCoverDeliveryHeaders(t *testing.T) {
	t.Parallel()
	h := delivery.HTTPHeader(&delivery.Delivery{
		MessageID: "m", AIAgentAddress: "a", AcceptedAt: time.Now(), SenderID: "s", CorrelationID: "c",
		SenderMessageID: "x", Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	})
	names := []string{delivery.HTTPHeaderWebhookTimestamp, delivery.HTTPHeaderWebhookSignature, "Content-Length", "Host"}
	for k := range h {
		names = append(names, k)
	}
	require.GreaterOrEqual(t, len(names), 13)
	for _, n := range names {
		require.True(t, ReservedHeader(n), n)
		require.Error(t, ValidateInboxAuth(&InboxAuth{Type: AuthHeader, Name: n, Value: "v"}), n)
	}
	for _, n := range []string{"X-API-Key", "Authorization", "X-Gateway-Token", "apikey"} {
		require.False(t, ReservedHeader(n), n)
		require.NoError(t, ValidateInboxAuth(&InboxAuth{Type: AuthHeader, Name: n, Value: "v"}), n)
	}
}

func TestInboxAuthNeverPrintsSecrets(t *testing.T) {
	t.Parallel()
	a := InboxAuth{Type: AuthBasic, Username: "u", Password: "planted-pw"}
	require.NotContains(t, a.String(), "planted-pw")
	require.NotContains(t, a.LogValue().String(), "planted-pw")
	m := Mapping{InboxAuth: &a, SigningSecrets: []string{"whsec_x"}}.Masked()
	require.Equal(t, Masked, m.InboxAuth.Password)
	require.Equal(t, "u", m.InboxAuth.Username)
	require.Equal(t, []string{Masked}, m.SigningSecrets)
	require.Equal(t, "planted-pw", a.Password, "Masked copies")
}
