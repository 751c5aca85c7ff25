package auth_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/auth"
)

func TestParse(t *testing.T) {
	t.Parallel()
	k, err := auth.Parse("crm:k1, k2\n# a comment\n\nbilling: k3 \r\n")
	require.NoError(t, err)
	require.Equal(t, 3, k.Len())
	for secret, name := range map[string]string{"k1": "crm", "k2": "", "k3": "billing"} {
		key, ok := k.Check(secret)
		require.True(t, ok, secret)
		require.Equal(t, name, key.Name)
	}
	_, ok := k.Check("k4")
	require.False(t, ok)
	_, ok = k.Check("")
	require.False(t, ok)

	empty, err := auth.Parse(" , \n")
	require.NoError(t, err)
	require.False(t, empty.Enabled())

	for _, bad := range []string{"crm:", ":secret"} {
		_, err := auth.Parse(bad)
		require.Error(t, err, bad)
	}
}

func TestRequire(t *testing.T) {
	t.Parallel()
	k, err := auth.Parse("crm:k1,k2")
	require.NoError(t, err)
	var seen auth.Caller
	h := k.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = auth.CallerFrom(r.Context())
		w.WriteHeader(http.StatusNoContent)
	}), auth.OpenPaths)

	do := func(path, header string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, path, nil)
		if header != "" {
			r.Header.Set("Authorization", header)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for _, header := range []string{"", "Bearer", "Bearer wrong", "Basic k1", "k1"} {
		w := do("/v1/messages", header)
		require.Equal(t, http.StatusUnauthorized, w.Code, header)
		var body struct{ ErrorCode, Message string }
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body))
		require.Equal(t, "UNAUTHORIZED", body.ErrorCode)
		require.Contains(t, w.Header().Get("WWW-Authenticate"), "Bearer")
	}
	require.Equal(t, http.StatusNoContent, do("/v1/messages", "Bearer k1").Code)
	require.Equal(t, auth.Caller{Name: "crm", Named: true, Authenticated: true}, seen)
	require.Equal(t, http.StatusNoContent, do("/v1/messages", "bearer k2").Code, "the scheme is case-insensitive")
	require.Equal(t, auth.Caller{Authenticated: true}, seen)

	for _, open := range []string{"/health", "/health/live", "/health/ready", "/metrics", "/openapi.json", "/docs"} {
		require.Equal(t, http.StatusNoContent, do(open, "").Code, open)
	}
	require.Equal(t, http.StatusUnauthorized, do("/healthz", "").Code, "only the listed paths are open")

	// No keys configured: everyone passes, anonymously.
	var none *auth.Keys
	w := httptest.NewRecorder()
	none.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.False(t, auth.CallerFrom(r.Context()).Authenticated)
		w.WriteHeader(http.StatusNoContent)
	}), nil).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/messages", nil))
	require.Equal(t, http.StatusNoContent, w.Code)
}
