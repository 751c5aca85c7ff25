package router_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/apiclient"
	"github.com/msgrouter/msgrouter/internal/cams/mapping"
	"github.com/msgrouter/msgrouter/internal/testutil/openapitest"
)

// TestOpenAPIDocumentMatchesResponses loads the served document with kin-openapi
// (valid OpenAPI 3, every $ref resolved) and checks real answers of a running
// router, success and errors, against it.
func TestOpenAPIDocumentMatchesResponses(t *testing.T) {
	t.Parallel()
	e := setup(t, map[string]string{"ADMIN_API_KEYS": "ops:ops-secret"})
	doc := openapitest.Fetch(t, e.adminURL+"/openapi.json")

	gone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusGone) }))
	t.Cleanup(gone.Close)
	e.cams.set("agent-a@example.com", mapping.TypeNATSSubject, "inbox.a", mapping.StatusActive)
	e.cams.set("agent-gone@example.com", mapping.TypeHTTPEndpoint, gone.URL, mapping.StatusActive)
	delivered, dead, rejected := uuid.NewString(), uuid.NewString(), uuid.NewString()
	e.publish(body("agent-a@example.com", `{"n":1}`), delivered)
	e.publish(body("agent-gone@example.com", `{"n":2}`), dead)
	e.publish(body("nobody@example.com", `{"n":3}`), rejected)
	req := openapitest.Requester(t, e.adminURL, "ops-secret")
	for id, status := range map[string]string{delivered: "DELIVERED", dead: "DEAD_LETTERED", rejected: "REJECTED"} {
		require.Eventually(t, func() bool {
			resp, err := http.DefaultClient.Do(req(http.MethodGet, "/v1/messages/"+id, ""))
			require.NoError(t, err)
			defer resp.Body.Close()
			var v apiclient.Message
			return json.NewDecoder(resp.Body).Decode(&v) == nil && v.Status == status
		}, 20*time.Second, 20*time.Millisecond, "message %s never became %s", id, status)
	}

	tests := []struct {
		name string
		req  *http.Request
		want int
	}{
		{"message", req(http.MethodGet, "/v1/messages/"+delivered, ""), http.StatusOK},
		{"dead-lettered message", req(http.MethodGet, "/v1/messages/"+dead, ""), http.StatusOK},
		{"rejected message", req(http.MethodGet, "/v1/messages/"+rejected, ""), http.StatusOK},
		{"unknown message", req(http.MethodGet, "/v1/messages/"+uuid.NewString(), ""), http.StatusNotFound},
		{"no key", req(http.MethodGet, "/v1/messages/"+delivered, "", "Authorization", "Bearer wrong"), http.StatusUnauthorized},
		{"list", req(http.MethodGet, "/v1/messages?status=DELIVERED", ""), http.StatusOK},
		{"list, bad filter", req(http.MethodGet, "/v1/messages?status=BOGUS", ""), http.StatusBadRequest},
		{"dead letters", req(http.MethodGet, "/v1/dead-letters", ""), http.StatusOK},
		{"overview", req(http.MethodGet, "/v1/overview", ""), http.StatusOK},
		{"replay delivered", req(http.MethodPost, "/v1/messages/"+delivered+"/replay", ""), http.StatusConflict},
		{"replay unknown", req(http.MethodPost, "/v1/messages/"+uuid.NewString()+"/replay", ""), http.StatusNotFound},
		{"replay dead letters, bad body", req(http.MethodPost, "/v1/dead-letters/replay", `{"status":"DELIVERED"}`), http.StatusBadRequest},
		{"replay dead-lettered", req(http.MethodPost, "/v1/messages/"+dead+"/replay", ""), http.StatusAccepted},
		{"replay dead letters", req(http.MethodPost, "/v1/dead-letters/replay", `{}`), http.StatusAccepted},
		{"agent", req(http.MethodGet, "/v1/agents/agent-a@example.com", ""), http.StatusOK},
		{"unknown agent", req(http.MethodGet, "/v1/agents/nobody@example.com", ""), http.StatusNotFound},
		{"document", req(http.MethodGet, "/openapi.json", ""), http.StatusOK},
		{"console", req(http.MethodGet, "/console/", ""), http.StatusOK},
		{"health", req(http.MethodGet, "/health", ""), http.StatusOK},
		{"live", req(http.MethodGet, "/health/live", ""), http.StatusOK},
		{"ready", req(http.MethodGet, "/health/ready", ""), http.StatusOK},
		{"metrics", req(http.MethodGet, "/metrics", ""), http.StatusOK},
	}
	for _, tt := range tests { // in order: replays change what later rows see
		code, got := doc.Do(t, tt.req)
		require.Equal(t, tt.want, code, "%s: %s", tt.name, got)
	}
}
