package cams

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/httpapi"
)

// The router's credential lookup (issue 15): through the cache, the last known
// credentials while CAMS cannot answer (cache or not), none for an unknown agent.
func TestClientInboxAuthLookup(t *testing.T) {
	t.Parallel()
	for _, ttl := range []time.Duration{0, 30 * time.Second} {
		b := setupClient(t, func(c *ClientConfig) { c.CacheTTL = ttl; c.BreakerFailures = 100 })
		ctx := context.Background()
		auth := &mapping.InboxAuth{Type: mapping.AuthBearer, Token: "t1"}
		var asked atomic.Value
		b.fake.set(func(w http.ResponseWriter, r *http.Request) {
			asked.Store(r.URL.Query().Get("includeSecrets"))
			httpapi.WriteJSON(w, http.StatusOK, mapping.Mapping{AIAgentAddress: "a", InboxDestinationType: mapping.TypeHTTPEndpoint, InboxName: "https://a.example/", Status: mapping.StatusActive, InboxAuth: auth})
		})
		got, err := b.client.InboxAuth(ctx, "a")
		require.NoError(t, err)
		require.Equal(t, auth, got)
		require.Equal(t, "true", asked.Load(), "the router asks for the secrets")

		b.fake.setStatus(http.StatusInternalServerError)
		b.clock.Advance(time.Minute)
		got, err = b.client.InboxAuth(ctx, "a")
		require.NoError(t, err)
		require.Equal(t, auth, got, "ttl %s: last known while CAMS fails", ttl)
		got, err = b.client.InboxAuth(ctx, "never-seen")
		require.NoError(t, err)
		require.Nil(t, got)

		b.fake.setStatus(http.StatusNotFound)
		got, err = b.client.InboxAuth(ctx, "a")
		require.NoError(t, err)
		require.Nil(t, got, "gone")
		b.fake.setStatus(http.StatusInternalServerError)
		got, err = b.client.InboxAuth(ctx, "a")
		require.NoError(t, err)
		require.Nil(t, got, "a 404 forgets the last known mapping")
	}
}
