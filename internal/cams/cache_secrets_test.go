package cams

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/httpapi"
)

func whsec(n int) string {
	return "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{'k'}, n))
}

// Signing secret keys are 24 to 64 bytes (DESIGN §4, Standard Webhooks).
func TestValidateSigningSecretKeyLength(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 16, 23, 65, 128} {
		err := ValidateSigningSecrets([]string{whsec(n)})
		require.Error(t, err, "%d-byte key", n)
		require.NotContains(t, err.Error(), whsec(n)[6:], "never echo the secret")
	}
	for _, n := range []int{24, 32, 64} {
		require.NoError(t, ValidateSigningSecrets([]string{whsec(n)}), "%d-byte key", n)
	}
}

// The router ignores (with a warning) signing secrets another CAMS serves that the
// reference one would refuse, and never crashes on them.
func TestClientIgnoresInvalidSigningSecrets(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	b := setupClient(t, func(c *ClientConfig) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	b.fake.set(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, Mapping{AIAgentAddress: "a", InboxDestinationType: TypeHTTPEndpoint,
			InboxName: "https://a.example/in", Status: StatusActive,
			SigningSecrets: []string{"whsec_eA==", whsec(32), "nonsense", whsec(100)}})
	})
	m, err := b.client.Lookup(context.Background(), "a")
	require.NoError(t, err)
	require.Equal(t, []string{whsec(32)}, m.SigningSecrets)
	require.Contains(t, logs.String(), "ignored=3")
	require.NotContains(t, logs.String(), "eA==")

	b.fake.set(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, Mapping{AIAgentAddress: "b", InboxDestinationType: TypeHTTPEndpoint,
			InboxName: "https://a.example/in", Status: StatusActive, SigningSecrets: []string{"whsec_eA=="}})
	})
	m, err = b.client.Lookup(context.Background(), "b")
	require.NoError(t, err)
	require.Nil(t, m.SigningSecrets)
}

// INACTIVE and misconfigured mappings are cached ShortCacheTTL, ACTIVE ones
// CacheTTL: a fix in CAMS shows within seconds.
func TestClientCachesUnroutableMappingsBriefly(t *testing.T) {
	t.Parallel()
	cases := map[string]Mapping{
		"inactive":       {Status: StatusInactive, InboxDestinationType: TypeNATSSubject, InboxName: "agents.a"},
		"system subject": {Status: StatusActive, InboxDestinationType: TypeNATSSubject, InboxName: "$JS.API.INFO"},
		"unknown type":   {Status: StatusActive, InboxDestinationType: "SQS", InboxName: "q"},
		"unknown status": {Status: "PAUSED", InboxDestinationType: TypeNATSSubject, InboxName: "agents.a"},
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setupClient(t, nil) // CacheTTL 30s
			answer := func(m Mapping) {
				b.fake.set(func(w http.ResponseWriter, r *http.Request) { httpapi.WriteJSON(w, http.StatusOK, m) })
			}
			answer(bad)
			ctx := context.Background()
			_, err := b.client.Lookup(ctx, "a")
			require.NoError(t, err)
			fixed := Mapping{Status: StatusActive, InboxDestinationType: TypeNATSSubject, InboxName: "agents.fixed"}
			answer(fixed)
			b.clock.Advance(ShortCacheTTL - time.Millisecond)
			m, err := b.client.Lookup(ctx, "a")
			require.NoError(t, err)
			require.Equal(t, bad.InboxName, m.InboxName, "cached within ShortCacheTTL")
			b.clock.Advance(time.Millisecond)
			m, err = b.client.Lookup(ctx, "a")
			require.NoError(t, err)
			require.Equal(t, "agents.fixed", m.InboxName, "the fix shows after ShortCacheTTL")
			// ACTIVE and valid: the full TTL.
			answer(Mapping{Status: StatusActive, InboxDestinationType: TypeNATSSubject, InboxName: "agents.later"})
			b.clock.Advance(29 * time.Second)
			m, err = b.client.Lookup(ctx, "a")
			require.NoError(t, err)
			require.Equal(t, "agents.fixed", m.InboxName)
		})
	}
}
