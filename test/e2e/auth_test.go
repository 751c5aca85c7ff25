package e2e_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
)

// TestAuth runs the system with API keys configured (DESIGN §6): ingest keys on
// ingest, admin keys on the router's admin API and on CAMS, the router calling CAMS
// with CAMS_API_KEY; health, metrics and OpenAPI stay open.
func TestAuth(t *testing.T) {
	t.Parallel()
	s := start(t, sysOptions{env: map[string]string{
		"INGEST_API_KEYS": "crm:k1,k2",
		"ADMIN_API_KEYS":  "ops:a1",
		"CAMS_API_KEY":    "a1",
	}})
	const agent = "secure@example.com"
	s.register("a1", agent, mapping.TypeNATSSubject, "inbox.secure")
	msg := func(serviceName string) map[string]any {
		m := map[string]any{"aiAgentAddress": agent, "payload": map[string]any{"x": 1}}
		if serviceName != "" {
			m["senderMetadata"] = map[string]any{"serviceName": serviceName}
		}
		return m
	}
	ingestURL := s.urls["ingest"] + "/v1/messages"

	t.Run("ingest", func(t *testing.T) {
		for _, key := range []string{"", "wrong", "a1" /* an admin key is not an ingest key */} {
			code, hdr, body := s.request(http.MethodPost, ingestURL, key, msg(""))
			requireErrorBody(t, code, hdr, body, http.StatusUnauthorized, "UNAUTHORIZED")
		}
		code, hdr, body := s.request(http.MethodPost, ingestURL, "k1", msg("other"))
		requireErrorBody(t, code, hdr, body, http.StatusForbidden, "FORBIDDEN")

		// The right key: 202, with the key's own name or none.
		s.send("k1", msg(""))
		s.send("k1", msg("crm"))
	})

	t.Run("a named key's name is the sender", func(t *testing.T) {
		m := msg("")
		m["senderMetadata"] = map[string]any{"senderProvidedMessageId": "auth-1"}
		id := s.send("k1", m)
		m["senderMetadata"] = map[string]any{"serviceName": "crm", "senderProvidedMessageId": "auth-1"}
		require.Equal(t, id, s.send("k1", m), "the id is derived after serviceName is set to the key's name")
		require.Equal(t, "DELIVERED", s.waitFinal("a1", id).Status)
		var found bool
		for _, got := range s.inboxMessages("inbox.secure") {
			if natsHeader(got, "messageId") == id {
				found = true
				require.Equal(t, "crm", natsHeader(got, "senderId"))
			}
		}
		require.True(t, found)
		require.GreaterOrEqual(t, acceptedBy(t, s, "crm"), 2.0, "metrics say which key sent what")
	})

	t.Run("a bare key is not bound to a sender", func(t *testing.T) {
		id := s.send("k2", msg("other"))
		require.Equal(t, "DELIVERED", s.waitFinal("a1", id).Status, "the router's CAMS lookups use CAMS_API_KEY")
		require.GreaterOrEqual(t, acceptedBy(t, s, "unnamed"), 1.0)
	})

	t.Run("router admin API", func(t *testing.T) {
		id := s.send("k2", msg(""))
		get := s.urls["router"] + "/v1/messages/" + id
		for _, key := range []string{"", "wrong", "k1" /* an ingest key is not an admin key */} {
			code, hdr, body := s.request(http.MethodGet, get, key, nil)
			requireErrorBody(t, code, hdr, body, http.StatusUnauthorized, "UNAUTHORIZED")
			code, hdr, body = s.request(http.MethodGet, s.urls["router"]+"/v1/messages", key, nil)
			requireErrorBody(t, code, hdr, body, http.StatusUnauthorized, "UNAUTHORIZED")
			code, hdr, body = s.request(http.MethodPost, s.urls["router"]+"/v1/dead-letters/replay", key, map[string]any{})
			requireErrorBody(t, code, hdr, body, http.StatusUnauthorized, "UNAUTHORIZED")
		}
		s.waitFinal("a1", id)
		code, _, body := s.request(http.MethodGet, get, "a1", nil)
		require.Equal(t, http.StatusOK, code, "%s", body)
		code, _, body = s.request(http.MethodGet, s.urls["router"]+"/v1/messages?limit=1", "a1", nil)
		require.Equal(t, http.StatusOK, code, "%s", body)
	})

	t.Run("CAMS API", func(t *testing.T) {
		base := s.urls["cams"] + "/v1/agent-inboxes"
		for _, key := range []string{"", "wrong", "k1"} {
			code, hdr, body := s.request(http.MethodGet, base, key, nil)
			requireErrorBody(t, code, hdr, body, http.StatusUnauthorized, "UNAUTHORIZED")
			code, hdr, body = s.request(http.MethodGet, base+"/"+agent, key, nil)
			requireErrorBody(t, code, hdr, body, http.StatusUnauthorized, "UNAUTHORIZED")
			code, hdr, body = s.request(http.MethodPost, base, key, map[string]string{
				"aiAgentAddress": "intruder@example.com", "inboxDestinationType": mapping.TypeNATSSubject, "inboxName": "inbox.x",
			})
			requireErrorBody(t, code, hdr, body, http.StatusUnauthorized, "UNAUTHORIZED")
		}
		code, _, body := s.request(http.MethodGet, base+"/"+agent, "a1", nil)
		require.Equal(t, http.StatusOK, code, "%s", body)
	})

	t.Run("health, metrics and OpenAPI stay open", func(t *testing.T) {
		for _, svc := range services {
			for _, path := range []string{"/health", "/health/live", "/health/ready", "/metrics", "/openapi.json"} {
				code, _, body := s.request(http.MethodGet, s.urls[svc]+path, "", nil)
				require.Equal(t, http.StatusOK, code, "%s %s: %s", svc, path, body)
			}
		}
	})
}

// acceptedBy reads ingest's accepted counter for one sender.
func acceptedBy(t *testing.T, s *system, sender string) float64 {
	t.Helper()
	mfs, err := s.regs["ingest"].Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "msgrouter_ingest_accepted_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "sender" && l.GetValue() == sender {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
