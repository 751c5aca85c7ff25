package httpapi_test

import (
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/testutil/promtest"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// counter reads the request counter of route and code.
func counter(t *testing.T, reg *prometheus.Registry, route, code string) float64 {
	t.Helper()
	v, ok := promtest.Lookup(t, reg, "msgrouter_test_http_requests_total", "route", route, "code", code)
	require.True(t, ok, "no sample for route %q code %q", route, code)
	return v
}
