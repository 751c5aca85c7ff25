package camsserver

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/cams"
	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/cams/mapping/mappingtest"
)

// TestServerInactivePolicy (issue 12 item 2, DESIGN §4): REJECT by default, HOLD
// stored, served and updatable, anything else 400.
func TestServerInactivePolicy(t *testing.T) {
	t.Parallel()
	b := setupServer(t, "")
	create := func(addr string, extra map[string]any) answer {
		body := map[string]any{"aiAgentAddress": addr, "inboxDestinationType": mapping.TypeNATSSubject, "inboxName": "agents.p"}
		for k, v := range extra {
			body[k] = v
		}
		return b.call(t, "POST", "/v1/agent-inboxes", body, "")
	}
	a := create("p1", nil)
	require.Equal(t, http.StatusCreated, a.status, "%s", a.body)
	require.Equal(t, mapping.InactivePolicyReject, a.json(t)["inactivePolicy"], "REJECT by default, and served")
	a = create("p2", map[string]any{"inactivePolicy": "HOLD"})
	require.Equal(t, http.StatusCreated, a.status, "%s", a.body)
	require.Equal(t, mapping.InactivePolicyHold, b.call(t, "GET", agentPath("p2"), nil, "").mapping(t).InactivePolicy)
	for _, bad := range []any{"hold", "DROP", "", 1} {
		create("p3", map[string]any{"inactivePolicy": bad}).requireError(t, http.StatusBadRequest, "INVALID_REQUEST")
		b.call(t, "PUT", agentPath("p1"), map[string]any{"inactivePolicy": bad}, "").requireError(t, http.StatusBadRequest, "INVALID_REQUEST")
	}
	u := b.call(t, "PUT", agentPath("p1"), map[string]any{"inactivePolicy": "HOLD"}, "")
	require.Equal(t, http.StatusOK, u.status, "%s", u.body)
	require.Equal(t, mapping.InactivePolicyHold, b.call(t, "GET", agentPath("p1"), nil, "").mapping(t).InactivePolicy)
	u = b.call(t, "PUT", agentPath("p1"), map[string]any{"description": "x"}, "")
	require.Equal(t, mapping.InactivePolicyHold, u.mapping(t).InactivePolicy, "a partial update keeps it")

	// The client's mapping carries it (the router's holding reads it).
	c, err := cams.NewClient(cams.ClientConfig{BaseURL: b.srv.URL})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	m, err := c.Lookup(t.Context(), "p1")
	require.NoError(t, err)
	require.Equal(t, mapping.InactivePolicyHold, m.InactivePolicy)
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
		"masked with nothing":  map[string]any{"type": "BEARER", "token": mapping.Masked},
		"not an object":        "Bearer " + secret,
		"unknown field":        map[string]any{"type": "BEARER", "token": secret, "tokn": secret},
	}
	for name, auth := range cases {
		a := b.call(t, "POST", "/v1/agent-inboxes", map[string]any{
			"aiAgentAddress": "a@x", "inboxDestinationType": mapping.TypeHTTPEndpoint, "inboxName": "https://a.example/in", "inboxAuth": auth,
		}, "")
		a.requireError(t, http.StatusBadRequest, "INVALID_REQUEST")
		require.Contains(t, a.json(t)["message"], "inboxAuth", name)
		require.NotContains(t, string(a.body), secret, name)
	}
	// On a NATS inbox credentials make no sense.
	b.call(t, "POST", "/v1/agent-inboxes", map[string]any{
		"aiAgentAddress": "a@x", "inboxDestinationType": mapping.TypeNATSSubject, "inboxName": "agents.a",
		"inboxAuth": map[string]any{"type": "BEARER", "token": secret},
	}, "").requireError(t, http.StatusBadRequest, "INVALID_REQUEST")
}

// TestServerMasksSecrets (issue 15, DESIGN §4): "***" in every answer but the
// includeSecrets lookup; "***" written back keeps the stored value; null removes.
func TestServerMasksSecrets(t *testing.T) {
	t.Parallel()
	b := setupServer(t, "")
	token, sig := "tok-planted-9d1f", mappingtest.Secret(32)
	a := b.call(t, "POST", "/v1/agent-inboxes", map[string]any{
		"aiAgentAddress": "m@x", "inboxDestinationType": mapping.TypeHTTPEndpoint, "inboxName": "https://a.example/in",
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
	sig2 := mappingtest.Secret(40)
	u = b.call(t, "PUT", agentPath("m@x"), map[string]any{"signingSecrets": []string{mapping.Masked, sig2}}, "")
	require.Equal(t, http.StatusOK, u.status, "%s", u.body)
	require.Equal(t, []string{sig, sig2}, b.call(t, "GET", agentPath("m@x")+"?includeSecrets=true", nil, "").mapping(t).SigningSecrets)

	// Another type with "***" has nothing to keep: 400.
	b.call(t, "PUT", agentPath("m@x"), map[string]any{"inboxAuth": map[string]any{"type": "BASIC", "username": "u", "password": mapping.Masked}}, "").
		requireError(t, http.StatusBadRequest, "INVALID_REQUEST")
	// null removes the credentials.
	u = b.call(t, "PUT", agentPath("m@x"), map[string]any{"inboxAuth": nil}, "")
	require.Equal(t, http.StatusOK, u.status, "%s", u.body)
	require.Nil(t, b.call(t, "GET", agentPath("m@x")+"?includeSecrets=true", nil, "").mapping(t).InboxAuth)
	require.False(t, strings.Contains(string(u.body), "inboxAuth"))
}
