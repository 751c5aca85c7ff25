package e2e_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOpenAPIAndErrorBodies checks each binary serves an OpenAPI 3 document of its
// routes, and that its unknown routes (404) and wrong methods (405) answer with the
// contract's error body (DESIGN §2).
func TestOpenAPIAndErrorBodies(t *testing.T) {
	t.Parallel()
	s := start(t, sysOptions{})
	// Routes every document must describe: the contract's, per binary.
	routes := map[string][]string{
		"ingest": {"POST /v1/messages"},
		"router": {"GET /v1/messages/{messageId}", "GET /v1/messages", "POST /v1/messages/{messageId}/replay", "POST /v1/dead-letters/replay"},
		"cams": {"GET /v1/agent-inboxes/{aiAgentAddress}", "PUT /v1/agent-inboxes/{aiAgentAddress}", "DELETE /v1/agent-inboxes/{aiAgentAddress}",
			"POST /v1/agent-inboxes", "GET /v1/agent-inboxes", "POST /v1/agent-health-check"},
	}
	common := []string{"GET /health", "GET /health/live", "GET /health/ready", "GET /metrics", "GET /openapi.json"}
	wrongMethod := map[string]string{
		"ingest": "GET /v1/messages",
		"router": "DELETE /v1/messages/0190b1a2-0000-7000-8000-000000000000",
		"cams":   "PATCH /v1/agent-inboxes",
	}

	for _, svc := range services {
		t.Run(svc, func(t *testing.T) {
			code, hdr, body := s.request(http.MethodGet, s.urls[svc]+"/openapi.json", "", nil)
			require.Equal(t, http.StatusOK, code)
			require.Contains(t, hdr.Get("Content-Type"), "json")
			var doc struct {
				OpenAPI string `json:"openapi"`
				Info    struct {
					Title   string `json:"title"`
					Version string `json:"version"`
				} `json:"info"`
				Paths map[string]map[string]json.RawMessage `json:"paths"`
			}
			require.NoError(t, json.Unmarshal(body, &doc), "%s /openapi.json is JSON", svc)
			require.Regexp(t, `^3\.[01]\.\d+$`, doc.OpenAPI, "OpenAPI 3.0 or 3.1")
			require.NotEmpty(t, doc.Info.Title)
			require.NotEmpty(t, doc.Info.Version)
			for _, route := range append(routes[svc], common...) {
				method, path, _ := strings.Cut(route, " ")
				op, ok := doc.Paths[path][strings.ToLower(method)]
				require.True(t, ok, "%s documents %s", svc, route)
				var o struct {
					Responses map[string]json.RawMessage `json:"responses"`
				}
				require.NoError(t, json.Unmarshal(op, &o))
				require.NotEmpty(t, o.Responses, "%s %s has responses", svc, route)
			}

			code, hdr, body = s.request(http.MethodGet, s.urls[svc]+"/no/such/route", "", nil)
			requireErrorBody(t, code, hdr, body, http.StatusNotFound, "NOT_FOUND")
			method, path, _ := strings.Cut(wrongMethod[svc], " ")
			code, hdr, body = s.request(method, s.urls[svc]+path, "", nil)
			requireErrorBody(t, code, hdr, body, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED")
			require.NotEmpty(t, hdr.Get("Allow"), "a 405 says which methods are allowed")
		})
	}
}

func requireErrorBody(t *testing.T, code int, hdr http.Header, body []byte, wantCode int, wantErr string) {
	t.Helper()
	require.Equal(t, wantCode, code, "%s", body)
	require.Contains(t, hdr.Get("Content-Type"), "application/json")
	var e map[string]any
	require.NoError(t, json.Unmarshal(body, &e), "%s", body)
	require.Equal(t, wantErr, e["errorCode"])
	msg, _ := e["message"].(string)
	require.NotEmpty(t, msg)
}
