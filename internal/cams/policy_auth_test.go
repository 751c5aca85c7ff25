package cams

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/httpapi"
)

// TestServerInactivePolicy (issue 12 item 2, DESIGN §4): REJECT by default, HOLD
// stored, served and updatable, anything else 400.
func TestServerInactivePolicy(t *testing.T) {
	t.Parallel()
	b := setupServer(t, "")
	create := func(addr string, extra map[string]any) answer {
		body := map[string]any{"aiAgentAddress": addr, "inboxDestinationType": TypeNATSSubject, "inboxName": "agents.p"}
		for k, v := range extra {
			body[k] = v
		}
		return b.call(t, "POST", "/v1/agent-inboxes", body, "")
	}
	a := create("p1", nil)
	require.Equal(t, http.StatusCreated, a.status, "%s", a.body)
	require.Equal(t, InactivePolicyReject, a.json(t)["inactivePolicy"], "REJECT by default, and served")
	a = create("p2", map[string]any{"inactivePolicy": "HOLD"})
	require.Equal(t, http.StatusCreated, a.status, "%s", a.body)
	require.Equal(t, InactivePolicyHold, b.call(t, "GET", agentPath("p2"), nil, "").mapping(t).InactivePolicy)
	for _, bad := range []any{"hold", "DROP", "", 1} {
		create("p3", map[string]any{"inactivePolicy": bad}).requireError(t, http.StatusBadRequest, "INVALID_REQUEST")
		b.call(t, "PUT", agentPath("p1"), map[string]any{"inactivePolicy": bad}, "").requireError(t, http.StatusBadRequest, "INVALID_REQUEST")
	}
	u := b.call(t, "PUT", agentPath("p1"), map[string]any{"inactivePolicy": "HOLD"}, "")
	require.Equal(t, http.StatusOK, u.status, "%s", u.body)
	require.Equal(t, InactivePolicyHold, b.call(t, "GET", agentPath("p1"), nil, "").mapping(t).InactivePolicy)
	u = b.call(t, "PUT", agentPath("p1"), map[string]any{"description": "x"}, "")
	require.Equal(t, InactivePolicyHold, u.mapping(t).InactivePolicy, "a partial update keeps it")

	// The client's mapping carries it (the router's holding reads it).
	c, err := NewClient(ClientConfig{BaseURL: b.srv.URL})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	m, err := c.Lookup(t.Context(), "p1")
	require.NoError(t, err)
	require.Equal(t, InactivePolicyHold, m.InactivePolicy)
}

// TestServerInboxAuthValidation (issue 15, DESIGN §4): clear 400s, secrets never
// echoed.
func TestServerInboxAuthValidation(t *testing.T) {
	t.Parallel()
	b := setupServer(t, "")
	const secret = "s3cr3t-planted-value"
	cases := map[string]any{
		"no type":              map[string]any{"token": secret},
		"unknown type":         map[string]any{"type": "DIGEST", "token": secret},
		"empty token":          map[string]any{"type": "BEARER", "token": ""},
		"bearer extra field":   map[string]any{"type": "BEARER", "token": secret, "password": secret},
		"header no name":       map[string]any{"type": "HEADER", "value": secret},
		"header invalid name":  map[string]any{"type": "HEADER", "name": "X API Key", "value": secret},
		"header colon name":    map[string]any{"type": "HEADER", "name": "X-Key:", "value": secret},
		"header content-type":  map[string]any{"type": "HEADER", "name": "content-type", "value": secret},
		"header webhook-sig":   map[string]any{"type": "HEADER", "name": "webhook-signature", "value": secret},
		"header webhook-other": map[string]any{"type": "HEADER", "name": "Webhook-Anything", "value": secret},
		"header message id":    map[string]any{"type": "HEADER", "name": "X-Message-Id", "value": secret},
		"header idempotency":   map[string]any{"type": "HEADER", "name": "Idempotency-Key", "value": secret},
		"header traceparent":   map[string]any{"type": "HEADER", "name": "traceparent", "value": secret},
		"header agent address": map[string]any{"type": "HEADER", "name": "X-Ai-Agent-Address", "value": secret},
		"header host":          map[string]any{"type": "HEADER", "name": "Host", "value": secret},
		"header empty value":   map[string]any{"type": "HEADER", "name": "X-API-Key", "value": ""},
		"header newline value": map[string]any{"type": "HEADER", "name": "X-API-Key", "value": secret + "\r\nX-Evil: 1"},
		"basic no user":        map[string]any{"type": "BASIC", "password": secret},
		"basic colon user":     map[string]any{"type": "BASIC", "username": "a:b", "password": secret},
		"basic no password":    map[string]any{"type": "BASIC", "username": "u"},
		"masked with nothing":  map[string]any{"type": "BEARER", "token": Masked},
		"not an object":        "Bearer " + secret,
		"unknown field":        map[string]any{"type": "BEARER", "token": secret, "tokn": secret},
	}
	for name, auth := range cases {
		a := b.call(t, "POST", "/v1/agent-inboxes", map[string]any{
			"aiAgentAddress": "a@x", "inboxDestinationType": TypeHTTPEndpoint, "inboxName": "https://a.example/in", "inboxAuth": auth,
		}, "")
		a.requireError(t, http.StatusBadRequest, "INVALID_REQUEST")
		require.Contains(t, a.json(t)["message"], "inboxAuth", name)
		require.NotContains(t, string(a.body), secret, name)
	}
	// On a NATS inbox credentials make no sense.
	b.call(t, "POST", "/v1/agent-inboxes", map[string]any{
		"aiAgentAddress": "a@x", "inboxDestinationType": TypeNATSSubject, "inboxName": "agents.a",
		"inboxAuth": map[string]any{"type": "BEARER", "token": secret},
	}, "").requireError(t, http.StatusBadRequest, "INVALID_REQUEST")
}

// TestServerMasksSecrets (issue 15, DESIGN §4): "***" in every answer but the
// includeSecrets lookup; "***" written back keeps the stored value; null removes.
func TestServerMasksSecrets(t *testing.T) {
	t.Parallel()
	b := setupServer(t, "")
	token, sig := "tok-planted-9d1f", whsec(32)
	a := b.call(t, "POST", "/v1/agent-inboxes", map[string]any{
		"aiAgentAddress": "m@x", "inboxDestinationType": TypeHTTPEndpoint, "inboxName": "https://a.example/in",
		"inboxAuth": map[string]any{"type": "BEARER", "token": token}, "signingSecrets": []string{sig},
	}, "")
	require.Equal(t, http.StatusCreated, a.status, "%s", a.body)
	answers := map[string]answer{
		"create":       a,
		"get":          b.call(t, "GET", agentPath("m@x"), nil, ""),
		"get false":    b.call(t, "GET", agentPath("m@x")+"?includeSecrets=false", nil, ""),
		"list":         b.call(t, "GET", "/v1/agent-inboxes", nil, ""),
		"update":       b.call(t, "PUT", agentPath("m@x"), map[string]any{"description": "d"}, ""),
		"health check": b.call(t, "POST", "/v1/agent-health-check", map[string]any{"aiAgentAddress": "m@x", "status": "HEALTHY"}, ""),
	}
	for name, a := range answers {
		require.Equal(t, 2, a.status/100, name)
		require.NotContains(t, string(a.body), token, name)
		require.NotContains(t, string(a.body), sig[6:], name)
		require.Contains(t, string(a.body), `"***"`, name)
	}
	full := b.call(t, "GET", agentPath("m@x")+"?includeSecrets=true", nil, "").mapping(t)
	require.Equal(t, token, full.InboxAuth.Token)
	require.Equal(t, []string{sig}, full.SigningSecrets)

	// Writing back what GET showed keeps everything.
	shown := b.call(t, "GET", agentPath("m@x"), nil, "").json(t)
	u := b.call(t, "PUT", agentPath("m@x"), map[string]any{"inboxAuth": shown["inboxAuth"], "signingSecrets": shown["signingSecrets"]}, "")
	require.Equal(t, http.StatusOK, u.status, "%s", u.body)
	full = b.call(t, "GET", agentPath("m@x")+"?includeSecrets=true", nil, "").mapping(t)
	require.Equal(t, token, full.InboxAuth.Token)
	require.Equal(t, []string{sig}, full.SigningSecrets)

	// Rotation: keep the old secret, add a new one.
	sig2 := whsec(40)
	u = b.call(t, "PUT", agentPath("m@x"), map[string]any{"signingSecrets": []string{Masked, sig2}}, "")
	require.Equal(t, http.StatusOK, u.status, "%s", u.body)
	require.Equal(t, []string{sig, sig2}, b.call(t, "GET", agentPath("m@x")+"?includeSecrets=true", nil, "").mapping(t).SigningSecrets)

	// Another type with "***" has nothing to keep: 400.
	b.call(t, "PUT", agentPath("m@x"), map[string]any{"inboxAuth": map[string]any{"type": "BASIC", "username": "u", "password": Masked}}, "").
		requireError(t, http.StatusBadRequest, "INVALID_REQUEST")
	// null removes the credentials.
	u = b.call(t, "PUT", agentPath("m@x"), map[string]any{"inboxAuth": nil}, "")
	require.Equal(t, http.StatusOK, u.status, "%s", u.body)
	require.Nil(t, b.call(t, "GET", agentPath("m@x")+"?includeSecrets=true", nil, "").mapping(t).InboxAuth)
	require.False(t, strings.Contains(string(u.body), "inboxAuth"))
}

// The router's credential lookup (issue 15): through the cache, the last known
// credentials while CAMS cannot answer (cache or not), none for an unknown agent.
func TestClientInboxAuthLookup(t *testing.T) {
	t.Parallel()
	for _, ttl := range []time.Duration{0, 30 * time.Second} {
		b := setupClient(t, func(c *ClientConfig) { c.CacheTTL = ttl; c.BreakerFailures = 100 })
		ctx := context.Background()
		auth := &InboxAuth{Type: AuthBearer, Token: "t1"}
		var asked atomic.Value
		b.fake.set(func(w http.ResponseWriter, r *http.Request) {
			asked.Store(r.URL.Query().Get("includeSecrets"))
			httpapi.WriteJSON(w, http.StatusOK, Mapping{AIAgentAddress: "a", InboxDestinationType: TypeHTTPEndpoint, InboxName: "https://a.example/", Status: StatusActive, InboxAuth: auth})
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
