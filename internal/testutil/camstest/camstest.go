// Package camstest is a CAMS for the tests of its users: it answers the
// contract's lookup (DESIGN §4) for a fixed set of agents.
package camstest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
)

// Serve starts a CAMS that answers GET /v1/agent-inboxes/{address} with the
// mapping of that address among ms, and 404 NOT_FOUND for any other address.
// t.Cleanup closes it.
func Serve(t testing.TB, ms ...mapping.Mapping) *httptest.Server {
	t.Helper()
	agents := make(map[string]mapping.Mapping, len(ms))
	for _, m := range ms {
		agents[m.AIAgentAddress] = m
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr, err := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), "/v1/agent-inboxes/"))
		if err != nil {
			http.Error(w, "bad path", http.StatusBadRequest)
			return
		}
		m, ok := agents[addr]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"errorCode":"NOT_FOUND","message":"unknown agent"}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(m)
	}))
	t.Cleanup(srv.Close)
	return srv
}
