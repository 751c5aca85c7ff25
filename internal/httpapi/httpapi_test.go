package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/httpapi"
)

func TestMuxAnswersErrorsWithTheContractBody(t *testing.T) {
	t.Parallel()
	m := httpapi.NewMux()
	m.HandleFunc("POST /v1/things", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	m.HandleFunc("GET /boom", func(http.ResponseWriter, *http.Request) { panic("boom") })
	reg := prometheus.NewRegistry()
	h := httpapi.Instrument(httpapi.Recover(m, discard()), m, "test", reg)

	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/nope", http.StatusNotFound, httpapi.CodeNotFound},
		{"GET", "/v1/things", http.StatusMethodNotAllowed, httpapi.CodeMethodNotAllowed},
		{"GET", "/boom", http.StatusInternalServerError, httpapi.CodeInternal},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		require.Equal(t, tc.status, rec.Code, tc.path)
		require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
		var body httpapi.ErrorBody
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
		require.Equal(t, tc.code, body.ErrorCode)
		require.NotEmpty(t, body.Message)
		if tc.status == http.StatusMethodNotAllowed {
			require.Contains(t, rec.Header().Get("Allow"), "POST")
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/things", nil))
	require.Equal(t, http.StatusAccepted, rec.Code)

	// Routes are labelled by pattern; unknown paths never become labels.
	require.Equal(t, 1.0, counter(t, reg, "POST /v1/things", "202"))
	require.Equal(t, 1.0, counter(t, reg, "unmatched", "404"))
}

func TestRetryAfterIsWholeSecondsAtLeastOne(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	httpapi.WriteRetryAfter(rec, http.StatusTooManyRequests, httpapi.CodeRateLimited, "slow down", 1)
	require.Equal(t, "1", rec.Header().Get("Retry-After"))
	rec = httptest.NewRecorder()
	httpapi.WriteRetryAfter(rec, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "later", 2500*1e6)
	require.Equal(t, "3", rec.Header().Get("Retry-After"))
}
