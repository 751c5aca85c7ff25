package ingest_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/auth"
	"github.com/msgrouter/msgrouter/internal/ingest"
	"github.com/msgrouter/msgrouter/internal/testutil/openapitest"
)

// TestOpenAPIDocumentMatchesResponses loads the served document with kin-openapi
// (valid OpenAPI 3, every $ref resolved) and checks real answers of the handler,
// success and errors, against it.
func TestOpenAPIDocumentMatchesResponses(t *testing.T) {
	t.Parallel()
	keys, err := auth.Parse("CRM_System:crm-secret, Other:other-secret")
	require.NoError(t, err)
	f := setup(t, func(c *ingest.Config) { c.Keys = keys })
	limited := setup(t, func(c *ingest.Config) { c.Keys, c.RateLimit, c.RateBurst = keys, 0.001, 1 })
	rec := f.do(request{method: http.MethodGet, path: "/openapi.json"})
	require.Equal(t, http.StatusOK, rec.Code)
	doc := openapitest.Load(t, rec.Body.Bytes())

	req := openapitest.Requester(t, "", "crm-secret")
	tests := []struct {
		name string
		h    http.Handler
		req  *http.Request
		want int
	}{
		{"accepted", f.h, req(http.MethodPost, "/v1/messages", exampleBody), http.StatusAccepted},
		{"spends the limit", limited.h, req(http.MethodPost, "/v1/messages", exampleBody), http.StatusAccepted},
		{"rate limited", limited.h, req(http.MethodPost, "/v1/messages", exampleBody), http.StatusTooManyRequests},
		{"forbidden service name", f.h, req(http.MethodPost, "/v1/messages", exampleBody, "Authorization", "Bearer other-secret"), http.StatusForbidden},
		{"no key", f.h, req(http.MethodPost, "/v1/messages", exampleBody, "Authorization", "Bearer wrong"), http.StatusUnauthorized},
		{"invalid body", f.h, req(http.MethodPost, "/v1/messages", `{"payload":1}`), http.StatusBadRequest},
		{"not JSON", f.h, req(http.MethodPost, "/v1/messages", "x", "Content-Type", "text/plain"), http.StatusUnsupportedMediaType},
		{"too large", f.h, req(http.MethodPost, "/v1/messages", `{"payload":"`+strings.Repeat("x", ingest.DefaultMaxMessageBytes)+`"}`), http.StatusRequestEntityTooLarge},
		{"batch, invalid", f.h, req(http.MethodPost, "/v1/messages/batch", `{"messages":"no"}`), http.StatusBadRequest},
		{"health", f.h, req(http.MethodGet, "/health", ""), http.StatusOK},
		{"live", f.h, req(http.MethodGet, "/health/live", ""), http.StatusOK},
		{"ready", f.h, req(http.MethodGet, "/health/ready", ""), http.StatusOK},
		{"docs", f.h, req(http.MethodGet, "/docs", ""), http.StatusOK},
		{"metrics", f.h, req(http.MethodGet, "/metrics", ""), http.StatusOK},
		{"document", f.h, req(http.MethodGet, "/openapi.json", ""), http.StatusOK},
		{"batch", f.h, req(http.MethodPost, "/v1/messages/batch", batchOf(exampleBody, `{"payload":1}`)), http.StatusOK},
	}
	for _, tt := range tests { // in order: a limit is spent before it answers 429
		rec := doc.Serve(t, tt.h, tt.req)
		require.Equal(t, tt.want, rec.Code, "%s: %s", tt.name, rec.Body)
	}
}
