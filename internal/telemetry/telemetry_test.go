package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestExporterWanted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		want bool
		err  bool
	}{
		{"nothing set", nil, false, false},
		{"otlp exporter", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true, false},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, true, false},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, true, false},
		{"none wins over endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, false, false},
		{"sdk disabled", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, false, false},
		{"sdk disabled false", map[string]string{"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, true, false},
		{"unknown exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, false, true},
		{"grpc protocol", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, false, true},
		{"traces protocol overrides", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, true, false},
		{"protocol ignored without exporter", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := exporterWanted(func(k string) string { return tc.env[k] })
			if tc.err {
				require.ErrorIs(t, err, ErrUnsupportedExporter)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestSetupWithoutExporterMakesRealSpans(t *testing.T) {
	t.Parallel()
	tp, shutdown, err := setup(t.Context(), "test", "v0", func(string) string { return "" })
	require.NoError(t, err)
	defer func() { require.NoError(t, shutdown(context.Background())) }()

	ctx, span := tp.Tracer("t").Start(t.Context(), "root")
	defer span.End()
	sc := span.SpanContext()
	require.True(t, sc.IsValid(), "spans get real ids without an exporter")

	tparent := Traceparent(ctx)
	require.Regexp(t, `^00-[0-9a-f]{32}-[0-9a-f]{16}-01$`, tparent)
	require.Equal(t, sc.TraceID().String(), tparent[3:35])
	require.Equal(t, sc.SpanID().String(), tparent[36:52])

	// A caller's trace continues.
	caller := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	_, child := tp.Tracer("t").Start(ContextFromTraceparent(t.Context(), caller), "child")
	defer child.End()
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", child.SpanContext().TraceID().String())
}

// TestSetupExportsOverOTLP runs Setup against a fake collector; it changes the
// process environment, so it is not parallel.
func TestSetupExportsOverOTLP(t *testing.T) {
	var posts atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
			posts.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_SDK_DISABLED", "")

	tp, shutdown, err := Setup(t.Context(), "test", "v0")
	require.NoError(t, err)
	_, span := tp.Tracer("t").Start(t.Context(), "exported")
	span.End()
	require.NoError(t, shutdown(t.Context()), "shutdown flushes the batch")
	require.Positive(t, posts.Load(), "the span reached the collector")
}

func TestNATSHeaders(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	ctx, span := tp.Tracer("t").Start(t.Context(), "publish")
	defer span.End()

	h := nats.Header{}
	InjectNATS(ctx, h)
	require.Equal(t, Traceparent(ctx), h.Get("traceparent"), "written lower-case, as W3C spells it")
	require.Empty(t, h.Get("Traceparent"))

	got := trace.SpanContextFromContext(ExtractNATS(t.Context(), h))
	require.True(t, got.IsRemote())
	require.Equal(t, span.SpanContext().TraceID(), got.TraceID())
	require.Equal(t, span.SpanContext().SpanID(), got.SpanID())

	// Producers whose library canonicalised the name are understood too.
	canon := nats.Header{"Traceparent": []string{Traceparent(ctx)}}
	require.Equal(t, span.SpanContext().SpanID(), trace.SpanContextFromContext(ExtractNATS(t.Context(), canon)).SpanID())

	// No header, no context.
	require.False(t, trace.SpanContextFromContext(ExtractNATS(t.Context(), nil)).IsValid())
}

func TestTraceparentMatchesPropagator(t *testing.T) {
	t.Parallel()
	for _, tp := range []string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
	} {
		ctx := ContextFromTraceparent(t.Context(), tp)
		require.Equal(t, tp, Traceparent(ctx))
		m := propagation.MapCarrier{}
		propagation.TraceContext{}.Inject(ctx, m)
		require.Equal(t, m["traceparent"], Traceparent(ctx))
	}
	require.Empty(t, Traceparent(t.Context()))
	require.Empty(t, Traceparent(ContextFromTraceparent(t.Context(), "garbage")))
	require.Empty(t, Traceparent(ContextFromTraceparent(t.Context(), "")))
}

// BenchmarkStartEnd measures what a span costs when no exporter is configured (the
// default): the provider Setup returns then has no span processor.
func BenchmarkStartEnd(b *testing.B) {
	tp, shutdown, err := setup(b.Context(), "bench", "v0", func(string) string { return "" })
	require.NoError(b, err)
	defer func() { _ = shutdown(context.Background()) }()
	tr := tp.Tracer("bench")
	b.Run("span", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, span := tr.Start(b.Context(), "ingest", trace.WithSpanKind(trace.SpanKindServer))
			span.End()
		}
	})
	b.Run("span+inject", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ctx, span := tr.Start(b.Context(), "ingest", trace.WithSpanKind(trace.SpanKindServer))
			InjectNATS(ctx, nats.Header{})
			span.End()
		}
	})
}

// Issue 11: without an exporter, the default sampler's spans come from
// contextProvider; they must carry exactly what the SDK's would (trace id, flags,
// tracestate), with a span id of their own, and record nothing.
func TestContextProviderMatchesTheSDK(t *testing.T) {
	t.Parallel()
	tp, shutdown, err := setup(t.Context(), "test", "v0", func(string) string { return "" })
	require.NoError(t, err)
	defer func() { require.NoError(t, shutdown(context.Background())) }()
	require.IsType(t, &contextProvider{}, tp)
	sdk := sdktrace.NewTracerProvider() // the SDK's default sampler: parentbased_always_on
	defer func() { require.NoError(t, sdk.Shutdown(context.Background())) }()

	withState := func(tp string) context.Context {
		return Propagator.Extract(t.Context(), propagation.MapCarrier{"traceparent": tp, "tracestate": "vendor=x"})
	}
	for name, ctx := range map[string]context.Context{
		"root":              t.Context(),
		"sampled parent":    withState("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
		"unsampled parent":  withState("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
		"malformed traceid": withState("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
	} {
		t.Run(name, func(t *testing.T) {
			parent := trace.SpanContextFromContext(ctx)
			_, got := tp.Tracer("t").Start(ctx, "s", trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attribute.String("k", "v")))
			_, want := sdk.Tracer("t").Start(ctx, "s", trace.WithSpanKind(trace.SpanKindServer))
			g, w := got.SpanContext(), want.SpanContext()
			require.True(t, g.IsValid())
			require.False(t, got.IsRecording())
			require.Equal(t, w.TraceFlags(), g.TraceFlags())
			require.Equal(t, w.TraceState().String(), g.TraceState().String())
			require.Equal(t, w.IsRemote(), g.IsRemote())
			if parent.IsValid() {
				require.Equal(t, parent.TraceID(), g.TraceID(), "the parent's trace continues")
				require.NotEqual(t, parent.SpanID(), g.SpanID(), "a span id of its own")
			} else {
				require.NotEqual(t, w.TraceID(), g.TraceID(), "a new trace")
			}
		})
	}

	// WithNewRoot starts a new trace whatever the context holds.
	ctx := withState("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
	_, root := tp.Tracer("t").Start(ctx, "s", trace.WithNewRoot())
	require.NotEqual(t, "4bf92f3577b34da6a3ce929d0e0e4736", root.SpanContext().TraceID().String())
	require.True(t, root.SpanContext().IsSampled())
}

// Another sampler than the default keeps the SDK (no exporter), so the sampled
// flag follows OTEL_TRACES_SAMPLER. The SDK reads the variable from the process
// environment, so the test is not parallel.
func TestSetupWithoutExporterHonoursTheSampler(t *testing.T) {
	t.Setenv("OTEL_TRACES_SAMPLER", "always_off")
	tp, shutdown, err := setup(t.Context(), "test", "v0", os.Getenv)
	require.NoError(t, err)
	defer func() { require.NoError(t, shutdown(context.Background())) }()
	require.IsType(t, &sdktrace.TracerProvider{}, tp)
	ctx, span := tp.Tracer("t").Start(t.Context(), "root")
	defer span.End()
	require.Regexp(t, `^00-[0-9a-f]{32}-[0-9a-f]{16}-00$`, Traceparent(ctx))
}
