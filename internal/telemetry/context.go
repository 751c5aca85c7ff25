package telemetry

import (
	"context"
	"encoding/binary"
	"math/rand/v2"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// contextProvider is the TracerProvider of a process that exports no spans and
// samples as the SDK does by default (parentbased_always_on): its spans carry real
// ids and the trace context, exactly as the SDK's would, and record nothing.
//
// Why not the SDK without a span processor (issue 11, lever 9 in BENCHMARKS.md):
// the SDK still builds a recording span per Start — attributes, events, a lock, 4
// allocations — only to drop it at End; that was ~5-7 % of the router's CPU (a
// routing and a delivery span per message) and ~3 % of ingest's. The ids are what
// the rest of the system needs: the traceparent stored with each message and
// passed to the agent's inbox.
//
// What the SDK's default sampler would decide, this decides too: a span with a
// valid parent continues its trace with the parent's flags (sampled or not) and
// tracestate; a root span starts a new trace, sampled.
type contextProvider struct{ embedded.TracerProvider }

func (p *contextProvider) Tracer(string, ...trace.TracerOption) trace.Tracer {
	return contextTracer{p: p}
}

type contextTracer struct {
	embedded.Tracer
	p *contextProvider
}

func (t contextTracer) Start(ctx context.Context, _ string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	parent := trace.SpanContextFromContext(ctx)
	if len(opts) > 0 {
		if c := trace.NewSpanStartConfig(opts...); c.NewRoot() {
			parent = trace.SpanContext{}
		}
	}
	cfg := trace.SpanContextConfig{SpanID: newSpanID()}
	if parent.IsValid() {
		cfg.TraceID, cfg.TraceFlags, cfg.TraceState = parent.TraceID(), parent.TraceFlags(), parent.TraceState()
	} else {
		cfg.TraceID, cfg.TraceFlags = newTraceID(), trace.FlagsSampled
	}
	s := &contextSpan{sc: trace.NewSpanContext(cfg), tp: t.p}
	return trace.ContextWithSpan(ctx, s), s
}

// newTraceID and newSpanID draw random non-zero ids (W3C: all-zero is invalid)
// from the runtime's per-thread generator: no lock, unlike the SDK's.
func newTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		binary.BigEndian.PutUint64(id[:8], rand.Uint64())
		binary.BigEndian.PutUint64(id[8:], rand.Uint64())
	}
	return id
}

func newSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		binary.BigEndian.PutUint64(id[:], rand.Uint64())
	}
	return id
}

// contextSpan is a span that carries its context and records nothing.
type contextSpan struct {
	embedded.Span
	sc trace.SpanContext
	tp trace.TracerProvider
}

func (s *contextSpan) SpanContext() trace.SpanContext        { return s.sc }
func (s *contextSpan) TracerProvider() trace.TracerProvider  { return s.tp }
func (*contextSpan) IsRecording() bool                       { return false }
func (*contextSpan) End(...trace.SpanEndOption)              {}
func (*contextSpan) AddEvent(string, ...trace.EventOption)   {}
func (*contextSpan) AddLink(trace.Link)                      {}
func (*contextSpan) RecordError(error, ...trace.EventOption) {}
func (*contextSpan) SetStatus(codes.Code, string)            {}
func (*contextSpan) SetName(string)                          {}
func (*contextSpan) SetAttributes(...attribute.KeyValue)     {}
