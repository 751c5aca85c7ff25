package cams

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/cams/mapping/mappingtest"
	"github.com/msgrouter/msgrouter/internal/httpapi"
)

// The router ignores (with a warning) signing secrets another CAMS serves that the
// reference one would refuse, and never crashes on them.
func TestClientIgnoresInvalidSigningSecrets(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	b := setupClient(t, func(c *ClientConfig) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	b.fake.set(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, mapping.Mapping{AIAgentAddress: "a", InboxDestinationType: mapping.TypeHTTPEndpoint,
			InboxName: "https://a.example/in", Status: mapping.StatusActive,
			SigningSecrets: []string{"whsec_eA==", mappingtest.Secret(32), "nonsense", mappingtest.Secret(100)}})
	})
	m, err := b.client.Lookup(context.Background(), "a")
	require.NoError(t, err)
	require.Equal(t, []string{mappingtest.Secret(32)}, m.SigningSecrets)
	require.Contains(t, logs.String(), "ignored=3")
	require.NotContains(t, logs.String(), "eA==")

	b.fake.set(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, mapping.Mapping{AIAgentAddress: "b", InboxDestinationType: mapping.TypeHTTPEndpoint,
			InboxName: "https://a.example/in", Status: mapping.StatusActive, SigningSecrets: []string{"whsec_eA=="}})
	})
	m, err = b.client.Lookup(context.Background(), "b")
	require.NoError(t, err)
	require.Nil(t, m.SigningSecrets)
}

// INACTIVE and misconfigured mappings are cached ShortCacheTTL, ACTIVE ones
// CacheTTL: a fix in CAMS shows within seconds.
func TestClientCachesUnroutableMappingsBriefly(t *testing.T) {
	t.Parallel()
	cases := map[string]mapping.Mapping{
		"inactive":       {Status: mapping.StatusInactive, InboxDestinationType: mapping.TypeNATSSubject, InboxName: "agents.a"},
		"system subject": {Status: mapping.StatusActive, InboxDestinationType: mapping.TypeNATSSubject, InboxName: "$JS.API.INFO"},
		"unknown type":   {Status: mapping.StatusActive, InboxDestinationType: "SQS", InboxName: "q"},
		"unknown status": {Status: "PAUSED", InboxDestinationType: mapping.TypeNATSSubject, InboxName: "agents.a"},
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setupClient(t, nil) // CacheTTL 30s
			answer := func(m mapping.Mapping) {
				b.fake.set(func(w http.ResponseWriter, r *http.Request) { httpapi.WriteJSON(w, http.StatusOK, m) })
			}
			answer(bad)
			ctx := context.Background()
			_, err := b.client.Lookup(ctx, "a")
			require.NoError(t, err)
			fixed := mapping.Mapping{Status: mapping.StatusActive, InboxDestinationType: mapping.TypeNATSSubject, InboxName: "agents.fixed"}
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
			answer(mapping.Mapping{Status: mapping.StatusActive, InboxDestinationType: mapping.TypeNATSSubject, InboxName: "agents.later"})
			b.clock.Advance(29 * time.Second)
			m, err = b.client.Lookup(ctx, "a")
			require.NoError(t, err)
			require.Equal(t, "agents.fixed", m.InboxName)
		})
	}
}
