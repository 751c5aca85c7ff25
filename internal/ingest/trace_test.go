package ingest_test

import (
	"net/http"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/msgrouter/msgrouter/internal/ingest"
	"github.com/msgrouter/msgrouter/internal/telemetry"
)

func TestTraceContextReachesTheStream(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	f := setup(t, func(c *ingest.Config) { c.TracerProvider = tp })

	spanOf := func(id string) tracetest.SpanStub {
		t.Helper()
		for _, s := range exp.GetSpans() {
			for _, a := range s.Attributes {
				if a.Key == "messaging.message.id" && a.Value.AsString() == id {
					return s
				}
			}
		}
		t.Fatalf("no span for %s", id)
		return tracetest.SpanStub{}
	}
	storedHeaders := func(id string) jetstream.RawStreamMsg {
		t.Helper()
		for _, m := range f.stored() {
			if m.Header.Get(jetstream.MsgIDHeader) == id {
				return *m
			}
		}
		t.Fatalf("%s not stored", id)
		return jetstream.RawStreamMsg{}
	}

	t.Run("a caller's trace is continued", func(t *testing.T) {
		const caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		id := accepted(t, f.post(exampleBody, "traceparent", caller, "tracestate", "vendor=abc"))
		span := spanOf(id)
		require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", span.SpanContext.TraceID().String(), "same trace")
		require.Equal(t, "00f067aa0ba902b7", span.Parent.SpanID().String(), "the caller's span is the parent")
		require.Equal(t, trace.SpanKindServer, span.SpanKind)

		m := storedHeaders(id)
		tp := m.Header.Get("traceparent")
		require.Equal(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-"+span.SpanContext.SpanID().String()+"-01", tp,
			"the stored traceparent names the ingest span as the parent")
		require.Equal(t, "vendor=abc", m.Header.Get("tracestate"))

		// What the router will do with it.
		ctx := telemetry.ExtractNATS(t.Context(), m.Header)
		require.Equal(t, span.SpanContext.SpanID(), trace.SpanContextFromContext(ctx).SpanID())
	})

	t.Run("without a caller trace a new one starts", func(t *testing.T) {
		id := accepted(t, f.post(exampleBody))
		span := spanOf(id)
		require.False(t, span.Parent.IsValid())
		require.Equal(t, telemetry.Traceparent(trace.ContextWithSpanContext(t.Context(), span.SpanContext)),
			storedHeaders(id).Header.Get("traceparent"))
	})

	t.Run("refused requests are recorded as errors", func(t *testing.T) {
		before := len(exp.GetSpans())
		rec := f.post(`{"aiAgentAddress":"","payload":{}}`)
		require.Equal(t, http.StatusBadRequest, rec.Code)
		spans := exp.GetSpans()
		require.Len(t, spans, before+1)
		require.Equal(t, "INVALID_REQUEST", spans[len(spans)-1].Status.Description)
	})
}
