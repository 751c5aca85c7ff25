package e2e_test

import (
	"context"
	"time"

	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
)

// TestOneTrace sends a request that carries a caller's traceparent and checks the
// ingest span, the router's delivery span and the traceparent the inbox receives
// all belong to the caller's trace, the inbox's naming the delivery span.
func TestOneTrace(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("spans exported: %v", spanNames(exp))
		}
		require.NoError(t, tp.Shutdown(context.Background()))
	})
	s := start(t, sysOptions{tp: tp})
	s.register("", "traced@example.com", mapping.TypeHTTPEndpoint, s.hooks.URL+"/traced")

	const (
		callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		callerSpan  = "00f067aa0ba902b7"
	)
	id := s.send("", map[string]any{"aiAgentAddress": "traced@example.com", "payload": map[string]any{}},
		"traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
	require.Equal(t, "DELIVERED", s.waitFinal("", id).Status)

	got := received(s.hooks, id)
	require.Len(t, got, 1)
	inboxTP := got[0].Header.Get("traceparent")

	var ingestSpan, routeSpan, deliverSpan *tracetest.SpanStub
	// The delivery span ends after the result is known; the inbox may have answered
	// before it is exported, so look for it until it is.
	require.Eventually(t, func() bool {
		ingestSpan, routeSpan, deliverSpan = nil, nil, nil
		for _, sp := range exp.GetSpans() {
			switch {
			case sp.Name == "POST /v1/messages" && sp.SpanContext.TraceID().String() == callerTrace:
				ingestSpan = &sp
			case sp.Name == "msgrouter.route" && sp.SpanContext.TraceID().String() == callerTrace:
				routeSpan = &sp
			case sp.Name == "msgrouter.deliver" && sp.SpanContext.TraceID().String() == callerTrace:
				deliverSpan = &sp
			}
		}
		return ingestSpan != nil && routeSpan != nil && deliverSpan != nil
	}, 10*time.Second, 10*time.Millisecond, "the ingest, route and delivery spans are exported in the caller's trace")

	require.Equal(t, callerSpan, ingestSpan.Parent.SpanID().String(), "ingest continues the caller's span")
	require.Equal(t, "00-"+callerTrace+"-"+deliverSpan.SpanContext.SpanID().String()+"-01", inboxTP,
		"the inbox's traceparent carries the caller's trace and the delivery span")
	// One trace: caller → ingest → route → deliver.
	require.Equal(t, routeSpan.SpanContext.SpanID(), deliverSpan.Parent.SpanID(), "delivery is a child of routing")
	require.Equal(t, callerTrace, routeSpan.Parent.TraceID().String())
	require.NotEqual(t, callerSpan, routeSpan.Parent.SpanID().String(), "routing descends from the ingest side, not the caller directly")
}

// spanNames lists the exported spans as name@trace/span<parent.
func spanNames(exp *tracetest.InMemoryExporter) []string {
	var out []string
	for _, sp := range exp.GetSpans() {
		out = append(out, sp.Name+"@"+sp.SpanContext.TraceID().String()+"/"+sp.SpanContext.SpanID().String()+"<"+sp.Parent.SpanID().String())
	}
	return out
}
