package camsserver

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/testutil/openapitest"
)

// TestOpenAPIDocumentMatchesResponses loads the served document with kin-openapi
// (valid OpenAPI 3, every $ref resolved) and checks real answers of the reference
// server, success and errors, against it.
func TestOpenAPIDocumentMatchesResponses(t *testing.T) {
	t.Parallel()
	b := setupServer(t, "admin-secret")
	doc := openapitest.Fetch(t, b.srv.URL+"/openapi.json")

	req := openapitest.Requester(t, b.srv.URL, "admin-secret")
	const addr = "agent-sales@example.com"
	mapping := `{"aiAgentAddress":"` + addr + `","inboxDestinationType":"NATS_SUBJECT","inboxName":"agents.sales.inbox","description":"sales"}`
	tests := []struct {
		name string
		req  *http.Request
		want int
	}{
		{"create", req(http.MethodPost, "/v1/agent-inboxes", mapping), http.StatusCreated},
		{"create, duplicate", req(http.MethodPost, "/v1/agent-inboxes", mapping), http.StatusConflict},
		{"create, invalid", req(http.MethodPost, "/v1/agent-inboxes", `{"inboxDestinationType":"FAX"}`), http.StatusBadRequest},
		{"create, too large", req(http.MethodPost, "/v1/agent-inboxes", `{"description":"`+strings.Repeat("x", 1<<20)+`"}`), http.StatusRequestEntityTooLarge},
		{"no key", req(http.MethodPost, "/v1/agent-inboxes", mapping, "Authorization", "Bearer wrong"), http.StatusUnauthorized},
		{"lookup", req(http.MethodGet, agentPath(addr), ""), http.StatusOK},
		{"lookup, unknown", req(http.MethodGet, agentPath("nobody@example.com"), ""), http.StatusNotFound},
		{"list", req(http.MethodGet, "/v1/agent-inboxes", ""), http.StatusOK},
		{"update", req(http.MethodPut, agentPath(addr), `{"inboxDestinationType":"HTTP_ENDPOINT","inboxName":"https://agents.example.com/sales"}`), http.StatusOK},
		{"update, invalid", req(http.MethodPut, agentPath(addr), `{"inboxDestinationType":"FAX"}`), http.StatusBadRequest},
		{"update, unknown", req(http.MethodPut, agentPath("nobody@example.com"), `{"inboxDestinationType":"NATS_SUBJECT","inboxName":"x"}`), http.StatusNotFound},
		{"health check", req(http.MethodPost, "/v1/agent-health-check", `{"aiAgentAddress":"`+addr+`","status":"UNHEALTHY","details":{"disk":"full"}}`), http.StatusOK},
		{"health check, invalid", req(http.MethodPost, "/v1/agent-health-check", `{"aiAgentAddress":"`+addr+`","status":"SO-SO"}`), http.StatusBadRequest},
		{"health check, unknown", req(http.MethodPost, "/v1/agent-health-check", `{"aiAgentAddress":"nobody@example.com","status":"HEALTHY"}`), http.StatusNotFound},
		{"delete", req(http.MethodDelete, agentPath(addr), ""), http.StatusNoContent},
		{"delete, unknown", req(http.MethodDelete, agentPath(addr), ""), http.StatusNotFound},
		{"health", req(http.MethodGet, "/health", ""), http.StatusOK},
		{"live", req(http.MethodGet, "/health/live", ""), http.StatusOK},
		{"ready", req(http.MethodGet, "/health/ready", ""), http.StatusOK},
		{"metrics", req(http.MethodGet, "/metrics", ""), http.StatusOK},
		{"document", req(http.MethodGet, "/openapi.json", ""), http.StatusOK},
	}
	for _, tt := range tests { // in order: each row sees the mapping the rows above left
		code, got := doc.Do(t, tt.req)
		require.Equal(t, tt.want, code, "%s: %s", tt.name, got)
	}
}
