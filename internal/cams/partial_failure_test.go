package cams

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/httpapi"
)

// TestClientPartialFailureKeepsBreakerClosed (issue 8 item 6, DESIGN §4): CAMS
// answering 500 for some addresses while answering others never opens the CAMS
// breaker; the failing addresses back off on their own; once CAMS fails for every
// address, the breaker opens as before.
func TestClientPartialFailureKeepsBreakerClosed(t *testing.T) {
	t.Parallel()
	b := setupClient(t, func(c *ClientConfig) { c.CacheTTL = 0; c.BreakerFailures = 3; c.BreakerOpenTimeout = time.Hour })
	ctx := context.Background()
	var allDown atomic.Bool
	b.fake.set(func(w http.ResponseWriter, r *http.Request) {
		addr := strings.TrimPrefix(r.URL.Path, "/v1/agent-inboxes/")
		if allDown.Load() || strings.HasPrefix(addr, "bad") {
			httpapi.WriteError(w, http.StatusInternalServerError, "INTERNAL", "fake failure")
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, Mapping{AIAgentAddress: addr, InboxDestinationType: TypeNATSSubject, InboxName: "agents.x", Status: StatusActive})
	})

	_, err := b.client.Lookup(ctx, "good-1")
	require.NoError(t, err)
	for round := range 20 {
		for _, a := range []string{"bad-1", "bad-2", "bad-3", "bad-4", "bad-5"} {
			_, err := b.client.Lookup(ctx, a)
			require.ErrorIs(t, err, ErrUnavailable)
			require.NotErrorIs(t, err, gobreaker.ErrOpenState, "round %d", round)
		}
		require.True(t, b.client.Available(), "round %d: a CAMS failing for 5 addresses only must not open the breaker", round)
		b.clock.Advance(6 * time.Second) // past every backoff and canary check
	}
	require.Equal(t, gobreaker.StateClosed, b.client.cb.State())
	require.Positive(t, metric(t, b.reg, "msgrouter_cams_address_failures_total"))

	// Within a backoff the failing address costs no request at all.
	_, _ = b.client.Lookup(ctx, "bad-1")
	before := b.fake.requests.Load()
	_, err = b.client.Lookup(ctx, "bad-1")
	require.ErrorIs(t, err, ErrUnavailable)
	require.Equal(t, before, b.fake.requests.Load())
	_, err = b.client.Lookup(ctx, "good-2")
	require.NoError(t, err, "others flow meanwhile")

	// CAMS answers for bad-1 again: after its backoff it is found.
	b.clock.Advance(6 * time.Second)
	b.fake.set(func(w http.ResponseWriter, r *http.Request) {
		addr := strings.TrimPrefix(r.URL.Path, "/v1/agent-inboxes/")
		httpapi.WriteJSON(w, http.StatusOK, Mapping{AIAgentAddress: addr, InboxDestinationType: TypeNATSSubject, InboxName: "agents.x", Status: StatusActive})
	})
	_, err = b.client.Lookup(ctx, "bad-1")
	require.NoError(t, err)

	// A CAMS that fails for everyone still opens the breaker.
	allDown.Store(true)
	b.fake.set(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteError(w, http.StatusInternalServerError, "INTERNAL", "fake failure")
	})
	b.clock.Advance(6 * time.Second)
	for _, a := range []string{"x-1", "x-2", "x-3"} {
		_, err := b.client.Lookup(ctx, a)
		require.ErrorIs(t, err, ErrUnavailable)
	}
	require.False(t, b.client.Available(), "a CAMS failing for every address opens the breaker")
}
