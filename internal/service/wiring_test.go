package service_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/msgrouter/msgrouter/internal/service"
	"github.com/msgrouter/msgrouter/internal/testutil/blackhole"
	"github.com/msgrouter/msgrouter/internal/testutil/natstest"
)

// The NATS drain part with the server gone: Stop returns within its context.
func TestDrainBoundedWhileNATSIsDown(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	nc, _ := srv.Connect(t)
	d := service.Drain(nc)
	require.NoError(t, d.Start(t.Context()))
	srv.Shutdown()
	srv.WaitForShutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_ = d.Stop(ctx) // an error (cannot drain a closed/reconnecting connection, or ran out of time) is fine
	require.Less(t, time.Since(start), 2*time.Second)
	nc.Close()
}

// The trace flush with an OTLP collector that accepts connections and never
// answers: Stop returns within its context, with an error.
func TestTelemetryFlushBoundedWhileTheCollectorHangs(t *testing.T) {
	// Not parallel: t.Setenv.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+blackhole.Listen(t))
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "60000")
	tp, flush, err := service.Telemetry(t.Context(), "test")
	require.NoError(t, err)
	require.NoError(t, flush.Start(t.Context()))
	_, span := tp.Tracer("test").Start(t.Context(), "span", trace.WithSpanKind(trace.SpanKindInternal))
	span.End()

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	require.Error(t, flush.Stop(ctx), "the span could not be exported")
	require.Less(t, time.Since(start), 2*time.Second)
}
