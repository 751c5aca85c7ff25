package ingest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/msgrouter/msgrouter/internal/httpapi"
	"github.com/msgrouter/msgrouter/internal/ingest"
)

// panicTracer panics when a span starts: a stand-in for any bug inside a handler.
type panicTracerProvider struct{ noop.TracerProvider }
type panicTracer struct{ noop.Tracer }

func (panicTracerProvider) Tracer(string, ...trace.TracerOption) trace.Tracer { return panicTracer{} }
func (panicTracer) Start(context.Context, string, ...trace.SpanStartOption) (context.Context, trace.Span) {
	panic("boom")
}

// A handler panic answers 500 with the contract's error body, is logged once and
// counted, and the server goes on serving (issue 10: ingest gains panic recovery).
func TestPanicIsA500WithTheContractsBody(t *testing.T) {
	t.Parallel()
	f := setup(t, func(c *ingest.Config) { c.TracerProvider = panicTracerProvider{} })
	rec := f.post(`{"aiAgentAddress":"a@example.com","payload":{}}`)
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	var body httpapi.ErrorBody
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), rec.Body.String())
	require.Equal(t, httpapi.CodeInternal, body.ErrorCode)
	require.Contains(t, f.logs.String(), "panic serving request")
	require.Equal(t, 1.0, f.metric("msgrouter_ingest_requests_total", "route", ingest.RouteMessages, "code", "500"))
	require.Equal(t, http.StatusOK, f.do(request{method: http.MethodGet, path: "/health/live"}).Code)
}
