// Package telemetry sets up OpenTelemetry tracing from the standard OTEL_* variables
// and carries W3C trace context across NATS headers and stored traceparents.
//
// It guarantees trace context propagates whether or not an exporter is configured:
// without one, spans still get real ids, so a caller's trace id reaches the agent's
// inbox and the ingest span is the recorded parent; such spans are simply never
// exported. With the default sampler that mode uses contextProvider (ids and
// context, nothing recorded: 2 allocations per span); with another
// OTEL_TRACES_SAMPLER an SDK TracerProvider with no span processor (~1.5µs, 560 B
// and 4 allocations per span; BenchmarkStartEnd, 2-core VM).
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Propagator is the W3C TraceContext + Baggage propagator every msgrouter binary
// uses; Setup also installs it as the global one. Using it directly (rather than the
// global) keeps propagation working in tests and libraries that never call Setup.
var Propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(
	propagation.TraceContext{}, propagation.Baggage{})

// ErrUnsupportedExporter is returned by Setup for an OTEL_* setting asking for an
// exporter this build does not ship (only OTLP over HTTP is built in).
var ErrUnsupportedExporter = errors.New("unsupported trace exporter")

// Setup builds the process's TracerProvider from the environment and installs it and
// Propagator as the otel globals. An exporter is used when OTEL_TRACES_EXPORTER=otlp
// or an OTLP endpoint variable is set, unless OTEL_TRACES_EXPORTER=none or
// OTEL_SDK_DISABLED=true; the exporter (otlptracehttp) and the sampler
// (OTEL_TRACES_SAMPLER) read their own variables. shutdown flushes pending spans.
func Setup(ctx context.Context, serviceName, version string) (tp trace.TracerProvider, shutdown func(context.Context) error, err error) {
	return setup(ctx, serviceName, version, os.Getenv)
}

func setup(ctx context.Context, serviceName, version string, getenv func(string) string) (trace.TracerProvider, func(context.Context) error, error) {
	otel.SetTextMapPropagator(Propagator)

	export, err := exporterWanted(getenv)
	if err != nil {
		return nil, nil, err
	}
	if !export && defaultSampler(getenv) {
		// Nothing is exported and the SDK would sample by default: spans that carry
		// ids and context and record nothing (contextProvider) do the same for less.
		p := &contextProvider{}
		otel.SetTracerProvider(p)
		return p, func(context.Context) error { return nil }, nil
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(
			attribute.String("service.name", serviceName),
			attribute.String("service.version", version)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(),
	)
	if err != nil && res == nil {
		return nil, nil, fmt.Errorf("error building the trace resource: %w", err)
	}

	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if export {
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("error creating the OTLP trace exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	// Without an exporter and with another sampler than the default: no span
	// processor, so spans get ids and carry context but are dropped at End. The
	// sampler comes from OTEL_TRACES_SAMPLER (the SDK reads it), which keeps the
	// sampled flag we propagate honest.
	p := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(p)
	return p, p.Shutdown, nil
}

// defaultSampler reports whether OTEL_TRACES_SAMPLER asks for the SDK's default
// sampler (unset, or parentbased_always_on): the one contextProvider mirrors.
func defaultSampler(getenv func(string) string) bool {
	switch strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER"))) {
	case "", "parentbased_always_on":
		return true
	}
	return false
}

// exporterWanted decides from the environment whether spans are exported.
func exporterWanted(getenv func(string) string) (bool, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false, nil
	}
	exporters := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")))
	want := false
	for _, e := range strings.Split(exporters, ",") {
		switch strings.TrimSpace(e) {
		case "":
		case "none":
			return false, nil
		case "otlp":
			want = true
		default:
			return false, fmt.Errorf("OTEL_TRACES_EXPORTER: %w %q (want otlp or none)", ErrUnsupportedExporter, e)
		}
	}
	if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
		want = true
	}
	if !want {
		return false, nil
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := strings.TrimSpace(getenv(name)); p != "" {
			if p != "http/protobuf" {
				return false, fmt.Errorf("%s: %w %q (this build sends OTLP over http/protobuf)", name, ErrUnsupportedExporter, p)
			}
			break
		}
	}
	return true, nil
}

// natsCarrier adapts nats.Header to the propagator. NATS header names are case
// sensitive and http.Header's canonicalisation would turn "traceparent" into
// "Traceparent", so keys are written lower-case, as W3C spells them, and read
// case-insensitively to accept producers that canonicalised them.
type natsCarrier nats.Header

func (c natsCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range c {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

func (c natsCarrier) Set(key, value string) { c[key] = []string{value} }

func (c natsCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// InjectNATS writes the trace context of ctx (traceparent, tracestate, baggage) into h.
// h must not be nil.
func InjectNATS(ctx context.Context, h nats.Header) { Propagator.Inject(ctx, natsCarrier(h)) }

// ExtractNATS returns ctx carrying the remote trace context found in h, if any.
func ExtractNATS(ctx context.Context, h nats.Header) context.Context {
	if len(h) == 0 {
		return ctx
	}
	return Propagator.Extract(ctx, natsCarrier(h))
}

// Traceparent returns the W3C traceparent of the span in ctx, "" when there is none.
func Traceparent(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	tid, sid := sc.TraceID(), sc.SpanID()
	const hexdigits = "0123456789abcdef"
	b := make([]byte, 0, 55)
	b = append(b, "00-"...)
	for _, x := range tid {
		b = append(b, hexdigits[x>>4], hexdigits[x&0xf])
	}
	b = append(b, '-')
	for _, x := range sid {
		b = append(b, hexdigits[x>>4], hexdigits[x&0xf])
	}
	f := sc.TraceFlags() & trace.FlagsSampled
	b = append(b, '-', hexdigits[f>>4], hexdigits[f&0xf])
	return string(b)
}

// ContextFromTraceparent returns ctx carrying the remote span context of a stored
// traceparent; ctx unchanged when tp is empty or malformed.
func ContextFromTraceparent(ctx context.Context, tp string) context.Context {
	if tp == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": tp})
}
