package delivery

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

const senderTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// Every attempt is a producer span, child of the message's trace context; the
// inbox is sent the span's own traceparent, and the inner Deliverer runs in the
// span's context.
func TestTracingSpanPerAttempt(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	var sent []string
	var inCtx []trace.SpanContext
	inbox := DelivererFunc(func(ctx context.Context, d *Delivery) error {
		sent = append(sent, d.Traceparent)
		inCtx = append(inCtx, trace.SpanContextFromContext(ctx))
		return nil
	})
	d := Tracing(tp.Tracer("test"))(inbox)

	for range 2 {
		del := natsDelivery("agents.a")
		del.Traceparent = senderTraceparent
		require.NoError(t, d.Deliver(t.Context(), del))
		require.Equal(t, sent[len(sent)-1], del.Traceparent, "what the inbox got is left in the Delivery")
	}
	spans := rec.Ended()
	require.Len(t, spans, 2, "one span per attempt")
	for i, s := range spans {
		require.Equal(t, SpanName, s.Name())
		require.Equal(t, trace.SpanKindProducer, s.SpanKind())
		require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", s.SpanContext().TraceID().String(), "the sender's trace")
		require.Equal(t, "00f067aa0ba902b7", s.Parent().SpanID().String(), "child of the sender's span")
		require.True(t, s.Parent().IsRemote())
		sc := s.SpanContext()
		require.Equal(t, "00-"+sc.TraceID().String()+"-"+sc.SpanID().String()+"-01", sent[i], "traceparent out is the span's")
		require.Equal(t, sc, inCtx[i])
	}
	require.NotEqual(t, sent[0], sent[1])
}

// Without a trace context in the Delivery the span starts a trace of its own (or
// continues ctx's). A no-op tracer's span carries its parent's context: the
// sender's traceparent is sent as it came, and none when there was none.
func TestTracingWithoutParentAndNoop(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	var sent string
	inbox := DelivererFunc(func(_ context.Context, d *Delivery) error { sent = d.Traceparent; return nil })

	require.NoError(t, Tracing(tp.Tracer("test"))(inbox).Deliver(t.Context(), natsDelivery("agents.a")))
	require.Len(t, rec.Ended(), 1)
	s := rec.Ended()[0]
	require.False(t, s.Parent().IsValid(), "a root span")
	require.Equal(t, "00-"+s.SpanContext().TraceID().String()+"-"+s.SpanContext().SpanID().String()+"-01", sent)

	del := natsDelivery("agents.a")
	del.Traceparent = senderTraceparent
	noopTracing := Tracing(noop.NewTracerProvider().Tracer("test"))(inbox)
	require.NoError(t, noopTracing.Deliver(t.Context(), del))
	require.Equal(t, senderTraceparent, sent)
	require.NoError(t, noopTracing.Deliver(t.Context(), natsDelivery("agents.a")))
	require.Empty(t, sent)
}
